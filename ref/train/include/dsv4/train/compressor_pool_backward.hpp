// Backward of the compressor's gated softmax pooling (forward spec 02 §2.6.2, exact mode; backward
// spec 06 §6.12). One pooled entry: S slots (ratio 128: the block's 128 tokens; ratio 4 with
// overlap: 8 slots, block i − 1's first-half channels then block i's second-half channels) and D
// channels; per channel δ, over the valid slots j (a padding slot has z̃ = −∞ and u = 0: weight 0):
//   w_j = e^{z̃_j} / Σ_i e^{z̃_i};  C = Σ_j u_j w_j.
// With the upstream gradient C̄ of C:
//   ū_j = w_j C̄;  z̄_j = w_j (u_j − C) C̄  (the softmax's Jacobian: ∂C/∂z̃_j = w_j (u_j − C));
// a padding slot receives no gradient (its weight is exactly 0 and z̃ = −∞ is a constant).
// Every entry's slots are its own: no reduction across entries here (the projections before the
// pooling sum a token's slot gradients: spec 06 §6.12).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation; the reference's
// Compressor::pool is double through Precision): u, z [S, D] row-major (slot-major) → C [D],
// max-subtracted as the reference; z = −∞ marks padding (std::isinf for double, a value below
// −1e300 counts as −∞ for other scalars).
template <class T>
std::vector<T> compressor_pool_exact(const std::vector<T>& u, const std::vector<T>& z, std::int64_t slots,
                                     std::int64_t channels) {
  using std::exp;
  std::vector<T> out(static_cast<std::size_t>(channels));
  const auto padding = [](const T& v) { return v < T(-1e300); };
  for (std::int64_t c = 0; c < channels; ++c) {
    bool any = false;
    T mx = 0;
    for (std::int64_t j = 0; j < slots; ++j) {
      const T& zj = z[static_cast<std::size_t>(j * channels + c)];
      if (padding(zj)) continue;
      if (!any || zj > mx) mx = zj;
      any = true;
    }
    T sum = 0, acc = 0;
    for (std::int64_t j = 0; j < slots; ++j) {
      const auto at = static_cast<std::size_t>(j * channels + c);
      if (padding(z[at])) continue;
      const T e = exp(z[at] - mx);
      sum += e;
      acc += u[at] * e;
    }
    out[static_cast<std::size_t>(c)] = acc / sum;
  }
  return out;
}

struct CompressorPoolGrads {
  Mat du;  // [S, D]
  Mat dz;  // [S, D]
};
// Exact mode (double). u, z [S, D] (z = −∞: padding), dc [D]. std::invalid_argument on a shape
// mismatch or a channel whose every slot is padding.
CompressorPoolGrads compressor_pool_backward(const Mat& u, const Mat& z, const RowVec& dc);

}  // namespace dsv4
