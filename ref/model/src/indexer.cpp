// spec 02 §2.7 (official code class Indexer, inference/model.py).
//
// ---- Exact mode: certification of the query's FP4 decisions (ref/README.md §Precision design) ----
// u = 2^-53, γ_m = m·u/(1 − m·u) (Higham §3.1). Per (token t, head h) row, c = c_I, L = log2 c.
// 0. Input. qr (q_norm output) is taken as the indexer's exact input: its own error belongs to the
//    attention's q path (certified there, upstream); the wq_b values are the exact dequantised FP8.
// 1. Linear: e_j = linear_error_bound(qr, wq_b) (kv_certify.cpp §1).
// 2. RoPE on the last r_d dims, pair (a, b) ↦ (a·c − b·s, a·s + b·c), c = cos θ, s = sin θ of the
//    exact angle θ = t·f_i (f_i the table's double frequency). The table holds ĉ = std::cos(θ̂),
//    θ̂ = fl(t·f_i): |θ̂ − θ| ≤ u|θ| ≤ u|θ̂|(1 + 2u). Assumption (libm): std::cos / std::sin are
//    within 4 ulp of the exact value, so ≤ 2^-50 absolute on [−1, 1]. With cos, sin 1-Lipschitz:
//    |ĉ − c|, |ŝ − s| ≤ δ = 2^-50 + u|θ̂|(1 + 2u). The computed â' = fl(fl(â ĉ) − fl(b̂ ŝ)):
//      |â' − a'| ≤ γ_2(|â ĉ| + |b̂ ŝ|) + |â|δ + e_a|c| + |b̂|δ + e_b|s|
//               ≤ e_a + e_b + (|â| + |b̂|)δ + γ_2(|â||ĉ| + |b̂||ŝ|)      (|c|, |s| ≤ 1),
//    the same for b'. Evaluated with a (1 + 8u) inflation plus 2^-1070 (underflowing products).
//    If the table carries no frequencies, its ĉ, ŝ define the rotation (δ = 0).
// 3. Hadamard, y = c^{-1/2} H x with H the ±1 Walsh matrix. The double butterflies compute each
//    ŵ_i = Σ_j ±x̂_j through L additions per term: |ŵ_i − (H x̂)_i| ≤ γ_L Σ_j|x̂_j| (additions that
//    underflow are exact), and |(H(x̂ − x))_i| ≤ Σ_j E_j (E the step-2 bound). The scale
//    σ̂ = std::pow(c, −1/2) is assumed within 1 ulp (|σ̂ − c^{-1/2}| ≤ 2u·c^{-1/2}); the product
//    rounds once. With |ŵ_i| ≤ (1 + γ_L)Σ|x̂|:
//      |ŷ_i − y_i| ≤ c^{-1/2}(Σ_j E_j + γ_{L+3} Σ_j|x̂_j|),
//    the same for every i of the row; evaluated as σ̂(1 + 4u)(ΣE + γ_{L+3}Σ|x̂|)(1 + γ_{c+8}) + 2^-1070.
// 4. FP4 decisions (block 32, power-of-two scale): block_decisions_certified (kv_certify.hpp). A row with an
//    uncertified decision is recomputed in Mp50 (linear, RoPE with Mp50 cos/sin of t·f_i,
//    butterflies and c^{-1/2} in Mp50) and all its blocks re-quantised from the Mp50 values.
#include "dsv4/model/indexer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/model/hadamard.hpp"
#include "dsv4/model/indexer_scale.hpp"
#include "dsv4/model/kv_certify.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

// spec 02 §2.7 step 5: in prefill, query t sees the ⌊(t+1)/4⌋ complete compressed entries
// (Deviation kIndexerMaskOffByOne: also the entry still being filled, capped at nk).
std::int64_t visible_entries(const Precision& p, std::int64_t t, std::int64_t ratio, std::int64_t nk) {
  const std::int64_t v = (t + 1) / ratio;
  return p.deviates(Deviation::kIndexerMaskOffByOne) ? std::min(v + 1, nk) : v;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("indexer: " + field + ": " + why);
}
std::string str(std::int64_t v) { return std::to_string(v); }

}  // namespace

// spec 01 §1.6–§1.8 (exact mode evaluated per row: see the header).
LinearWeight synthetic_fp8_weight(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std) {
  const CounterRng rng(seed, stream_id(name));
  const std::int64_t tn = (n + 127) / 128, tk = (k + 127) / 128;
  Tensor w(DType::kE4M3, {n, k});
  Tensor s(DType::kE8M0, {tn, tk});
  std::vector<double> v(static_cast<std::size_t>(n * k));
  for (std::int64_t i = 0; i < n * k; ++i)
    v[static_cast<std::size_t>(i)] = std * rng.normal(static_cast<std::uint64_t>(i));
  auto codes = w.values<std::uint8_t>();
  auto scales = s.values<std::uint8_t>();
  for (std::int64_t a = 0; a < tn; ++a) {
    for (std::int64_t b = 0; b < tk; ++b) {
      double amax = 0.0;
      for (std::int64_t i = a * 128; i < std::min(n, a * 128 + 128); ++i) {
        for (std::int64_t j = b * 128; j < std::min(k, b * 128 + 128); ++j) {
          amax = std::max(amax, std::abs(v[static_cast<std::size_t>(i * k + j)]));
        }
      }
      const int e = amax > 0.0 ? static_cast<int>(std::ceil(std::log2(amax / 448.0))) : 0;
      scales[static_cast<std::size_t>(a * tk + b)] = static_cast<std::uint8_t>(127 + e);
      for (std::int64_t i = a * 128; i < std::min(n, a * 128 + 128); ++i) {
        for (std::int64_t j = b * 128; j < std::min(k, b * 128 + 128); ++j) {
          codes[static_cast<std::size_t>(i * k + j)] =
              double_to_e4m3(std::ldexp(v[static_cast<std::size_t>(i * k + j)], -e));
        }
      }
    }
  }
  return LinearWeight::fp8(std::move(w), std::move(s));
}

// spec 01 §1.8 weight format: packed e2m1 codes (element 2j in the low nibble) and e8m0 scales
// per 1×32 block.
LinearWeight synthetic_fp4_weight(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std) {
  const CounterRng rng(seed, stream_id(name));
  const std::int64_t nb = k / kFp4WeightBlock;
  Tensor w(DType::kE2M1x2, {n, k});
  Tensor s(DType::kE8M0, {n, nb});
  auto packed = w.values<std::uint8_t>();
  auto scales = s.values<std::uint8_t>();
  std::vector<double> v(static_cast<std::size_t>(kFp4WeightBlock));
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t b = 0; b < nb; ++b) {
      double amax = 0.0;
      for (std::int64_t j = 0; j < kFp4WeightBlock; ++j) {
        v[static_cast<std::size_t>(j)] = std * rng.normal(static_cast<std::uint64_t>(i * k + b * kFp4WeightBlock + j));
        amax = std::max(amax, std::abs(v[static_cast<std::size_t>(j)]));
      }
      const int e = amax > 0.0 ? static_cast<int>(std::ceil(std::log2(amax / 6.0))) : 0;
      scales[static_cast<std::size_t>(i * nb + b)] = static_cast<std::uint8_t>(127 + e);
      for (std::int64_t j = 0; j < kFp4WeightBlock; ++j) {
        const std::int64_t idx = i * k + b * kFp4WeightBlock + j;
        const std::uint8_t code = double_to_e2m1(std::ldexp(v[static_cast<std::size_t>(j)], -e));
        auto& byte = packed[static_cast<std::size_t>(idx / 2)];
        byte = (idx % 2 == 0) ? static_cast<std::uint8_t>((byte & 0xF0) | code)
                              : static_cast<std::uint8_t>((byte & 0x0F) | (code << 4));
      }
    }
  }
  return LinearWeight::fp4(std::move(w), std::move(s));
}

LinearWeight synthetic_bf16_weight(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std) {
  const CounterRng rng(seed, stream_id(name));
  Mat m(n, k);
  for (std::int64_t i = 0; i < n * k; ++i) m.data()[i] = round_bf16(std * rng.normal(static_cast<std::uint64_t>(i)));
  return LinearWeight::bf16_from(m);
}

// spec 01 §1.4 / §1.5, the QAT simulation points of spec 02 §2.5 step 4 and §2.7 step 1.
QuantMargin quantise_columns(const Precision& p, Mat& x, std::int64_t col0, std::int64_t cols, int block,
                             BlockQuant kind) {
  return p.quantise(x, 0, x.rows(), col0, cols, block, kind);
}

Vec indexer_q_error_bound(const Mat& qr, const Mat& wq_b, const Mat& q_lin, const Mat& q_rope, const RopeTable& table,
                          std::int64_t start_pos, std::int64_t head_dim) {
  const std::int64_t s = qr.rows(), cI = head_dim, rd = table.rope_head_dim(), np = table.n_pairs();
  if (cI <= 0 || (cI & (cI - 1)) != 0 || q_lin.cols() % cI != 0 || rd > cI) bad("head_dim", "not a power of two");
  if (q_lin.rows() != s || q_rope.rows() != s || q_rope.cols() != q_lin.cols() || wq_b.rows() != q_lin.cols()) {
    bad("indexer_q_error_bound", "shape mismatch");
  }
  const std::int64_t nI = q_lin.cols() / cI;
  const Mat e_lin = linear_error_bound(qr, wq_b);
  const double u = kDoubleUnitRoundoff;
  const bool have_f = static_cast<std::int64_t>(table.frequencies.size()) == np;
  std::int64_t L = 0;
  while ((std::int64_t{1} << L) < cI) ++L;
  const double g2 = gamma_n(2), gL = gamma_n(static_cast<std::size_t>(L) + 3);
  const double gsum = gamma_n(static_cast<std::size_t>(cI) + 8);
  const double sigma = std::pow(static_cast<double>(cI), -0.5) * (1.0 + 4.0 * u);
  Vec out(s * nI);
  std::vector<double> E(static_cast<std::size_t>(cI));
  for (std::int64_t t = 0; t < s; ++t) {
    const std::int64_t pos = start_pos + t;
    if (pos < 0 || pos >= table.positions()) bad("indexer_q_error_bound", "position outside the table");
    for (std::int64_t h = 0; h < nI; ++h) {
      const std::int64_t c0 = h * cI;
      for (std::int64_t j = 0; j < cI - rd; ++j) E[static_cast<std::size_t>(j)] = e_lin(t, c0 + j);
      for (std::int64_t i = 0; i < np; ++i) {
        const std::int64_t ja = c0 + cI - rd + 2 * i;
        const double ch = std::fabs(table.cos(pos, i)), sh = std::fabs(table.sin(pos, i));
        double delta = 0.0;
        if (have_f) {
          const double theta = static_cast<double>(pos) * table.frequencies[static_cast<std::size_t>(i)];
          delta = 0x1.0p-50 + u * std::fabs(theta) * (1.0 + 2.0 * u);
        }
        const double a = std::fabs(q_lin(t, ja)), b = std::fabs(q_lin(t, ja + 1));
        const double ea = e_lin(t, ja), eb = e_lin(t, ja + 1);
        const double common = ea + eb + (a + b) * delta;
        const double e0 = (common + g2 * (a * ch + b * sh)) * (1.0 + 8.0 * u) + 0x1.0p-1070;
        const double e1 = (common + g2 * (a * sh + b * ch)) * (1.0 + 8.0 * u) + 0x1.0p-1070;
        E[static_cast<std::size_t>(ja - c0)] = e0;
        E[static_cast<std::size_t>(ja - c0 + 1)] = e1;
      }
      double sum_e = 0.0, sum_x = 0.0;
      for (std::int64_t j = 0; j < cI; ++j) {
        sum_e += E[static_cast<std::size_t>(j)];
        sum_x += std::fabs(q_rope(t, c0 + j));
      }
      double b = sigma * (sum_e + gL * sum_x) * (1.0 + gsum) + 0x1.0p-1070;
      if (!std::isfinite(b)) b = kInf;
      out(t * nI + h) = b;
    }
  }
  return out;
}

std::vector<Mp50> indexer_q_head_mp50(const Mat& qr, std::int64_t row, const Mat& wq_b, const RopeTable& table,
                                      std::int64_t pos, std::int64_t head, std::int64_t head_dim) {
  const std::int64_t K = qr.cols(), cI = head_dim, rd = table.rope_head_dim(), np = table.n_pairs();
  if (row < 0 || row >= qr.rows() || wq_b.cols() != K || (head + 1) * cI > wq_b.rows() || head < 0 || pos < 0 ||
      pos >= table.positions() || cI <= 0 || (cI & (cI - 1)) != 0 || rd > cI) {
    bad("indexer_q_head_mp50", "shape mismatch");
  }
  std::vector<Mp50> xr(static_cast<std::size_t>(K));
  for (std::int64_t k = 0; k < K; ++k) xr[static_cast<std::size_t>(k)] = Mp50(qr(row, k));
  std::vector<Mp50> v(static_cast<std::size_t>(cI));
  for (std::int64_t j = 0; j < cI; ++j) {
    Mp50 acc = 0;
    for (std::int64_t k = 0; k < K; ++k) acc += xr[static_cast<std::size_t>(k)] * Mp50(wq_b(head * cI + j, k));
    v[static_cast<std::size_t>(j)] = acc;
  }
  const bool have_f = static_cast<std::int64_t>(table.frequencies.size()) == np;
  for (std::int64_t i = 0; i < np; ++i) {
    Mp50 c, sn;
    if (have_f) {
      const Mp50 theta = Mp50(pos) * Mp50(table.frequencies[static_cast<std::size_t>(i)]);
      c = cos(theta);
      sn = sin(theta);
    } else {
      c = Mp50(table.cos(pos, i));
      sn = Mp50(table.sin(pos, i));
    }
    const auto ja = static_cast<std::size_t>(cI - rd + 2 * i);
    rope_rotate_pair(v[ja], v[ja + 1], c, sn, ExactArithmetic{});
  }
  hadamard_butterflies(v.data(), cI, ExactArithmetic{});
  const Mp50 scale = Mp50(1) / sqrt(Mp50(cI));
  for (Mp50& e : v) e *= scale;
  return v;
}

IndexerWeights IndexerWeights::synthetic(const ModelConfig& c, std::uint64_t seed) {
  IndexerWeights w;
  w.wq_b = synthetic_fp8_weight(seed, "indexer.wq_b", c.index_n_heads * c.index_head_dim, c.q_lora_rank,
                                1.0 / std::sqrt(static_cast<double>(c.q_lora_rank)));
  w.weights_proj = synthetic_bf16_weight(seed, "indexer.weights_proj", c.index_n_heads, c.dim,
                                         1.0 / std::sqrt(static_cast<double>(c.dim)));
  w.compressor = CompressorWeights::synthetic(CompressorSpec::indexer(c), seed ^ 0x1DE7ULL);
  return w;
}

Indexer::Indexer(Precision prec, const ModelConfig& cfg, IndexerWeights weights, std::shared_ptr<const RopeTable> table)
    : prec_(prec),
      cfg_(cfg),
      w_(std::move(weights)),
      table_(std::move(table)),
      compressor_(prec, CompressorSpec::indexer(cfg), w_.compressor, table_) {
  if (!table_) bad("table", "the attention layer's RoPE table is required");
  const std::int64_t nq = cfg.index_n_heads * cfg.index_head_dim;
  if (w_.wq_b.out_features() != nq || w_.wq_b.in_features() != cfg.q_lora_rank) {
    bad("wq_b", "shape [" + str(w_.wq_b.out_features()) + ", " + str(w_.wq_b.in_features()) + "], expected [" +
                    str(nq) + ", " + str(cfg.q_lora_rank) + "]");
  }
  if (w_.weights_proj.out_features() != cfg.index_n_heads || w_.weights_proj.in_features() != cfg.dim) {
    bad("weights_proj", "shape [" + str(w_.weights_proj.out_features()) + ", " + str(w_.weights_proj.in_features()) +
                            "], expected [" + str(cfg.index_n_heads) + ", " + str(cfg.dim) + "]");
  }
  if (w_.weights_proj.kind != WeightKind::kBF16) bad("weights_proj", "must be a bf16 weight");
  if (cfg.index_head_dim % 32 != 0) bad("index_head_dim", "must be a multiple of the FP4 block 32");
}

IndexerState Indexer::initial_state() const {
  IndexerState st;
  st.compressor = compressor_.initial_state();
  st.cache = Mat::Zero(cfg_.max_seq_len / 4, cfg_.index_head_dim);
  st.entries = 0;
  return st;
}

IndexerOutput Indexer::prefill(const Mat& x, const Mat& qr, IndexerState& st, std::int64_t offset) const {
  return run(x, qr, 0, st, offset);
}

IndexerOutput Indexer::decode(const Mat& x, const Mat& qr, std::int64_t pos, IndexerState& st,
                              std::int64_t offset) const {
  if (pos < 1) bad("start_pos", "decode needs start_pos ≥ 1, got " + str(pos));
  if (x.rows() != 1) bad("x", "decode takes one token, got " + str(x.rows()));
  return run(x, qr, pos, st, offset);
}

// spec 02 §2.7 step 4 (official: the C1 dot rounded to fp32, then to bf16 — the official kernel's
// bf16 logits).
double indexer_head_score(const Precision& p, const double* q, const double* k, std::int64_t head_dim) {
  return p.bf16(p.dot(q, k, head_dim));
}

// spec 02 §2.7 step 5: ReLU (std::max(s, 0): −0 stays −0, its product then ±0), × ω, bf16; the
// heads' C1 sum, bf16.
double indexer_score(const Precision& p, const double* s, const double* w, std::int64_t heads, double* ph) {
  for (std::int64_t h = 0; h < heads; ++h) ph[h] = p.bf16(p.mul(std::max(s[h], 0.0), w[h]));
  return p.bf16(p.sum(ph, heads));
}

std::int32_t indexer_list_entry(std::int64_t idx, std::int64_t visible, std::int64_t offset) {
  return idx >= visible ? -1 : static_cast<std::int32_t>(idx + offset);
}

IndexerRowSelection indexer_select_official(const float* q, const float* w, const float* cache, std::int64_t entries,
                                            std::int64_t heads, std::int64_t head_dim, std::int64_t visible,
                                            std::int64_t k, std::int64_t offset) {
  if (entries < 0 || heads < 1 || head_dim < 1 || visible < 0 || visible > entries || k < 0 || k > entries) {
    bad("select", "entries " + str(entries) + ", heads " + str(heads) + ", head_dim " + str(head_dim) + ", visible " +
                      str(visible) + ", k " + str(k) + ": need heads, head_dim ≥ 1 and 0 ≤ visible, k ≤ entries");
  }
  const Precision p(Mode::kOfficial);
  const std::vector<double> qd(q, q + heads * head_dim), wd(w, w + heads);
  std::vector<double> kd(static_cast<std::size_t>(head_dim)), sh(static_cast<std::size_t>(heads)),
      ph(static_cast<std::size_t>(heads));
  IndexerRowSelection r;
  r.scores.assign(static_cast<std::size_t>(entries), -kInf);
  for (std::int64_t tau = 0; tau < visible; ++tau) {
    kd.assign(cache + tau * head_dim, cache + (tau + 1) * head_dim);
    for (std::int64_t h = 0; h < heads; ++h) {
      sh[static_cast<std::size_t>(h)] = indexer_head_score(p, qd.data() + h * head_dim, kd.data(), head_dim);
    }
    r.scores[static_cast<std::size_t>(tau)] = indexer_score(p, sh.data(), wd.data(), heads, ph.data());
  }
  for (const std::int64_t idx : topk(r.scores, k).indices) r.list.push_back(indexer_list_entry(idx, visible, offset));
  return r;
}

// spec 02 §2.7 step 3.
double indexer_weight_scale(std::int64_t heads, std::int64_t head_dim, bool omit_heads) {
  return std::pow(static_cast<double>(head_dim), -0.5) *
         (omit_heads ? 1.0 : std::pow(static_cast<double>(heads), -0.5));
}

// spec 02 §2.7 steps 1–7.
IndexerOutput Indexer::run(const Mat& x, const Mat& qr, std::int64_t start_pos, IndexerState& st,
                           std::int64_t offset) const {
  const Precision& p = prec_;
  const std::int64_t s = x.rows();
  const std::int64_t nI = cfg_.index_n_heads, cI = cfg_.index_head_dim, ratio = 4;
  if (x.cols() != cfg_.dim) bad("x", "has " + str(x.cols()) + " columns, expected dim " + str(cfg_.dim));
  if (qr.rows() != s || qr.cols() != cfg_.q_lora_rank) {
    bad("qr", "shape [" + str(qr.rows()) + ", " + str(qr.cols()) + "], expected [" + str(s) + ", " +
                  str(cfg_.q_lora_rank) + "]");
  }
  const std::int64_t end = start_pos + s;
  if (end > cfg_.max_seq_len)
    bad("start_pos", "positions up to " + str(end - 1) + " beyond max_seq_len " + str(cfg_.max_seq_len));
  IndexerOutput out;
  const ScaleFormat fmt = linear_scale_format(cfg_);
  // 1. q = wq_b(qr), RoPE at the query positions on the last r_d dims of every head, Hadamard, FP4
  Mat q = linear(p, qr, w_.wq_b, fmt);  // [s, nI·cI]
  const Mat q_lin = q;
  apply_rope_inplace(p, *table_, q, start_pos, cI);
  Mat qh = Eigen::Map<const Mat>(q.data(), s * nI, cI);
  if (!p.deviates(Deviation::kIndexerNoHadamard)) hadamard_inplace(p, qh, cI);
  const Mat q_pre = qh;
  out.q_margin = p.quantise(qh, 0, qh.rows(), 0, cI, 32, BlockQuant::kFp4);
  // exact mode: every FP4 decision certified (derivation at the top), uncertified (token, head)
  // rows re-decided in Mp50
  Vec bound;
  Mat wq_b;  // the weight's exact values, decoded once where a certificate or a re-decision needs them
  const auto wq_b_values = [&]() -> const Mat& {
    if (wq_b.size() == 0) wq_b = w_.wq_b.values();
    return wq_b;
  };
  const RowCertifier certificate = [&](std::int64_t r) {
    if (bound.size() == 0) bound = indexer_q_error_bound(qr, wq_b_values(), q_lin, q, *table_, start_pos, cI);
    RowCertificate c;
    c.value.assign(q_pre.row(r).data(), q_pre.row(r).data() + cI);
    c.bound.assign(static_cast<std::size_t>(cI), bound(r));
    return c;
  };
  const RowMp50 mp50 = [&](std::int64_t r) {
    const std::int64_t t = r / nI, h = r % nI;
    return indexer_q_head_mp50(qr, t, wq_b_values(), *table_, start_pos + t, h, cI);
  };
  out.q_decisions = p.certify_quantised(s * nI, 32, BlockQuant::kFp4, certificate, mp50, qh, "indexer q");
  out.q = qh;
  // 2. the indexer compressor writes its cache rows before they are read
  if (start_pos == 0) {
    out.compressed = compressor_.prefill(x, st.compressor);
    st.entries = 0;
  } else {
    out.compressed = compressor_.decode(x, start_pos, st.compressor);
  }
  for (std::int64_t r = 0; r < out.compressed.count(); ++r) {
    st.cache.row(out.compressed.first + r) = out.compressed.entries.row(r);
    st.entries = std::max(st.entries, out.compressed.first + r + 1);
  }
  // 3. head weights ω = bf16(fl32(bf16(W_w x) × fl32(c_I^−1/2 n_I^−1/2)))
  // (Deviation kIndexerScaleOmitted, bug catalogue only: without the n_I^−1/2 factor.)
  const double cst = indexer_weight_scale(nI, cI, p.deviates(Deviation::kIndexerScaleOmitted));
  const Mat wx = linear(p, x, w_.weights_proj, fmt);  // [s, nI]
  out.weights = Mat(s, nI);
  for (std::int64_t i = 0; i < s * nI; ++i) out.weights.data()[i] = p.bf16(p.mul(wx.data()[i], p.fp32(cst)));
  // 4.–5. scores against the first ⌊e/4⌋ rows, causal mask in prefill
  const std::int64_t nk = end / ratio;
  if (nk > st.entries) bad("state", "indexer cache has " + str(st.entries) + " entries, " + str(nk) + " needed");
  out.scores = Mat(s, nk);
  out.score_bounds = Mat::Zero(s, nk);
  const double u = kDoubleUnitRoundoff;
  const double g_c = gamma_n(static_cast<std::size_t>(cI)), g_h = gamma_n(static_cast<std::size_t>(nI));
  const double g_d = gamma_n(static_cast<std::size_t>(cfg_.dim) + 2);
  std::vector<double> err_w(static_cast<std::size_t>(nI), 0.0);
  std::vector<double> sh(static_cast<std::size_t>(nI)), ph(static_cast<std::size_t>(nI));
  // Exact mode: Σ|W_w||x| of every (token, head) in one deterministic GEMM on absolute values.
  Mat abs_wx, w_w;  // exact mode: w_w the exact values of W_w, decoded once
  if (!p.official()) {
    abs_wx.resize(s, nI);
    w_w = w_.weights_proj.values();
    gemm_nt(s, nI, cfg_.dim, x.data(), cfg_.dim, w_w.data(), cfg_.dim, abs_wx.data(), nI, 0, /*abs_operands=*/true);
  }
  Mat qk, abs_qk;  // exact mode, per token: q_h·K_τ and |q_h|·|K_τ| for the visible τ
  for (std::int64_t t = 0; t < s; ++t) {
    if (!p.official()) {  // |error| of ω_h in exact mode (GEMV + the scalar product)
      for (std::int64_t h = 0; h < nI; ++h) {
        // the computed Σ|W||x| may fall short of the true one by γ_d relative: (1 + g_d) covers it
        const double absdot = abs_wx(t, h) * (1.0 + g_d);
        err_w[static_cast<std::size_t>(h)] =
            (g_d * absdot * std::abs(cst) * (1.0 + 2 * u) + 3.0 * u * std::abs(out.weights(t, h))) * (1.0 + 4 * u);
      }
    }
    const std::int64_t visible = start_pos == 0 ? visible_entries(p, t, ratio, nk) : nk;
    if (!p.official() && visible > 0) {
      // The deterministic GEMM sums each q_h·K_τ in the same sequential order as exact-mode
      // Precision::dot, so the scores keep their bits; it just computes them all at once.
      qk.resize(nI, visible);
      abs_qk.resize(nI, visible);
      const double* q_t = out.q.row(t * nI).data();
      gemm_nt(nI, visible, cI, q_t, cI, st.cache.data(), cI, qk.data(), visible);
      gemm_nt(nI, visible, cI, q_t, cI, st.cache.data(), cI, abs_qk.data(), visible, 0, /*abs_operands=*/true);
    }
    for (std::int64_t tau = 0; tau < nk; ++tau) {
      if (tau >= visible) {
        out.scores(t, tau) = -kInf;
        continue;
      }
      for (std::int64_t h = 0; h < nI; ++h) {
        sh[static_cast<std::size_t>(h)] =
            p.official() ? indexer_head_score(p, out.q.row(t * nI + h).data(), st.cache.row(tau).data(), cI)
                         : qk(h, tau);
      }
      out.scores(t, tau) = indexer_score(p, sh.data(), out.weights.row(t).data(), nI, ph.data());
      if (!p.official()) {
        double err = 0.0, abs_sum = 0.0;
        for (std::int64_t h = 0; h < nI; ++h) {
          const double sc = sh[static_cast<std::size_t>(h)], w = out.weights(t, h),
                       pr = ph[static_cast<std::size_t>(h)];
          const double e_s = g_c * abs_qk(h, tau) * (1.0 + g_c);  // (1 + g_c): rounding of Σ|q||K| itself
          const double e_w = err_w[static_cast<std::size_t>(h)];
          err += e_s * std::abs(w) + std::max(sc, 0.0) * e_w + e_s * e_w + u * std::abs(pr);
          abs_sum += std::abs(pr);
        }
        out.score_bounds(t, tau) = (err + g_h * abs_sum) * (1.0 + 8 * u);
      }
    }
  }
  // 6.–7. top-k with k = min(index_topk, ⌊e/4⌋), offsets
  const std::int64_t k = std::min(cfg_.index_topk, nk);
  out.lists = IndexLists(s, k);
  out.margins.resize(static_cast<std::size_t>(s));
  for (std::int64_t t = 0; t < s; ++t) {
    const std::vector<double> row(out.scores.row(t).data(), out.scores.row(t).data() + nk);
    const TopkBounds bounds = [&] {
      return std::vector<double>(out.score_bounds.row(t).data(), out.score_bounds.row(t).data() + nk);
    };
    // Mp50 re-evaluation of I_τ from the inputs: ω_h from x and W_w, the grid values q and K.
    std::vector<Mp50> w_mp;
    const TopkRecompute recompute = [&](std::int64_t tau) {
      if (w_mp.empty()) {
        if (w_w.size() == 0) w_w = w_.weights_proj.values();
        const Mp50 c_mp = Mp50(1) / sqrt(Mp50(cI) * Mp50(nI));
        for (std::int64_t h = 0; h < nI; ++h) {
          Mp50 acc = 0;
          for (std::int64_t j = 0; j < cfg_.dim; ++j) acc += Mp50(w_w(h, j)) * Mp50(x(t, j));
          w_mp.push_back(acc * c_mp);
        }
      }
      Mp50 total = 0;
      for (std::int64_t h = 0; h < nI; ++h) {
        Mp50 dot = 0;
        for (std::int64_t j = 0; j < cI; ++j) dot += Mp50(out.q(t * nI + h, j)) * Mp50(st.cache(tau, j));
        if (dot > 0) total += dot * w_mp[static_cast<std::size_t>(h)];
      }
      return total;
    };
    const TopkResult r = p.topk(row, k, bounds, recompute, out.topk_decisions);
    out.margins[static_cast<std::size_t>(t)] = r.margin;
    const std::int64_t visible = start_pos == 0 ? visible_entries(p, t, ratio, nk) : nk;
    for (std::int64_t j = 0; j < k; ++j) {
      out.lists.at(t, j) = indexer_list_entry(r.indices[static_cast<std::size_t>(j)], visible, offset);
    }
  }
  return out;
}

}  // namespace dsv4
