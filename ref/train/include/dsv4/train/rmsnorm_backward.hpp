// Backward of RMSNorm (forward spec 01 §1.11 C8, exact mode; backward spec 06 §6.12).
//
// Per row, with n = dim, r = (Σ_j x_j² / n + eps)^(−1/2), y_i = w_i · x_i · r:
//   dw_i += dy_i · x_i · r                          (summed over rows in ascending order)
//   dz_i  = dy_i · w_i
//   dx_i  = r · dz_i − x_i · (r³ / n) · Σ_j dz_j x_j
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation). The reference's
// rmsnorm (ref/model) is written for double through Precision; this is its exact-mode equation —
// y_i = w_i · (x_i · (mean x² + eps)^(−1/2)) — and the gradient check compares the two at every
// check point. x [rows, dim], w [dim], row-major.
template <class T>
std::vector<T> rmsnorm_exact(const std::vector<T>& x, std::int64_t rows, std::int64_t dim, const std::vector<T>& w,
                             const T& eps) {
  using std::sqrt;
  std::vector<T> y(x.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x.data() + r * dim;
    T sum = 0;
    for (std::int64_t i = 0; i < dim; ++i) sum += xr[i] * xr[i];
    const T rinv = T(1) / sqrt(sum / T(dim) + eps);
    for (std::int64_t i = 0; i < dim; ++i) y[static_cast<std::size_t>(r * dim + i)] = w[i] * (xr[i] * rinv);
  }
  return y;
}

struct RmsNormGrads {
  Mat dx;       // [rows, dim]
  Vec dweight;  // [dim]
  Mat xr;       // [rows, dim]: x · r per row, the coefficients of dweight = Σ_rows dy ⊙ xr (spec 06 §6.14)
};
// Exact mode (double). std::invalid_argument on a shape mismatch.
RmsNormGrads rmsnorm_backward(const Mat& x, const Vec& weight, double eps, const Mat& dy);

}  // namespace dsv4
