// Backward of the model head (forward spec 05 §5.3, exact mode; backward spec 06 §6.12): per
// position, hc_head (spec 04 §4.5) → the final RMSNorm with weight γ → logits = n Hᵀ with the
// head weight H [V, d]. The three outputs are each recorded (hc_head, norm, logits), so each has an
// upstream gradient; the backward chains the registered pieces:
//   logits:  n̄ += l̄ H,  H̄ = Σ_rows l̄ᵀ n        (linear_backward; H is fp32/bf16: no quantiser)
//   norm:    h̄ += rmsnorm_backward(h, γ, n̄)_x,  γ̄ = rmsnorm_backward(...)_weight
//   hc_head: x̄, f̄n, b̄ase, s̄cale = hc_head_backward(x, h̄)
// (h̄ and n̄ include their own outputs' upstream gradients). Sums over rows in ascending order.
// Smooth everywhere (ε > 0 in both RMS scales).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/train/hc_head_backward.hpp"
#include "dsv4/train/linear_backward.hpp"
#include "dsv4/train/rmsnorm_backward.hpp"

namespace dsv4 {

// The exact-mode forward of every row in any scalar (the gradient check's Mp50 evaluation; the
// reference's head_forward is double through Precision): x [rows, n·d], fn [n, n·d], base [n],
// scale, γ [d], head [V, d] → {hc_head [rows, d], norm [rows, d], logits [rows, V]}, each row taken
// as the last position of its own sequence (the op registry's head_rows form).
template <class T>
std::vector<std::vector<T>> head_exact(const std::vector<T>& x, std::int64_t rows, std::int64_t n, std::int64_t d,
                                       const std::vector<T>& fn, const std::vector<T>& base, const T& scale,
                                       const std::vector<T>& norm, const std::vector<T>& head, std::int64_t vocab,
                                       double hc_eps, double norm_eps) {
  std::vector<T> h(static_cast<std::size_t>(rows * d));
  for (std::int64_t t = 0; t < rows; ++t) {
    hc_head_exact(x.data() + t * n * d, n, d, fn.data(), base.data(), scale, hc_eps, norm_eps, h.data() + t * d);
  }
  std::vector<T> y = rmsnorm_exact(h, rows, d, norm, T(norm_eps));
  std::vector<T> logits = linear_exact(y, rows, d, head, vocab);
  return {std::move(h), std::move(y), std::move(logits)};
}

struct HeadGrads {
  Mat dx;     // [rows, n·d]
  Mat dfn;    // [n, n·d]
  Vec dbase;  // [n]
  double dscale = 0;
  Vec dnorm;             // [d]: the final RMSNorm's weight γ
  Mat dhead;             // [V, d]
  MhcParamRows hc_rows;  // hc_head's per-token coefficients (hc_head_backward.hpp)
  Mat norm_dy, norm_xr;  // [rows, d]: the final RMSNorm's upstream gradient (its own + the logits') and
                         // x·r, the coefficients of dnorm (rmsnorm_backward.hpp, spec 06 §6.14)
};
// Exact mode (double). x [rows, n·d]; dhc_head, dnorm_out [rows, d], dlogits [rows, V].
// std::invalid_argument on a shape mismatch.
HeadGrads head_backward(const Mat& x, std::int64_t n, const Mat& fn, const Vec& base, double scale, const Vec& norm,
                        const Mat& head, double hc_eps, double norm_eps, const Mat& dhc_head, const Mat& dnorm_out,
                        const Mat& dlogits);

}  // namespace dsv4
