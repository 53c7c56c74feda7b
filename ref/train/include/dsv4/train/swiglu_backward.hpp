// Backward of the clamped SwiGLU, element-wise (forward spec 03 §3.2 steps 2–4, exact mode;
// backward spec 06 §6.7, §6.12): h = w · silu(g_c) · u_c, g_c = min(g, λ), u_c = clamp(u, −λ, λ)
// (λ ≤ 0: no clamp; w = 1 for the shared expert). With the upstream gradient dh:
//   dw = dh · silu(g_c) · u_c;  da = w · dh;
//   dg = da · u_c · silu'(g_c) · [g passes],  silu'(z) = σ(z) (1 + z (1 − σ(z)));
//   du = da · silu(g_c) · [u passes].
// Zero gradient outside the clamp (g > λ; u < −λ or u > λ). At the boundary the convention is
// ClampBoundary (spec 06 §6.12): kClosed (default) lets the gradient pass at g = λ and u = ±λ, as
// PyTorch's clamp backward does (mask x ≥ min ∧ x ≤ max) — what a training engine built on autograd
// computes; kOpen stops it there too.
#pragma once

#include <cmath>
#include <span>

namespace dsv4 {

enum class ClampBoundary {
  kClosed,  // gradient passes at g = λ, u = ±λ (PyTorch clamp backward)
  kOpen,    // gradient zero at the boundary too
  kNone,    // no mask: the gradient passes outside the clamp too — never a valid choice; the bug
            // catalogue's Deviation::kSwigluNoClampGrad (a backward that forgot the clamp)
};

// The exact-mode forward of one element in any scalar (the gradient check's Mp50 evaluation; the
// reference's clamped_swiglu is double-only through Precision, and the gradient check compares the
// two): silu(z) = z / (1 + e^(−z)), h = w · (silu(g_c) · u_c); w nullptr: no routing weight.
template <class T>
T clamped_swiglu_exact(T g, T u, const T* w, double limit) {
  using std::exp;
  if (limit > 0) {
    const T lim(limit);
    if (u < -lim) u = -lim;
    if (u > lim) u = lim;
    if (g > lim) g = lim;
  }
  const T a = g / (T(1) + exp(-g)) * u;
  return w != nullptr ? *w * a : a;
}

struct SwigluElementGrads {
  double dg = 0, du = 0, dw = 0;
};
// Exact mode (double) for one element; w = 1 for the shared expert (then dw is unused).
SwigluElementGrads clamped_swiglu_backward(double g, double u, double w, double limit, double dh,
                                           ClampBoundary boundary = ClampBoundary::kClosed);

// Gradient-check points (spec 06 §6.12): a clamp limit λ whose edges every gate g and every |u| miss
// by ≥ margin, with at least one g above λ and one |u| beyond it (the zero-gradient side is
// exercised): the first of 0.8, 0.85, …, 3.75. std::logic_error when none qualifies.
double clamp_limit_away_from_edges(std::span<const double> g, std::span<const double> u, double margin);

}  // namespace dsv4
