// Backward of a linear layer y = x Wᵀ (forward spec 01 §1.6–§1.8, exact mode; backward spec 06
// §6.12), quantised weights by a straight-through estimator.
//
//   dx = dy · W_eff        dW = dyᵀ · x  (the sum over rows in ascending order)
//
// W_eff is the weight the forward multiplies by: the weight itself (bf16, fp32), or the
// dequantised value Q(W) of a quantised one. Straight-through estimator (spec 06 §6.8, §6.12): the
// report prescribes, for the FP4 QAT of the expert weights, gradients computed with respect to the
// (FP8-dequantised) weights and passed straight through to the FP32 master weights, without
// re-quantising the transposed weight; the reference applies that rule to every quantised weight
// (FP8 128×128 and FP4 1×32): dW_master = dW, and dx uses Q(W) itself.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation): y [M, N] = x [M, K]
// · w [N, K]ᵀ, row-major, each element Σ_k x_k w_k. The reference's exact-mode linear is the
// deterministic double GEMM of the same sums (numerics/gemm.hpp).
template <class T>
std::vector<T> linear_exact(const std::vector<T>& x, std::int64_t m, std::int64_t k, const std::vector<T>& w,
                            std::int64_t n) {
  std::vector<T> y(static_cast<std::size_t>(m * n));
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t o = 0; o < n; ++o) {
      T acc = 0;
      for (std::int64_t i = 0; i < k; ++i)
        acc += x[static_cast<std::size_t>(r * k + i)] * w[static_cast<std::size_t>(o * k + i)];
      y[static_cast<std::size_t>(r * n + o)] = acc;
    }
  }
  return y;
}

struct LinearGrads {
  Mat dx;       // [M, K]
  Mat dweight;  // [N, K]: the gradient of W_eff, and by the straight-through estimator of the master weight
};
// Exact mode (double, the deterministic GEMM: every element a sequential sum in ascending index
// order). std::invalid_argument on a shape mismatch.
LinearGrads linear_backward(const Mat& x, const Mat& effective_weight, const Mat& dy);

// The QAT simulation of spec 06 §6.8 on a master weight [N, K] (K a multiple of 32): MXFP4 — E2M1
// values with one power-of-two (E8M0) scale per 1×32 block, the block quantiser of spec 01 §1.5 —
// and back to its exact value. The weight W_eff of a linear whose master weight is `master`.
Mat fp4_qat_weight(const Mat& master);

}  // namespace dsv4
