// Backward of mHC's hc_pre (forward spec 04 §4.2, exact mode; backward spec 04 §4.8, spec 06
// §6.12): the RMS-scaled mixes, the gates and Sinkhorn (hc_split_sinkhorn_backward.hpp) and the
// layer input y = Σ_k pre_k X_k.
//
// Per token, v = the flattened state x [n·d], r = (‖v‖²/(n·d) + ε_n)^(−1/2), μ = r·(W v):
//   dpre_k = ⟨dy, X_k⟩;  dX_k += pre_k dy;
//   (dμ, dα, db) from (dpre, dpost, dcomb) through the gates and every Sinkhorn iteration, plus the
//   upstream gradient of the mixes output;
//   dW = Σ_tokens r dμ vᵀ;  dv += r Wᵀ dμ − (r²/(n·d)) ⟨dμ, μ⟩ v.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/train/hc_split_sinkhorn_backward.hpp"

namespace dsv4 {

// The RMS-scaled mixes of one token in any scalar (spec 04 §4.2 steps 2–3, exact mode; shared by
// hc_pre and hc_head): x [n·d], fn [count, n·d] → mixes [count], μ = (W v)·r,
// r = (Σ v²/(n·d) + ε_n)^(−1/2).
template <class T>
void rms_scaled_mixes_exact(const T* x, std::int64_t len, const T* fn, std::int64_t count, double norm_eps, T* mixes) {
  using std::sqrt;
  T sum = 0;
  for (std::int64_t i = 0; i < len; ++i) sum += x[i] * x[i];
  const T r = T(1) / sqrt(sum / T(len) + T(norm_eps));
  for (std::int64_t m = 0; m < count; ++m) {
    T acc = 0;
    for (std::int64_t i = 0; i < len; ++i) acc += fn[m * len + i] * x[i];
    mixes[m] = acc * r;
  }
}

// y [d] = Σ_k pre_k X_k of one token (spec 04 §4.2 step 5, §4.5), exact, any scalar.
template <class T>
void weighted_stream_sum_exact(const T* x, std::int64_t n, std::int64_t d, const T* pre, T* y) {
  for (std::int64_t delta = 0; delta < d; ++delta) {
    T acc = 0;
    for (std::int64_t k = 0; k < n; ++k) acc += pre[k] * x[k * d + delta];
    y[delta] = acc;
  }
}

// The exact-mode forward of one token in any scalar (the gradient check's Mp50 evaluation). The
// reference's hc_pre (ref/model mhc.cpp) is written for double through Precision; this is its
// exact-mode equation (μ = (W v)·r, then hc_split_sinkhorn_exact, then y), and the gradient check
// compares the two at every check point. x [n·d], fn [(2+n)n, n·d], base [(2+n)n], scale [3] →
// y [d], post [n], comb [n·n], mixes [(2+n)n].
template <class T>
void hc_pre_exact(const T* x, std::int64_t n, std::int64_t d, const T* fn, const T* base, const T* scale,
                  std::int64_t iters, double hc_eps, double norm_eps, T* y, T* post, T* comb, T* mixes) {
  rms_scaled_mixes_exact(x, n * d, fn, (2 + n) * n, norm_eps, mixes);
  std::vector<T> pre(static_cast<std::size_t>(n));
  hc_split_sinkhorn_exact(mixes, n, scale, base, iters, hc_eps, pre.data(), post, comb);
  weighted_stream_sum_exact(x, n, d, pre.data(), y);
}

// The backward of the RMS-scaled mixes (exact mode, double) for all tokens: x [tokens, n·d], fn
// [count, n·d], mixes μ [tokens, count] (the forward's), dmixes [tokens, count] →
//   dx = r Wᵀ dμ − (r²/(n·d)) ⟨dμ, μ⟩ v per token,  dfn = Σ_tokens r dμ vᵀ (tokens ascending).
struct MixGrads {
  Mat dx;   // [tokens, n·d]
  Mat dfn;  // [count, n·d]
  Mat gr;   // [tokens, count]: r dμ per token, the coefficients of dfn = grᵀ x (spec 06 §6.14)
};
MixGrads rms_scaled_mixes_backward(const Mat& x, const Mat& fn, double norm_eps, const Mat& mixes, const Mat& dmixes);
// μ = (W v)·r of every token (exact mode, double; the deterministic GEMM).
Mat rms_scaled_mixes_of(const Mat& x, const Mat& fn, double norm_eps);
// y = Σ_k pre_k X_k: dpre [tokens, n] = ⟨dy, X_k⟩ and dx [tokens, n·d] = pre_k dy (exact, double).
void weighted_stream_sum_backward(const Mat& x, std::int64_t n, const Mat& pre, const Mat& dy, Mat& dpre, Mat& dx);

// The per-token coefficients of mHC's parameter gradients (hc_pre and hc_head), each [tokens, count]:
// the mixes μ, da = ∂L/∂a_m (a_m = μ_m α_G + b_m) and gr = r dμ, so that over the tokens
//   dfn = Σ_t gr_tᵀ x_t,  dbase_m = Σ_t da_{t,m},  dscale_G = Σ_t Σ_{m ∈ G} μ_{t,m} da_{t,m}.
// Exact mode sums them in double (rows ascending); the official-style step reduces them by the
// FP32-partitioned rule (spec 06 §6.14, mhc_backward_fp32.hpp).
struct MhcParamRows {
  Mat mixes, da, gr;
};

struct HcPreGrads {
  Mat dx;      // [tokens, n·d]
  Mat dfn;     // [(2+n)n, n·d]
  Vec dbase;   // [(2+n)n]
  Vec dscale;  // [3]
  MhcParamRows rows;
};
// Exact mode (double; the GEMMs the deterministic ones of numerics/gemm.hpp, weight gradients summed
// over tokens in ascending order). Upstream: dy [tokens, d], dpost [tokens, n], dcomb [tokens, n·n],
// dmixes [tokens, (2+n)n]. std::invalid_argument on a shape mismatch.
HcPreGrads hc_pre_backward(const Mat& x, std::int64_t n, const Mat& fn, const Vec& base, const Vec& scale,
                           std::int64_t iters, double hc_eps, double norm_eps, const Mat& dy, const Mat& dpost,
                           const Mat& dcomb, const Mat& dmixes);

}  // namespace dsv4
