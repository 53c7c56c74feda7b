// spec 02 §2.6 (official code class `Compressor`, inference/model.py): projections, gated softmax
// pooling, post-processing, prefill and decode state machines.
#include "dsv4/model/compressor.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/model/hadamard.hpp"
#include "dsv4/model/kv_certify.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr int kFp8SimBlock = 64;  // spec 02 §2.6.3 step 3: act_quant block 64, UE8M0
constexpr int kFp4SimBlock = 32;  // spec 01 §1.5

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("compressor: " + field + ": " + why);
}

std::string str(std::int64_t v) { return std::to_string(v); }

bool is_pow2(std::int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// spec 02 §2.6 (official Compressor.__init__ with Indexer/Attention arguments).

CompressorSpec CompressorSpec::main(const ModelConfig& c, std::int64_t ratio) {
  CompressorSpec s;
  s.ratio = ratio;
  s.dim = c.dim;
  s.head_dim = c.head_dim;
  s.rope_head_dim = c.rope_head_dim;
  s.rotate = false;
  s.max_seq_len = c.max_seq_len;
  s.norm_eps = c.norm_eps;
  s.rope = rope_params_for_ratio(c, ratio);
  return s;
}

CompressorSpec CompressorSpec::indexer(const ModelConfig& c) {
  CompressorSpec s = main(c, 4);
  s.head_dim = c.index_head_dim;
  s.rotate = true;
  return s;
}

void CompressorSpec::validate() const {
  if (ratio != 4 && ratio != 128) bad("ratio", "must be 4 or 128, got " + str(ratio));
  if (dim <= 0) bad("dim", "must be positive, got " + str(dim));
  if (head_dim <= 0) bad("head_dim", "must be positive, got " + str(head_dim));
  if (rope_head_dim <= 0 || rope_head_dim % 2 != 0 || rope_head_dim > head_dim) {
    bad("rope_head_dim",
        "must be even, positive and at most head_dim " + str(head_dim) + ", got " + str(rope_head_dim));
  }
  if (rope.rope_head_dim != rope_head_dim) {
    bad("rope.rope_head_dim", str(rope.rope_head_dim) + " differs from rope_head_dim " + str(rope_head_dim));
  }
  if (rotate) {
    if (!is_pow2(head_dim)) bad("head_dim", "the Hadamard rotation needs a power of two, got " + str(head_dim));
    if (head_dim % kFp4SimBlock != 0) {
      bad("head_dim", "must be a multiple of the FP4 block " + str(kFp4SimBlock) + ", got " + str(head_dim));
    }
  } else if ((head_dim - rope_head_dim) % kFp8SimBlock != 0) {
    bad("head_dim", "head_dim − rope_head_dim = " + str(head_dim - rope_head_dim) +
                        " must be a multiple of the FP8 block " + str(kFp8SimBlock));
  }
  if (max_seq_len <= 0) bad("max_seq_len", "must be positive, got " + str(max_seq_len));
  if (!(norm_eps > 0.0)) bad("norm_eps", "must be positive");
}

CompressorWeights CompressorWeights::synthetic(const CompressorSpec& s, std::uint64_t seed) {
  const std::int64_t n = s.proj_dim();
  const double wscale = 1.0 / std::sqrt(static_cast<double>(s.dim));
  auto gaussian = [&](const char* name, std::int64_t rows, std::int64_t cols, double scale, double shift,
                      bool to_bf16) {
    const CounterRng rng(seed, stream_id(name));
    Mat m(rows, cols);
    for (std::int64_t i = 0; i < rows * cols; ++i) {
      const double v = shift + scale * rng.normal(static_cast<std::uint64_t>(i));
      m.data()[i] = to_bf16 ? static_cast<double>(round_bf16(v)) : static_cast<double>(static_cast<float>(v));
    }
    return m;
  };
  CompressorWeights w;
  w.wkv = LinearWeight::fp32_from(gaussian("compressor.wkv", n, s.dim, wscale, 0.0, true));
  w.wgate = LinearWeight::fp32_from(gaussian("compressor.wgate", n, s.dim, wscale, 0.0, true));
  w.ape = gaussian("compressor.ape", s.ratio, n, 1.0, 0.0, false);
  const Mat g = gaussian("compressor.norm", s.head_dim, 1, 0.1, 1.0, true);
  w.norm = Eigen::Map<const Vec>(g.data(), s.head_dim);
  return w;
}

CompressorPoolInput prefill_pool_input(const CompressorSpec& spec, const Mat& x, std::int64_t i) {
  const std::int64_t m = spec.ratio;
  CompressorPoolInput in;
  in.x = Mat::Zero(spec.state_rows(), spec.dim);
  in.valid.assign(static_cast<std::size_t>(spec.state_rows()), 1);
  if (spec.overlap()) {
    if (i > 0) {
      in.x.topRows(m) = x.middleRows(m * (i - 1), m);
    } else {
      std::fill(in.valid.begin(), in.valid.begin() + m, 0);
    }
    in.x.bottomRows(m) = x.middleRows(m * i, m);
  } else {
    in.x = x.middleRows(m * i, m);
  }
  return in;
}

Compressor::Compressor(Precision prec, CompressorSpec spec, CompressorWeights weights,
                       std::shared_ptr<const RopeTable> table)
    : prec_(prec), spec_(std::move(spec)), w_(std::move(weights)), table_(std::move(table)) {
  spec_.validate();
  const std::int64_t n = spec_.proj_dim();
  auto check_linear = [&](const char* field, const LinearWeight& lw) {
    if (lw.kind != WeightKind::kFP32) bad(field, "must be an fp32 weight (official Compressor: Linear(dtype=fp32))");
    if (lw.out_features() != n || lw.in_features() != spec_.dim) {
      bad(field, "shape [" + str(lw.out_features()) + ", " + str(lw.in_features()) + "], expected [" + str(n) + ", " +
                     str(spec_.dim) + "]");
    }
  };
  check_linear("wkv", w_.wkv);
  check_linear("wgate", w_.wgate);
  if (w_.ape.rows() != spec_.ratio || w_.ape.cols() != n) {
    bad("ape", "shape [" + str(w_.ape.rows()) + ", " + str(w_.ape.cols()) + "], expected [" + str(spec_.ratio) + ", " +
                   str(n) + "]");
  }
  if (w_.norm.size() != spec_.head_dim) {
    bad("norm", "size " + str(w_.norm.size()) + ", expected head_dim " + str(spec_.head_dim));
  }
  if (!table_) table_ = std::make_shared<const RopeTable>(dsv4::rope_table(prec_, spec_.rope, spec_.max_seq_len));
  if (table_->rope_head_dim() != spec_.rope_head_dim) {
    bad("table", "rope_head_dim " + str(table_->rope_head_dim()) + ", expected " + str(spec_.rope_head_dim));
  }
  if (table_->positions() < spec_.max_seq_len) {
    bad("table", str(table_->positions()) + " positions, expected at least max_seq_len " + str(spec_.max_seq_len));
  }
}

CompressorState Compressor::initial_state() const {
  CompressorState st;
  reset(st);
  return st;
}

// spec 02 §2.6.5 "Initial state and reset": K = 0, Z = −∞ at the start of every sequence.
void Compressor::reset(CompressorState& st) const { st = fresh_state(spec_); }

CompressorState Compressor::fresh_state(const CompressorSpec& spec) {
  CompressorState st;
  st.kv = Mat::Zero(spec.state_rows(), spec.proj_dim());
  st.score = Mat::Constant(spec.state_rows(), spec.proj_dim(), kNegInf);
  st.next_pos = 0;
  return st;
}

void Compressor::check_x(const Mat& x, const char* fn) const {
  if (x.cols() != spec_.dim) {
    bad("x", std::string(fn) + ": width " + str(x.cols()) + ", expected dim " + str(spec_.dim));
  }
  if (x.rows() < 1) bad("x", std::string(fn) + ": no tokens");
}

// spec 02 §2.6.1: u = W_kv·fp32(x), z̃ = fl(W_gate·fp32(x) + ape[j_abs mod m]) (fp32 linears, C1).
CompressorProjections Compressor::project(const Mat& x, std::int64_t start_pos) const {
  check_x(x, "project");
  if (start_pos < 0 || start_pos + x.rows() > spec_.max_seq_len) {
    bad("start_pos", "tokens " + str(start_pos) + ".." + str(start_pos + x.rows() - 1) + " beyond max_seq_len " +
                         str(spec_.max_seq_len));
  }
  Mat xf = x;
  prec_.fp32_inplace(xf);  // x.float(): exact for the bf16 input of the official code
  // fp32 linears (C1) / exact mode the deterministic GEMM of Precision::matmul_nt (per element the
  // sequential sum over k, whatever the number of rows or threads): a token's (u, z̃) is
  // bit-identical in prefill and decode.
  CompressorProjections p;
  p.u = linear(prec_, xf, w_.wkv);
  p.z_tilde = linear(prec_, xf, w_.wgate);
  for (Eigen::Index j = 0; j < p.z_tilde.rows(); ++j) {
    const Eigen::Index row = (start_pos + j) % spec_.ratio;
    for (Eigen::Index c = 0; c < p.z_tilde.cols(); ++c) p.z_tilde(j, c) = prec_.add(p.z_tilde(j, c), w_.ape(row, c));
  }
  return p;
}

// spec 02 §2.6.2: per channel, w = softmax over the slots (C2: e_j = exp(fl(z_j − max)), S the C1
// sum, w_j = fl(e_j / S)), C = C1 Σ_j fl(u_j·w_j). −∞ slots (padding) get weight 0.
RowVec compressor_softmax_pool(const Precision& p, const Mat& u, const Mat& z) {
  if (u.rows() != z.rows() || u.cols() != z.cols()) bad("pool", "u and z shapes differ");
  const Eigen::Index slots = u.rows();
  RowVec out(u.cols());
  std::vector<double> e(static_cast<std::size_t>(slots));
  std::vector<double> prod(static_cast<std::size_t>(slots));
  for (Eigen::Index c = 0; c < u.cols(); ++c) {
    double mx = kNegInf;
    for (Eigen::Index j = 0; j < slots; ++j) mx = std::max(mx, z(j, c));
    if (mx == kNegInf) throw std::logic_error("compressor: pool: every slot of a channel is padding");
    for (Eigen::Index j = 0; j < slots; ++j) {
      e[static_cast<std::size_t>(j)] = z(j, c) == kNegInf ? 0.0 : p.exp(p.sub(z(j, c), mx));
    }
    const double s = p.sum(e.data(), slots);
    for (Eigen::Index j = 0; j < slots; ++j) {
      const double w = p.div(e[static_cast<std::size_t>(j)], s);
      prod[static_cast<std::size_t>(j)] = p.mul(u(j, c), w);
    }
    out(c) = p.sum(prod.data(), slots);
  }
  return out;
}

RowVec Compressor::pool(const Mat& u, const Mat& z) const { return compressor_softmax_pool(prec_, u, z); }

// spec 02 §2.6.3 steps 1–2 and, for the indexer, step 3's Hadamard rotation.
Mat Compressor::unquantised(const Mat& pooled, std::int64_t first) const {
  const std::int64_t d = spec_.head_dim;
  if (pooled.cols() != d) bad("pooled", "width " + str(pooled.cols()) + ", expected head_dim " + str(d));
  Mat x = pooled;
  prec_.bf16_inplace(x);                           // step 1: kv.to(bf16)
  x = rmsnorm(prec_, x, w_.norm, spec_.norm_eps);  // step 1: self.norm (C8) → bf16
  std::vector<std::int64_t> positions(static_cast<std::size_t>(x.rows()));
  for (std::size_t r = 0; r < positions.size(); ++r) {
    positions[r] = spec_.ratio * (first + static_cast<std::int64_t>(r));  // step 2: position m·i
  }
  apply_rope_inplace(prec_, *table_, x, positions, d);
  if (spec_.rotate) hadamard_inplace(prec_, x, d);  // step 3, indexer: Hadamard on all D dims
  return x;
}

// spec 02 §2.6.3 steps 1–3.
CompressedEntries Compressor::postprocess(const Mat& pooled, std::int64_t first) const {
  const std::int64_t d = spec_.head_dim;
  const std::int64_t rd = spec_.rope_head_dim;
  CompressedEntries out;
  out.first = first;
  Mat x = unquantised(pooled, first);
  out.unquantised = x;
  out.margins.resize(static_cast<std::size_t>(x.rows()));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {  // step 3: FP4 on all D dims (indexer), FP8 on [0, D − r_d) (main)
    out.margins[static_cast<std::size_t>(r)] =
        spec_.rotate ? prec_.quantise(x, r, 1, 0, d, kFp4SimBlock, BlockQuant::kFp4)
                     : prec_.quantise(x, r, 1, 0, d - rd, kFp8SimBlock, BlockQuant::kFp8Ue8m0);
  }
  out.entries = std::move(x);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Exact mode: certification of the quantisation decisions (ref/README.md §Precision design; the
// window KV path does the same in kv_certify.cpp, whose bounds and quantisers are reused here).
//
// ---- Derivation of the bound (u = 2^-53, γ_n = n·u/(1 − n·u); notation of kv_certify.cpp) ----
// Inputs of one entry: slots s (κm of them; padding slots have Z = −∞ exactly in both the double
// and the exact pipeline, weight 0 exactly, product û·0 = 0: they contribute no error), each an
// input row x_s, its channel offset and its ape row s mod m.
//
// 1. Projections. û, ĝ by the deterministic GEMM: |û − u| ≤ e_u, |ĝ − g| ≤ e_g with
//    linear_error_bound (kv_certify.cpp, step 1). ẑ = fl(ĝ + ape): one rounding, |ẑ − (ĝ + ape)|
//    ≤ u|ẑ| (round to nearest; an addition that underflows is exact), so
//    |ẑ − z| ≤ e_z := (e_g + u|ẑ|)(1 + 2^-50) (the factor covers the two roundings of e_z).
//
// 2. Softmax pooling, one channel, valid slots J (|J| ≤ S = κm): the double code computes
//    mx = max ẑ (exact), d_j = fl(ẑ_j − mx) ≤ 0, ê_j = exp(d_j), Ŝ = Σ_j ê_j (sequential),
//    ŵ_j = fl(ê_j/Ŝ), Ĉ = Σ_j fl(û_j ŵ_j) (sequential over all S slots).
//    Libm assumption: std::exp (glibc) has an error below 1 ulp; we assume ≤ 2 ulp, i.e.
//    |exp(d) − e^d| ≤ ε_e e^d + 2^-1074 with ε_e = 4u (the absolute term for subnormal results).
//    (a) E_j := e^{ẑ_j − mx} ≤ 1 (the exact exponentials of the rounded ẑ). |d_j − (ẑ_j − mx)| ≤
//        u|d_j|, so |e^{d_j} − E_j| ≤ expm1(u|d_j|) (E_j ≤ 1) and
//        |ê_j − E_j| ≤ Δe_j := ε_e(ê_j + 2^-1074)/(1 − ε_e) + 2^-1074 + expm1(u|d_j|).
//        When d_j < −800: E_j ≤ e^{d_j(1 − u)} < 2^-1150 and ê_j = 0, so Δe_j = 2^-1074.
//    (b) S' := Σ E_j: |Ŝ − S'| ≤ ΔS := γ_S Σ ê_j + Σ Δe_j. Ŝ ≥ 1 (the max slot has d = 0, ê = 1).
//        w̃_j := E_j/S' (the exact softmax of ẑ): |ŵ_j − w̃_j| ≤ Δw̃_j :=
//        uŵ_j + 2^-1074 + Δe_j/Ŝ + (ê_j + Δe_j)ΔS/(Ŝ(Ŝ − ΔS))   (|1/Ŝ − 1/S'| = |S' − Ŝ|/(ŜS')).
//    (c) z error: w_j = softmax(z)_j = E_j e^{η_j}/Σ_k E_k e^{η_k}, η = z − ẑ, |η| ≤ δ := max_J e_z,
//        so w_j/w̃_j ∈ [e^{−2δ}, e^{2δ}] and |w_j − w̃_j| ≤ w̃_j (e^{2δ} − 1) exactly (not to first
//        order). Hence |ŵ_j − w_j| ≤ Δw_j := Δw̃_j + (ŵ_j + Δw̃_j)·expm1(2δ).
//    (d) C = Σ u_j w_j: |Ĉ − Σ û_j ŵ_j| ≤ γ_S Σ|û_j ŵ_j| + S·2^-1073 (S products, S − 1 additions),
//        |Σ û_j ŵ_j − Σ u_j w_j| ≤ Σ |û_j| Δw_j + e_u,j (ŵ_j + Δw_j). e_C is the sum of the two,
//        times 1 + 2^-40: the bound is evaluated in double from nonnegative terms with fewer than
//        4S + 40 roundings in any one path, and γ_{4S+40} < 2^-40 for S ≤ 256; expm1 (≤ 2 ulp)
//        is covered the same way.
//
// 3. RMSNorm over the D channels: rmsnorm_error_bound (kv_certify.cpp, step 2) with e_C. The
//    exact-mode bf16 cast is the identity.
//
// 4. RoPE on the last r_d dims at position t = m·i. The reference angle is the double
//    φ = fl(t·f_i) of the table (the rotation's input data); the table holds c = std::cos(φ),
//    s = std::sin(φ), which we assume (glibc: < 1 ulp) within 2 ulp of the exact cos φ, sin φ:
//    |c − cos φ| ≤ ε_t = 2^-52 (|cos| ≤ 1, so 1 ulp ≤ 2^-53). The double code computes
//    r_1 = fl(fl(â c) − fl(b̂ s)), r_2 = fl(fl(â s) + fl(b̂ c)) (separate roundings, no FMA), so
//      |r̂_1 − r_1| ≤ γ_2(|âc| + |b̂s|) + (|â| + |b̂|)ε_t + B_a(|c| + ε_t) + B_b(|s| + ε_t) + 3·2^-1074,
//      |r̂_2 − r_2| ≤ γ_2(|âs| + |b̂c|) + (|â| + |b̂|)ε_t + B_a(|s| + ε_t) + B_b(|c| + ε_t) + 3·2^-1074.
//    Main compressor: the quantised dims [0, D − r_d) are untouched (no RoPE term).
//
// 5. Hadamard (indexer), N = D = 2^L: y = N^{-1/2} H r with H a ±1 matrix. The butterflies form,
//    for every output, a sum tree of depth L over ±r̂_j: error ≤ γ_L Σ|r̂_j|; the scale
//    ŝ = pow(N, −0.5) is within 2 ulp of N^{-1/2} (glibc pow < 1 ulp) and the product adds one
//    rounding: |ŷ_i − N^{-1/2}(H r̂)_i| ≤ γ_{L+3} N^{-1/2} Σ|r̂_j| + 2^-1074. The input error
//    propagates as |N^{-1/2}(H(r̂ − r))_i| ≤ N^{-1/2} Σ_j B_j (every entry of H is ±1; in the 2-norm
//    the transform is orthonormal and ‖Δ‖₂ is preserved, but the decisions need elementwise
//    bounds). The same bound holds for all i; times 1 + 2^-40 for its evaluation.
//
// 6. Decisions: block_decisions_certified (kv_certify.cpp, step 4) on the FP8 (block 64) or FP4
//    (block 32) blocks. An entry with any uncertified decision is recomputed in Mp50 from its slot
//    inputs (x rows, the exact weights, ape; exp, cos, sin, sqrt in Mp50) and all its quantised
//    dims are re-quantised by block_quant_mp50.

namespace {

constexpr double kU = 0x1.0p-53;
constexpr double kExpErr = 4 * kU;      // std::exp, std::pow: ≤ 2 ulp (glibc: < 1 ulp)
constexpr double kTrigErr = 0x1.0p-52;  // std::cos, std::sin of a double angle: ≤ 2 ulp of a value in [−1, 1]
constexpr double kEvalSlack = 1.0 + 0x1.0p-40;

}  // namespace

std::vector<double> Compressor::entry_bound(const CompressorPoolInput& in, std::int64_t entry,
                                            std::vector<double>& value) const {
  const std::int64_t m = spec_.ratio, D = spec_.head_dim, rd = spec_.rope_head_dim;
  const std::int64_t S = spec_.state_rows();
  if (prec_.official()) throw std::logic_error("compressor: certification is an exact-mode procedure");
  if (in.x.rows() != S || in.x.cols() != spec_.dim || static_cast<std::int64_t>(in.valid.size()) != S) {
    bad("pool input", "shape mismatch");
  }
  const Mat wkv = w_.wkv.values(), wgate = w_.wgate.values();
  const Mat u = prec_.matmul_nt(in.x, wkv), g = prec_.matmul_nt(in.x, wgate);
  const Mat eb_u = linear_error_bound(in.x, wkv), eb_g = linear_error_bound(in.x, wgate);
  Mat us = Mat::Zero(S, D), zs = Mat::Constant(S, D, kNegInf), eu = Mat::Zero(S, D), ez = Mat::Zero(S, D);
  for (std::int64_t s = 0; s < S; ++s) {
    if (in.valid[static_cast<std::size_t>(s)] == 0) continue;
    const std::int64_t col0 = (spec_.overlap() && s >= m) ? D : 0;
    for (std::int64_t c = 0; c < D; ++c) {
      us(s, c) = u(s, col0 + c);
      zs(s, c) = prec_.add(g(s, col0 + c), w_.ape(s % m, col0 + c));
      eu(s, c) = eb_u(s, col0 + c);
      ez(s, c) = (eb_g(s, col0 + c) + kU * std::fabs(zs(s, c))) * (1.0 + 0x1.0p-50);
    }
  }
  Mat pooled(1, D);
  pooled.row(0) = pool(us, zs);
  // step 2: e_C per channel
  const double gS = gamma_n(static_cast<std::size_t>(S));
  Mat eC(1, D);
  std::vector<double> eh(static_cast<std::size_t>(S)), de(static_cast<std::size_t>(S));
  for (std::int64_t c = 0; c < D; ++c) {
    double mx = kNegInf, delta = 0.0;
    for (std::int64_t s = 0; s < S; ++s) {
      if (in.valid[static_cast<std::size_t>(s)] == 0) continue;
      mx = std::max(mx, zs(s, c));
      delta = std::max(delta, ez(s, c));
    }
    double sum_e = 0.0, sum_de = 0.0;
    for (std::int64_t s = 0; s < S; ++s) {
      const auto i = static_cast<std::size_t>(s);
      eh[i] = de[i] = 0.0;
      if (in.valid[i] == 0) continue;
      const double d = prec_.sub(zs(s, c), mx);
      eh[i] = prec_.exp(d);
      de[i] = d < -800.0
                  ? 0x1.0p-1074
                  : kExpErr * (eh[i] + 0x1.0p-1074) / (1.0 - kExpErr) + 0x1.0p-1074 + std::expm1(kU * std::fabs(d));
      sum_e += eh[i];
      sum_de += de[i];
    }
    const double s_hat = prec_.sum(eh.data(), S);
    const double dS = gS * sum_e + sum_de;
    const double e2d = std::expm1(2.0 * delta);
    double abs_prod = 0.0, prop = 0.0;
    if (!(s_hat - dS > 0.0)) {
      prop = std::numeric_limits<double>::infinity();
    } else {
      for (std::int64_t s = 0; s < S; ++s) {
        const auto i = static_cast<std::size_t>(s);
        if (in.valid[i] == 0) continue;
        const double w = prec_.div(eh[i], s_hat);
        const double dwt = kU * w + 0x1.0p-1074 + de[i] / s_hat + (eh[i] + de[i]) * dS / (s_hat * (s_hat - dS));
        const double dw = dwt + (w + dwt) * e2d;
        const double au = std::fabs(us(s, c));
        abs_prod += au * w;
        prop += au * dw + eu(s, c) * (w + dw);
      }
    }
    double b = (gS * abs_prod + prop + static_cast<double>(S) * 0x1.0p-1073) * kEvalSlack;
    if (!std::isfinite(b)) b = std::numeric_limits<double>::infinity();
    eC(0, c) = b;
  }
  // step 3
  const Mat nb = rmsnorm_error_bound(pooled, eC, w_.norm, spec_.norm_eps, D);
  const Mat val = unquantised(pooled, entry);
  std::vector<double> bound;
  if (!spec_.rotate) {
    value.assign(static_cast<std::size_t>(D - rd), 0.0);
    bound.assign(static_cast<std::size_t>(D - rd), 0.0);
    for (std::int64_t j = 0; j < D - rd; ++j) {
      value[static_cast<std::size_t>(j)] = val(0, j);
      bound[static_cast<std::size_t>(j)] = nb(0, j);
    }
    return bound;
  }
  // step 4: RoPE
  const Mat nrm = rmsnorm(prec_, pooled, w_.norm, spec_.norm_eps);
  std::vector<double> rb(static_cast<std::size_t>(D));
  for (std::int64_t j = 0; j < D; ++j) rb[static_cast<std::size_t>(j)] = nb(0, j);
  const std::int64_t t = m * entry;
  const double g2 = gamma_n(2);
  for (std::int64_t i = 0; i < rd / 2; ++i) {
    const std::int64_t ja = D - rd + 2 * i;
    const double c = std::fabs(table_->cos(t, i)), sn = std::fabs(table_->sin(t, i));
    const double a = std::fabs(nrm(0, ja)), bb = std::fabs(nrm(0, ja + 1));
    const double Ba = nb(0, ja), Bb = nb(0, ja + 1);
    const double common = (a + bb) * kTrigErr + 3.0 * 0x1.0p-1074;
    rb[static_cast<std::size_t>(ja)] =
        (g2 * (a * c + bb * sn) + common + Ba * (c + kTrigErr) + Bb * (sn + kTrigErr)) * kEvalSlack;
    rb[static_cast<std::size_t>(ja + 1)] =
        (g2 * (a * sn + bb * c) + common + Ba * (sn + kTrigErr) + Bb * (c + kTrigErr)) * kEvalSlack;
  }
  Mat roped = nrm;
  apply_rope_inplace(prec_, *table_, roped, std::vector<std::int64_t>{t}, D);
  // step 5: Hadamard
  int L = 0;
  while ((std::int64_t{1} << L) < D) ++L;
  double sum_abs = 0.0, sum_b = 0.0;
  for (std::int64_t j = 0; j < D; ++j) {
    sum_abs += std::fabs(roped(0, j));
    sum_b += rb[static_cast<std::size_t>(j)];
  }
  double hb =
      ((gamma_n(static_cast<std::size_t>(L) + 3) * sum_abs + sum_b) / std::sqrt(static_cast<double>(D)) + 0x1.0p-1074) *
      kEvalSlack * kEvalSlack;
  if (!std::isfinite(hb)) hb = std::numeric_limits<double>::infinity();
  value.assign(static_cast<std::size_t>(D), 0.0);
  bound.assign(static_cast<std::size_t>(D), hb);
  for (std::int64_t j = 0; j < D; ++j) value[static_cast<std::size_t>(j)] = val(0, j);
  return bound;
}

std::vector<Mp50> Compressor::entry_mp50(const CompressorPoolInput& in, std::int64_t entry) const {
  const std::int64_t m = spec_.ratio, D = spec_.head_dim, rd = spec_.rope_head_dim;
  const std::int64_t S = spec_.state_rows(), K = spec_.dim;
  std::vector<Mp50> C(static_cast<std::size_t>(D));
  {
    const Mat wkv = w_.wkv.values(), wgate = w_.wgate.values();
    std::vector<std::vector<Mp50>> u(static_cast<std::size_t>(S)), z(static_cast<std::size_t>(S));
    for (std::int64_t s = 0; s < S; ++s) {
      if (in.valid[static_cast<std::size_t>(s)] == 0) continue;
      const std::int64_t col0 = (spec_.overlap() && s >= m) ? D : 0;
      std::vector<Mp50> xr(static_cast<std::size_t>(K));
      for (std::int64_t k = 0; k < K; ++k) xr[static_cast<std::size_t>(k)] = Mp50(in.x(s, k));
      auto& us = u[static_cast<std::size_t>(s)];
      auto& zs = z[static_cast<std::size_t>(s)];
      us.resize(static_cast<std::size_t>(D));
      zs.resize(static_cast<std::size_t>(D));
      for (std::int64_t c = 0; c < D; ++c) {
        Mp50 a = 0, g = 0;
        for (std::int64_t k = 0; k < K; ++k) {
          a += xr[static_cast<std::size_t>(k)] * Mp50(wkv(col0 + c, k));
          g += xr[static_cast<std::size_t>(k)] * Mp50(wgate(col0 + c, k));
        }
        us[static_cast<std::size_t>(c)] = a;
        zs[static_cast<std::size_t>(c)] = g + Mp50(w_.ape(s % m, col0 + c));
      }
    }
    for (std::int64_t c = 0; c < D; ++c) {
      const auto ci = static_cast<std::size_t>(c);
      bool any = false;
      Mp50 mx = 0;
      for (std::int64_t s = 0; s < S; ++s) {
        if (in.valid[static_cast<std::size_t>(s)] == 0) continue;
        const Mp50& zv = z[static_cast<std::size_t>(s)][ci];
        if (!any || zv > mx) mx = zv;
        any = true;
      }
      Mp50 sum = 0, acc = 0;
      for (std::int64_t s = 0; s < S; ++s) {
        if (in.valid[static_cast<std::size_t>(s)] == 0) continue;
        const Mp50 e = exp(z[static_cast<std::size_t>(s)][ci] - mx);
        sum += e;
        acc += u[static_cast<std::size_t>(s)][ci] * e;
      }
      C[ci] = acc / sum;
    }
  }
  Mp50 ss = 0;
  for (const Mp50& v : C) ss += v * v;
  const Mp50 rinv = Mp50(1) / sqrt(ss / Mp50(D) + Mp50(spec_.norm_eps));
  std::vector<Mp50> o(static_cast<std::size_t>(D));
  for (std::int64_t c = 0; c < D; ++c)
    o[static_cast<std::size_t>(c)] = Mp50(w_.norm(c)) * C[static_cast<std::size_t>(c)] * rinv;
  if (spec_.rotate) {
    const std::int64_t t = m * entry;
    for (std::int64_t i = 0; i < rd / 2; ++i) {
      const double phi =
          prec_.mul(prec_.fp32(static_cast<double>(t)), table_->frequencies[static_cast<std::size_t>(i)]);
      const Mp50 c = cos(Mp50(phi)), sn = sin(Mp50(phi));
      const auto ja = static_cast<std::size_t>(D - rd + 2 * i);
      rope_rotate_pair(o[ja], o[ja + 1], c, sn, ExactArithmetic{});
    }
    hadamard_butterflies(o.data(), D, ExactArithmetic{});
    const Mp50 scale = Mp50(1) / sqrt(Mp50(D));
    for (Mp50& v : o) v *= scale;
  } else {
    o.resize(static_cast<std::size_t>(D - rd));  // the quantised dims
  }
  return o;
}

CompressorEntryCheck Compressor::check_entry(const CompressorPoolInput& in, std::int64_t entry, bool with_mp50) const {
  CompressorEntryCheck ck;
  ck.bound = entry_bound(in, entry, ck.value);
  if (with_mp50) {
    const std::vector<Mp50> exact = entry_mp50(in, entry);
    ck.error.resize(exact.size());
    for (std::size_t j = 0; j < exact.size(); ++j) ck.error[j] = static_cast<double>(Mp50(ck.value[j]) - exact[j]);
  }
  return ck;
}

// step 6 of the derivation: every decision of `out` (entry r pooled from input(r)) certified, the
// entries with an open decision re-decided in Mp50 (Precision::certify_quantised).
void Compressor::certify(const std::function<CompressorPoolInput(std::int64_t)>& input, CompressedEntries& out) const {
  const RowCertifier certificate = [&](std::int64_t r) {
    RowCertificate c;
    c.bound = entry_bound(input(r), out.first + r, c.value);
    return c;
  };
  const RowMp50 mp50 = [&](std::int64_t r) { return entry_mp50(input(r), out.first + r); };
  out.decisions = spec_.rotate ? prec_.certify_quantised(out.count(), kFp4SimBlock, BlockQuant::kFp4, certificate, mp50,
                                                         out.entries, "compressor")
                               : prec_.certify_quantised(out.count(), kFp8SimBlock, BlockQuant::kFp8Ue8m0, certificate,
                                                         mp50, out.entries, "compressor");
}

// spec 02 §2.6.4 (official Compressor.forward, start_pos == 0).
CompressedEntries Compressor::prefill(const Mat& x, CompressorState& st) const {
  check_x(x, "prefill");
  const std::int64_t s = x.rows();
  if (s > spec_.max_seq_len) bad("x", "prefill of " + str(s) + " tokens beyond max_seq_len " + str(spec_.max_seq_len));
  reset(st);
  const std::int64_t m = spec_.ratio;
  const std::int64_t d = spec_.head_dim;
  const CompressorProjections p = project(x, 0);
  const std::int64_t rem = s % m;
  const std::int64_t cutoff = s - rem;
  const std::int64_t offset = spec_.overlap() ? m : 0;
  if (spec_.overlap() && cutoff >= m) {  // step 2: the last complete block, all 2D channels
    st.kv.topRows(m) = p.u.middleRows(cutoff - m, m);
    st.score.topRows(m) = p.z_tilde.middleRows(cutoff - m, m);
  }
  if (rem > 0) {  // step 3: the tail tokens
    st.kv.middleRows(offset, rem) = p.u.middleRows(cutoff, rem);
    st.score.middleRows(offset, rem) = p.z_tilde.middleRows(cutoff, rem);
  }
  if (!prec_.official()) {  // the input rows of the state's slots, for the Mp50 re-decisions
    st.x = Mat::Zero(spec_.state_rows(), spec_.dim);
    if (spec_.overlap() && cutoff >= m) st.x.topRows(m) = x.middleRows(cutoff - m, m);
    if (rem > 0) st.x.middleRows(offset, rem) = x.middleRows(cutoff, rem);
  }
  st.next_pos = s;
  const std::int64_t blocks = cutoff / m;
  Mat pooled(blocks, d);
  Mat us(spec_.coff() * m, d);
  Mat zs(spec_.coff() * m, d);
  for (std::int64_t i = 0; i < blocks; ++i) {  // step 4 with §2.6.2 (overlap_transform)
    if (spec_.overlap()) {
      if (i > 0 && !prec_.deviates(Deviation::kCompressNoOverlap)) {
        us.topRows(m) = p.u.block(m * (i - 1), 0, m, d);
        zs.topRows(m) = p.z_tilde.block(m * (i - 1), 0, m, d);
      } else {
        us.topRows(m).setZero();
        zs.topRows(m).setConstant(kNegInf);
      }
      us.bottomRows(m) = p.u.block(m * i, d, m, d);
      zs.bottomRows(m) = p.z_tilde.block(m * i, d, m, d);
    } else {
      us = p.u.middleRows(m * i, m);
      zs = p.z_tilde.middleRows(m * i, m);
    }
    pooled.row(i) = pool(us, zs);
  }
  if (blocks == 0) {
    CompressedEntries none;
    none.entries.resize(0, d);
    return none;
  }
  CompressedEntries out = postprocess(pooled, 0);
  certify([&](std::int64_t i) { return prefill_pool_input(spec_, x, i); }, out);
  return out;
}

// spec 02 §2.6.5 (official Compressor.forward, start_pos > 0, one token).
CompressedEntries Compressor::decode(const Mat& x, std::int64_t pos, CompressorState& st) const {
  check_x(x, "decode");
  if (x.rows() != 1) bad("x", "decode: " + str(x.rows()) + " tokens, expected 1");
  if (pos <= 0 || pos >= spec_.max_seq_len) {
    bad("start_pos", "decode position " + str(pos) + " outside 1.." + str(spec_.max_seq_len - 1) + " (max_seq_len " +
                         str(spec_.max_seq_len) + ")");
  }
  if (pos != st.next_pos) {
    bad("start_pos", "decode position " + str(pos) + " but the sequence's next position is " + str(st.next_pos));
  }
  if (st.kv.rows() != spec_.state_rows() || st.kv.cols() != spec_.proj_dim() || st.score.rows() != st.kv.rows() ||
      st.score.cols() != st.kv.cols()) {
    bad("state", "shape does not match this compressor (use initial_state())");
  }
  const std::int64_t m = spec_.ratio;
  const std::int64_t d = spec_.head_dim;
  const CompressorProjections p = project(x, pos);
  const std::int64_t row = (spec_.overlap() ? m : 0) + pos % m;
  if (!prec_.official()) {
    if (st.x.rows() != spec_.state_rows() || st.x.cols() != spec_.dim) {
      bad("state", "exact mode: the state has no input rows (start the sequence with prefill)");
    }
    st.x.row(row) = x.row(0);
  }
  st.kv.row(row) = p.u.row(0);
  st.score.row(row) = p.z_tilde.row(0);
  st.next_pos = pos + 1;
  CompressedEntries out;
  out.first = pos / m;
  if ((pos + 1) % m != 0) {
    out.entries.resize(0, d);
    return out;
  }
  Mat pooled(1, d);
  CompressorPoolInput in;  // the entry's slot inputs before the state shifts (exact mode's Mp50 re-decisions)
  in.x = st.x;
  in.valid.assign(static_cast<std::size_t>(spec_.state_rows()), 1);
  for (std::int64_t r = 0; r < spec_.state_rows(); ++r) {
    if (st.score(r, 0) == kNegInf) in.valid[static_cast<std::size_t>(r)] = 0;
  }
  if (spec_.overlap()) {
    Mat us(2 * m, d);
    Mat zs(2 * m, d);
    us.topRows(m) = st.kv.block(0, 0, m, d);
    zs.topRows(m) = st.score.block(0, 0, m, d);
    us.bottomRows(m) = st.kv.block(m, d, m, d);
    zs.bottomRows(m) = st.score.block(m, d, m, d);
    pooled.row(0) = pool(us, zs);
    const Mat k_cur = st.kv.bottomRows(m);
    const Mat z_cur = st.score.bottomRows(m);
    st.kv.topRows(m) = k_cur;
    st.score.topRows(m) = z_cur;
    if (!prec_.official()) {
      const Mat x_cur = st.x.bottomRows(m);
      st.x.topRows(m) = x_cur;
    }
  } else {
    pooled.row(0) = pool(st.kv, st.score);
  }
  CompressedEntries res = postprocess(pooled, pos / m);  // RoPE position m·⌊pos/m⌋ = pos + 1 − m
  certify([&](std::int64_t) { return in; }, res);
  return res;
}

std::vector<CompressedEntries> Compressor::forward(const std::vector<Mat>& x, std::int64_t start_pos,
                                                   std::vector<CompressorState>& states) const {
  if (x.size() != states.size()) {
    bad("states", str(static_cast<std::int64_t>(states.size())) + " states for a batch of " +
                      str(static_cast<std::int64_t>(x.size())));
  }
  if (start_pos < 0 || start_pos >= spec_.max_seq_len) {
    bad("start_pos", str(start_pos) + " outside 0.." + str(spec_.max_seq_len - 1));
  }
  std::vector<CompressedEntries> out;
  out.reserve(x.size());
  for (std::size_t b = 0; b < x.size(); ++b) {
    if (x[b].rows() != x.front().rows()) bad("x", "sequences of a batch must have the same length");
    out.push_back(start_pos == 0 ? prefill(x[b], states[b]) : decode(x[b], start_pos, states[b]));
  }
  return out;
}

}  // namespace dsv4
