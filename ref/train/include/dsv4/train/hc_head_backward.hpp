// Backward of mHC's hc_head (forward spec 04 §4.5, exact mode; backward spec 04 §4.8 "the pre-only
// special case", spec 06 §6.12). Per token: μ = (W v)·r (n mixes), pre_k = σ(μ_k α + b_k) + ε,
// y = Σ_k pre_k X_k; backward: dpre_k = ⟨dy, X_k⟩, dX_k += pre_k dy, da_k = dpre_k σ(1 − σ),
// dμ_k = α da_k, dα = Σ μ_k da_k, db_k = da_k (α, b summed over tokens in ascending order), then the
// mixes' backward (hc_pre_backward.hpp rms_scaled_mixes_backward).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/train/hc_pre_backward.hpp"

namespace dsv4 {

// The exact-mode forward of one token in any scalar (the gradient check's Mp50 evaluation; the
// reference's hc_head is double-only, the gradient check compares the two): x [n·d], fn [n, n·d],
// base [n], scale α → y [d].
template <class T>
void hc_head_exact(const T* x, std::int64_t n, std::int64_t d, const T* fn, const T* base, const T& scale,
                   double hc_eps, double norm_eps, T* y) {
  using std::exp;
  std::vector<T> mixes(static_cast<std::size_t>(n)), pre(static_cast<std::size_t>(n));
  rms_scaled_mixes_exact(x, n * d, fn, n, norm_eps, mixes.data());
  for (std::int64_t k = 0; k < n; ++k) {
    pre[static_cast<std::size_t>(k)] =
        T(1) / (T(1) + exp(-(mixes[static_cast<std::size_t>(k)] * scale + base[k]))) + T(hc_eps);
  }
  weighted_stream_sum_exact(x, n, d, pre.data(), y);
}

struct HcHeadGrads {
  Mat dx;     // [tokens, n·d]
  Mat dfn;    // [n, n·d]
  Vec dbase;  // [n]
  double dscale = 0;
  MhcParamRows rows;  // count n, one scale (hc_pre_backward.hpp)
};
// Exact mode (double). dy [tokens, d]. std::invalid_argument on a shape mismatch.
HcHeadGrads hc_head_backward(const Mat& x, std::int64_t n, const Mat& fn, const Vec& base, double scale, double hc_eps,
                             double norm_eps, const Mat& dy);

}  // namespace dsv4
