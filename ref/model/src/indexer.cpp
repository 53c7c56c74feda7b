// spec 02 §2.7 (official code class Indexer, inference/model.py).
#include "dsv4/model/indexer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/model/hadamard.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

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

LinearWeight synthetic_bf16_weight(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std) {
  const CounterRng rng(seed, stream_id(name));
  Mat m(n, k);
  for (std::int64_t i = 0; i < n * k; ++i) m.data()[i] = round_bf16(std * rng.normal(static_cast<std::uint64_t>(i)));
  return LinearWeight::bf16_from(m);
}

// spec 01 §1.4 / §1.5, the QAT simulation points of spec 02 §2.5 step 4 and §2.7 step 1.
QuantMargin quantise_columns(const Precision& p, Mat& x, std::int64_t col0, std::int64_t cols, int block,
                             BlockQuant kind) {
  if (col0 < 0 || cols <= 0 || col0 + cols > x.cols()) bad("quantise_columns", "column range outside the matrix");
  const std::int64_t rows = x.rows();
  QuantMargin m;
  if (p.official()) {
    std::vector<float> buf(static_cast<std::size_t>(rows * cols));
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < cols; ++j)
        buf[static_cast<std::size_t>(r * cols + j)] = static_cast<float>(x(r, col0 + j));
    }
    m = block_quant_margin_fp32(buf, cols, block, kind);
    if (kind == BlockQuant::kFp8Ue8m0) {
      act_quant_inplace(buf, cols, block, ScaleFormat::kUE8M0);
    } else {
      if (block != kFp4WeightBlock) bad("quantise_columns", "fp4 simulation has block 32");
      fp4_act_quant_inplace(buf, cols);
    }
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < cols; ++j) x(r, col0 + j) = buf[static_cast<std::size_t>(r * cols + j)];
    }
  } else {
    std::vector<double> buf(static_cast<std::size_t>(rows * cols));
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < cols; ++j) buf[static_cast<std::size_t>(r * cols + j)] = x(r, col0 + j);
    }
    m = block_quant_exact_inplace(buf, cols, block, kind);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < cols; ++j) x(r, col0 + j) = buf[static_cast<std::size_t>(r * cols + j)];
    }
  }
  return m;
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
  apply_rope_inplace(p, *table_, q, start_pos, cI);
  Mat qh = Eigen::Map<const Mat>(q.data(), s * nI, cI);
  hadamard_inplace(p, qh, cI);
  out.q_margin = quantise_columns(p, qh, 0, cI, 32, BlockQuant::kFp4);
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
  const double cst = std::pow(static_cast<double>(cI), -0.5) * std::pow(static_cast<double>(nI), -0.5);
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
  std::vector<double> ph(static_cast<std::size_t>(nI));
  // Exact mode: Σ|W_w||x| of every (token, head) in one deterministic GEMM on absolute values.
  Mat abs_wx;
  if (!p.official()) {
    abs_wx.resize(s, nI);
    gemm_nt(s, nI, cfg_.dim, x.data(), cfg_.dim, w_.weights_proj.values.data(), cfg_.dim, abs_wx.data(), nI, 0,
            /*abs_operands=*/true);
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
    const std::int64_t visible = start_pos == 0 ? (t + 1) / ratio : nk;
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
      double err = 0.0, abs_sum = 0.0;
      for (std::int64_t h = 0; h < nI; ++h) {
        const double* qv = out.q.row(t * nI + h).data();
        const double sc = p.official() ? p.bf16(p.dot(qv, st.cache.row(tau).data(), cI)) : qk(h, tau);
        const double w = out.weights(t, h);
        const double pr = p.bf16(p.mul(std::max(sc, 0.0), w));
        ph[static_cast<std::size_t>(h)] = pr;
        if (!p.official()) {
          const double e_s = g_c * abs_qk(h, tau) * (1.0 + g_c);  // (1 + g_c): rounding of Σ|q||K| itself
          const double e_w = err_w[static_cast<std::size_t>(h)];
          err += e_s * std::abs(w) + std::max(sc, 0.0) * e_w + e_s * e_w + u * std::abs(pr);
          abs_sum += std::abs(pr);
        }
      }
      out.scores(t, tau) = p.bf16(p.sum(ph.data(), nI));
      if (!p.official()) out.score_bounds(t, tau) = (err + g_h * abs_sum) * (1.0 + 8 * u);
    }
  }
  // 6.–7. top-k with k = min(index_topk, ⌊e/4⌋), offsets
  const std::int64_t k = std::min(cfg_.index_topk, nk);
  out.lists = IndexLists(s, k);
  out.margins.resize(static_cast<std::size_t>(s));
  for (std::int64_t t = 0; t < s; ++t) {
    const std::vector<double> row(out.scores.row(t).data(), out.scores.row(t).data() + nk);
    TopkResult r;
    if (p.official()) {
      r = topk(row, k);
    } else {
      const std::vector<double> bnd(out.score_bounds.row(t).data(), out.score_bounds.row(t).data() + nk);
      // Mp50 re-evaluation of I_τ from the inputs: ω_h from x and W_w, the grid values q and K.
      std::vector<Mp50> w_mp;
      auto recompute = [&](std::int64_t tau) {
        if (w_mp.empty()) {
          const Mp50 c_mp = Mp50(1) / sqrt(Mp50(cI) * Mp50(nI));
          for (std::int64_t h = 0; h < nI; ++h) {
            Mp50 acc = 0;
            for (std::int64_t j = 0; j < cfg_.dim; ++j) acc += Mp50(w_.weights_proj.values(h, j)) * Mp50(x(t, j));
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
      r = topk_exact(row, bnd, k, recompute);
    }
    out.margins[static_cast<std::size_t>(t)] = r.margin;
    const std::int64_t visible = start_pos == 0 ? (t + 1) / ratio : nk;
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t idx = r.indices[static_cast<std::size_t>(j)];
      out.lists.at(t, j) = (start_pos == 0 && idx >= visible) ? -1 : static_cast<std::int32_t>(idx + offset);
    }
  }
  return out;
}

}  // namespace dsv4
