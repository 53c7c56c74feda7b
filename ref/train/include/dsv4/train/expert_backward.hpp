// Backward of one MoE expert, SwiGLU with the clamp (forward spec 03 §3.2, exact mode; backward
// spec 06 §6.7, §6.12).
//
// Forward (λ = swiglu_limit > 0; λ ≤ 0: no clamp): g = x W1ᵀ, u = x W3ᵀ, g_c = min(g, λ),
// u_c = clamp(u, −λ, λ), a = silu(g_c) · u_c, h = w · a (routed; w the token's routing weight),
// y = h W2ᵀ. Backward, with dh = dy W2:
//   dW2 = dyᵀ h;  dw = Σ_i dh_i a_i;  da = w · dh;
//   dg = da · u_c · silu'(g_c) · [g passes],  silu'(z) = σ(z) (1 + z (1 − σ(z)));
//   du = da · silu(g_c) · [u passes];
//   dx = dg W1 + du W3;  dW1 = dgᵀ x;  dW3 = duᵀ x  (sums over tokens in ascending order).
// The element-wise part (and the clamp's boundary convention) is swiglu_backward.hpp's. Expert weights given as their
// effective values (quantised weights dequantised: the straight-through estimator of linear_backward.hpp).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/train/swiglu_backward.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation). The reference's
// expert_forward (ref/model) is written for double through Precision; this is its exact-mode
// equation — silu(z) = z / (1 + e^(−z)), h = w · (silu(g_c) · u_c) — and the gradient check compares
// the two at every check point. x [rows, d], route_weight [rows] (nullptr: a shared expert, no
// weight), w1 and w3 [de, d], w2 [d, de], row-major → y [rows, d].
template <class T>
std::vector<T> expert_exact(const std::vector<T>& x, std::int64_t rows, std::int64_t d,
                            const std::vector<T>* route_weight, const std::vector<T>& w1, const std::vector<T>& w3,
                            const std::vector<T>& w2, std::int64_t de, double limit) {
  std::vector<T> h(static_cast<std::size_t>(rows * de));
  for (std::int64_t t = 0; t < rows; ++t) {
    for (std::int64_t i = 0; i < de; ++i) {
      T g = 0, u = 0;
      for (std::int64_t k = 0; k < d; ++k) {
        g += x[static_cast<std::size_t>(t * d + k)] * w1[static_cast<std::size_t>(i * d + k)];
        u += x[static_cast<std::size_t>(t * d + k)] * w3[static_cast<std::size_t>(i * d + k)];
      }
      const T a = clamped_swiglu_exact(
          g, u, route_weight != nullptr ? &(*route_weight)[static_cast<std::size_t>(t)] : nullptr, limit);
      h[static_cast<std::size_t>(t * de + i)] = a;
    }
  }
  std::vector<T> y(static_cast<std::size_t>(rows * d));
  for (std::int64_t t = 0; t < rows; ++t) {
    for (std::int64_t o = 0; o < d; ++o) {
      T acc = 0;
      for (std::int64_t i = 0; i < de; ++i)
        acc += h[static_cast<std::size_t>(t * de + i)] * w2[static_cast<std::size_t>(o * de + i)];
      y[static_cast<std::size_t>(t * d + o)] = acc;
    }
  }
  return y;
}

struct ExpertGrads {
  Mat dx;             // [rows, d]
  Vec droute_weight;  // [rows] (empty for a shared expert)
  Mat dw1, dw3;       // [de, d]
  Mat dw2;            // [d, de]
  // The per-row coefficients whose sums over the rows are the weight gradients (dW2 = Σ dyᵀ h,
  // dW1 = Σ dgᵀ x, dW3 = Σ duᵀ x): h = w · silu(g_c) · u_c and the clamped SwiGLU's dg, du
  // [rows, de]. The official-style step reduces them by spec 06 §6.14 (expert_backward_fp32.hpp).
  Mat h, dg, du;
};
// Exact mode (double; every GEMM the deterministic one of numerics/gemm.hpp). route_weight nullptr:
// a shared expert. std::invalid_argument on a shape mismatch.
ExpertGrads expert_backward(const Mat& x, const Vec* route_weight, const Mat& w1, const Mat& w3, const Mat& w2,
                            double limit, const Mat& dy, ClampBoundary boundary = ClampBoundary::kClosed);

}  // namespace dsv4
