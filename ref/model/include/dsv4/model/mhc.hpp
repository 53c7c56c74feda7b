// Manifold-constrained hyper-connections, mHC (spec 04; official code Block.hc_pre, Block.hc_post,
// ParallelHead.hc_head in inference/model.py and the kernel hc_split_sinkhorn_kernel in
// inference/kernel_tilelang.py).
//
// The residual state of a token is n = cfg.hc_mult streams of width d = cfg.dim, held as one row
// of a Mat [s, n·d], stream-major: column k·d + δ is stream k, feature δ (spec 04 §4.1).
//
// Precision (ref/README.md): official mode follows model.py's dtype policy (fp32 flatten, GEMM
// and gates; bf16 layer input and new state) with C1–C8 of spec 01 §1.11, including C3: the
// Sinkhorn kernel's affine maps μ·α + b are single kernel expressions, so they are one fp32 FMA.
// Exact mode computes the same formulas in double with no storage rounding.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// One mHC site, hc_attn_* or hc_ffn_* (spec 04 §4.1). Rows of fn and entries of base:
// [0, n) → pre, [n, 2n) → post, [2n + j·n + k] → comb[j, k]. scale = (α_pre, α_post, α_res).
struct HcWeights {
  Mat fn;     // fp32 [(2+n)n, n·d]
  Vec base;   // fp32 [(2+n)n]
  Vec scale;  // fp32 [3]

  // Deterministic synthetic weights (Philox, seed), every value rounded to fp32:
  //   fn    ~ N(0, 1/(n·d))       so that μ = (W v)·rsqrt(mean v²) ~ N(0, 1) per mix;
  //   scale = 10^U(−2, 0)         log-uniform in [0.01, 1] per group (pre, post, res);
  //   base  ~ N(0, 0.5²) for pre and post, N(0, 1) for comb.
  // The comb logits A = μ·α_res + b then have a spread of about 1–1.4: Sinkhorn inputs in the
  // regime where 20 iterations converge to ~1e-6 for most tokens and visibly less for some
  // (spec 04 §4.7 table), neither uniform nor one-hot.
  static HcWeights synthetic(const ModelConfig& c, std::uint64_t seed);
  // Throws std::invalid_argument naming the field when a shape does not match c (hc_mult, dim).
  void validate(const ModelConfig& c) const;
};

// hc_head_fn / hc_head_base / hc_head_scale (spec 04 §4.5).
struct HcHeadWeights {
  Mat fn;            // fp32 [n, n·d]
  Vec base;          // fp32 [n]
  double scale = 0;  // hc_head_scale[0], fp32

  // Same distributions as HcWeights::synthetic: fn ~ N(0, 1/(n·d)), scale = 10^U(−2, 0),
  // base ~ N(0, 0.5²); fp32 values.
  static HcHeadWeights synthetic(const ModelConfig& c, std::uint64_t seed);
  void validate(const ModelConfig& c) const;
};

struct SinkhornResult {
  Vec pre;   // [n]    σ(a) + ε ∈ (ε, 1 + ε)
  Vec post;  // [n]    2σ(a') ∈ (0, 2)
  Mat comb;  // [n, n] comb(j, k): the weight that carries residual stream j into new stream k
};

struct HcPreOutput {
  Mat y;      // [s, d]       layer input (bf16 values in official mode)
  Mat post;   // [s, n]
  Mat comb;   // [s, n·n]     row t = comb_t row-major (index j·n + k)
  Mat mixes;  // [s, (2+n)n]  μ, the RMS-scaled mixes
};

// spec 04 §4.3 steps 4–7: the Sinkhorn part alone, on the comb logits A [n, n] (row j, column k):
// row softmax (max subtracted) + ε, column normalisation, then iters − 1 rounds of (row, column)
// normalisation with ε in every denominator. Official: fp32 with C1 sums of the n-element rows and
// columns and C2 exp. Throws std::invalid_argument when A is not square, iters < 1 or eps < 0.
Mat hc_sinkhorn(const Precision& p, const Mat& logits, std::int64_t iters, double eps);

// spec 04 §4.3: pre, post, comb of one token from its (2+n)n mixes μ (fp32 values in official
// mode); uses w.base and w.scale, ε = c.hc_eps, c.hc_sinkhorn_iters iterations.
SinkhornResult hc_split_sinkhorn(const Precision& p, const ModelConfig& c, const double* mu, const HcWeights& w);

// The same for `tokens` tokens in the flat-array layout of the op registry, the GPU kernel and the
// plugin ABI (gpu/ops, properties/include/dsv4/properties/plugin_abi.h): mixes [tokens, (2+n)n],
// scale [3], base [(2+n)n] (fp32 values), n = hc_mult, `iters` Sinkhorn iterations, ε = eps.
// The one adapter from flat arrays to the reference: pre [tokens, n], post [tokens, n] and comb
// [tokens, n·n] (row t = comb_t row-major). Throws std::invalid_argument for n < 1, iters < 1,
// eps < 0 or tokens < 0.
struct SinkhornRows {
  Mat pre, post, comb;
};
SinkhornRows hc_split_sinkhorn_rows(const Precision& p, const float* mixes, std::int64_t tokens, int n,
                                    const float* scale, const float* base, int iters, double eps);

// spec 04 §4.2: x [s, n·d] (bf16 values in official mode) → layer input y, post, comb, mixes.
HcPreOutput hc_pre(const Precision& p, const ModelConfig& c, const Mat& x, const HcWeights& w);

// hc_pre on flat row-major arrays (the op registry's and the GPU kernels' host fallback's adapter):
// x [tokens, n·d] (bf16 values), fn [(2+n)n, n·d], base [(2+n)n], scale [3] (fp32 values), `iters`
// Sinkhorn iterations, ε = hc_eps, RMS ε = norm_eps → y [tokens, d], post [tokens, n], comb
// [tokens, n·n], mixes [tokens, (2+n)n]. Throws std::invalid_argument for n < 1, d < 1, tokens < 0,
// iters < 1 or hc_eps < 0.
HcPreOutput hc_pre_rows(const Precision& p, const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                        const float* fn, const float* base, const float* scale, std::int64_t iters, double hc_eps,
                        double norm_eps);

// spec 04 §4.4: X'_k = bf16(fl(fl(post_k·f) + C1 Σ_j fl(comb[j,k]·X_j))) per token.
// f [s, d] (sublayer output), residual [s, n·d] (the state before hc_pre), post [s, n],
// comb [s, n·n] → new state [s, n·d].
Mat hc_post(const Precision& p, const ModelConfig& c, const Mat& f, const Mat& residual, const Mat& post,
            const Mat& comb);
// hc_post on flat row-major arrays (the op registry's and the GPU kernel's host fallback's
// adapter): f [tokens, d], residual [tokens, n·d], post [tokens, n], comb [tokens, n·n] (fp32
// values) → the new state [tokens, n·d] (bf16 values in official mode). Throws
// std::invalid_argument for n < 1, d < 1 or tokens < 0.
std::vector<float> hc_post_rows(const Precision& p, const float* f, const float* residual, const float* post,
                                const float* comb, std::int64_t tokens, std::int64_t n, std::int64_t d);

// spec 04 §4.5 gate: pre_k = fl(σ(fl(fl(μ_k·α) + b_k)) + ε) for one token's n head mixes μ (fp32
// values in official mode) — separate fp32 ops, no FMA.
Vec hc_head_gates(const Precision& p, const ModelConfig& c, const double* mu, const HcHeadWeights& w);

// spec 04 §4.5: x [s, n·d] → y [s, d] = bf16(Σ_k fl(pre_k·X_k)), pre_k = σ(μ_k·α + b_k) + ε as
// separate fp32 ops (no FMA).
Mat hc_head(const Precision& p, const ModelConfig& c, const Mat& x, const HcHeadWeights& w);

// hc_head on flat row-major arrays (the op registry's and the GPU kernel's host fallback's adapter):
// x [tokens, n·d] (bf16 values), fn [n, n·d], base [n] (fp32 values), scale = hc_head_scale[0],
// ε = hc_eps, RMS ε = norm_eps → y [tokens, d] (bf16 values in official mode). Throws
// std::invalid_argument for n < 1, d < 1 or tokens < 0.
std::vector<float> hc_head_rows(const Precision& p, const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                                const float* fn, const float* base, float scale, double hc_eps, double norm_eps);

}  // namespace dsv4
