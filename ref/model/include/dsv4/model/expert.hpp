// One MoE expert: SwiGLU with clamping (spec 03 §3.2; official code class `Expert`).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// w1 (gate), w3 (up) [d_e, d]; w2 (down) [d, d_e]; each bf16, FP8 or FP4 (LinearWeight).
struct ExpertWeights {
  LinearWeight w1, w2, w3;
};

// spec 03 §3.2 steps 2–4 for one element: u clamped to [−λ, λ], the gate g only from above
// (min(g, λ)), h = fl(silu(g)·u), and for a routed expert h = fl(w·h) (route_weight non-null);
// λ = limit ≤ 0: no clamp. The element-wise core of expert_forward (properties/expert_props.cpp).
double clamped_swiglu(const Precision& p, double g, double u, double limit, const double* route_weight);

// The element-wise core on flat row-major arrays (the op registry's and the GPU kernel's host
// fallback's adapter): g, u [tokens, de] (bf16 values), route_weight [tokens] or nullptr, limit =
// swiglu_limit (used as fl32(limit)) → bf16(clamped_swiglu(g, u)) [tokens, de], the input of the
// down projection. Throws std::invalid_argument for tokens < 0 or de < 0.
std::vector<float> clamped_swiglu_rows(const Precision& p, const float* g, const float* u, std::int64_t tokens,
                                       std::int64_t de, double limit, const float* route_weight);

// spec 03 §3.2: y = W2 bf16(w · silu(min(g, λ)) · clamp(u, −λ, λ)), g = W1 x, u = W3 x (each a
// quantised linear with bf16 output, widened to fp32), λ = swiglu_limit (no clamp when λ ≤ 0), all
// element-wise steps in fp32 (official mode) or double (exact mode).
// x [T, d] (bf16 values in official mode). route_weight: one routing weight per row of x (routed
// experts; multiplied before the bf16 cast and the down projection) or nullptr (shared expert).
// Returns [T, d] (bf16 values in official mode). Throws std::invalid_argument naming `x`,
// `route_weight` or the weight (`w1`, `w2`, `w3`) on a shape mismatch.
Mat expert_forward(const Precision& p, const ModelConfig& c, const ExpertWeights& w, const Mat& x,
                   const Vec* route_weight);

}  // namespace dsv4
