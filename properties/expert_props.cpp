// Properties of the clamped SwiGLU of a MoE expert (spec 03 §3.2 steps 2–4; ref/model/expert.hpp
// clamped_swiglu): the clamp bounds, and which side of which operand is clamped; and its backward
// (ref/train swiglu_backward.hpp, spec 06 §6.12; issue 16 item 8): zero gradient outside the clamp.
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>

#include "dsv4/model/expert.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/properties/registry.hpp"
#include "dsv4/train/swiglu_backward.hpp"

namespace dsv4::props {
namespace {

// min over x of silu(x) = x·σ(x), at x ≈ −1.2785 (rounded up in magnitude).
constexpr double kSiluMinMagnitude = 0.2784645428;

// An operand of the expert's element-wise step: ±m·2^e over many decades (e ∈ [−30, 30]), as the
// linear layers deliver it (bf16 values in official mode), or exactly ±λ, or zero.
double gen_operand(Mode mode, double limit) {
  const int kind = *rc::gen::inRange(0, 10);
  if (kind == 0) return 0.0;
  if (kind == 1) return *rc::gen::element(-limit, limit);
  const double m = 1.0 + *rc::gen::inRange(0, 1 << 20) * 0x1p-20;
  const double v = (*rc::gen::arbitrary<bool>() ? -1.0 : 1.0) * std::ldexp(m, *rc::gen::inRange(-30, 31));
  return mode == Mode::kOfficial ? static_cast<double>(round_bf16(v)) : v;
}

// λ: the configs' 10, or another fp32 value in [0.5, 64).
double gen_limit() {
  if (*rc::gen::arbitrary<bool>()) return 10.0;
  return static_cast<double>(static_cast<float>(0.5 + *rc::gen::inRange(0, 1 << 16) * (63.5 / 65536.0)));
}

double unit_roundoff(Mode mode) { return mode == Mode::kOfficial ? 0x1p-24 : 0x1p-53; }

// |h| ≤ max(silu(λ), |min silu|)·λ: u ∈ [−λ, λ] and silu(min(g, λ)) ∈ [min silu, silu(λ)] (silu
// increases right of its minimum, and λ > 0 lies there). Rounding: silu correctly rounded (official;
// exact mode: libm within 4 ulp) and one product: factor (1 + 4u)² ≤ 1 + 9u; with a routing weight
// w ∈ [0, route_scale] one more product. Finite for every finite g, u.
void clamp_bounds_property() {
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const Precision p(mode);
  const double limit = gen_limit();
  const double g = gen_operand(mode, limit), u = gen_operand(mode, limit);
  const bool routed = *rc::gen::arbitrary<bool>();
  const double w = routed ? static_cast<double>(static_cast<float>(*rc::gen::inRange(0, 1 << 12) * 0x1p-11)) : 1.0;
  const double h = clamped_swiglu(p, g, u, limit, routed ? &w : nullptr);
  const double silu_limit = limit / (1.0 + std::exp(-limit));
  const double uu = unit_roundoff(mode);
  const double bound = std::max(silu_limit, kSiluMinMagnitude) * limit * w * (1.0 + 9.0 * uu) * (1.0 + 2.0 * uu) *
                       (1.0 + 0x1p-40);  // the bound's own double evaluation
  RC_ASSERT(std::isfinite(h));
  RC_ASSERT(std::fabs(h) <= bound);
}

// Which side is clamped, bit for bit (the official Expert: gate.clamp(max=λ), up.clamp(−λ, λ)):
// g ≥ λ acts as g = λ; g below −λ is NOT clamped (the result equals the unclamped one with u
// clamped by hand); u beyond ±λ acts as ±λ; λ ≤ 0 disables the clamp.
void clamp_sides_property() {
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const Precision p(mode);
  const double limit = gen_limit();
  const double g = gen_operand(mode, limit), u = gen_operand(mode, limit);
  const double uc = std::clamp(u, -limit, limit);
  const double h = clamped_swiglu(p, g, u, limit, nullptr);
  if (g >= limit) RC_ASSERT(h == clamped_swiglu(p, limit, uc, limit, nullptr));
  RC_ASSERT(h == clamped_swiglu(p, std::min(g, limit), uc, 0.0, nullptr));
  if (g < -limit) {
    // the gate is not clamped from below: silu(g) itself, not silu(−λ)
    RC_ASSERT(h == p.mul(p.silu(g), uc));
  }
  RC_ASSERT(clamped_swiglu(p, g, u, 0.0, nullptr) == p.mul(p.silu(g), u));
}

// The clamp's gradient (spec 06 §6.12): a gate above λ and an up value beyond ±λ receive exactly
// +0 or −0 — whatever the upstream gradient and the routing weight — under both boundary rules;
// inside the clamp (g < λ, |u| < λ) the gradient is the unclamped element's, bit for bit; at the
// boundary it passes (kClosed, PyTorch's clamp) or stops (kOpen). The gate below −λ is not clamped:
// its gradient is the unclamped one there too.
void clamp_gradient_property() {
  const double limit = gen_limit();
  const double g = gen_operand(Mode::kExact, limit), u = gen_operand(Mode::kExact, limit);
  const double w = static_cast<double>(static_cast<float>(*rc::gen::inRange(1, 1 << 12) * 0x1p-11));
  const double dh = gen_operand(Mode::kExact, limit);
  for (const ClampBoundary b : {ClampBoundary::kClosed, ClampBoundary::kOpen}) {
    const SwigluElementGrads r = clamped_swiglu_backward(g, u, w, limit, dh, b);
    const SwigluElementGrads free = clamped_swiglu_backward(g, u, w, 0.0, dh, b);  // λ ≤ 0: no clamp
    if (g > limit || (b == ClampBoundary::kOpen && g == limit)) {
      RC_ASSERT(r.dg == 0.0);
    } else {
      const SwigluElementGrads in = clamped_swiglu_backward(g, std::clamp(u, -limit, limit), w, 0.0, dh, b);
      RC_ASSERT(r.dg == in.dg);
    }
    if (std::fabs(u) > limit || (b == ClampBoundary::kOpen && std::fabs(u) == limit)) {
      RC_ASSERT(r.du == 0.0);
    } else if (g < limit) {
      RC_ASSERT(r.du == free.du);
    }
    if (g < limit && std::fabs(u) < limit) {
      RC_ASSERT(r.dg == free.dg);
      RC_ASSERT(r.dw == free.dw);
    }
  }
}

}  // namespace

void register_expert_properties(Registry& r) {
  r.add_rc("expert.clamp_gradient", "expert",
           "backward of the SwiGLU clamp: exactly zero gradient for g > lambda and |u| > lambda (and at the boundary "
           "under kOpen), the unclamped gradient inside, bit for bit",
           1000, clamp_gradient_property);
  r.add_rc("expert.clamp_bounds", "expert",
           "|h| <= max(silu(lambda), 0.2785) lambda (x route weight) up to rounding; finite for any finite g, u", 1000,
           clamp_bounds_property);
  r.add_rc("expert.clamp_sides", "expert",
           "u clamped to [-lambda, lambda], the gate only from above (g < -lambda unclamped), bit for bit; lambda <= 0 "
           "no clamp",
           1000, clamp_sides_property);
}

}  // namespace dsv4::props
