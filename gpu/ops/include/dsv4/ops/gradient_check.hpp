// The one gradient check of the op registry (spec 06 §6.12): every registered backward
// (Op::gradient, dsv4/ops/gradient.hpp) is checked the same way, on every case of its gradient-check
// generator:
//   - the 50-digit forward (GradientForms::forward_mp50) agrees with the reference's own exact-mode
//     double forward (forward_exact) to `forward_tolerance` relative — the equations differentiated
//     are the reference's;
//   - the exact-mode backward (double) agrees with central finite differences of
//     L = Σ_outputs Σ dy ⊙ y evaluated in Mp50, step h_j = 1e-20 · max(|x_j|, 1e-3) (options), element by
//     element of every differentiable input: per input, ‖g − fd‖∞ / ‖fd‖∞ ≤ `tolerance`;
//   - structure: one gradient per differentiable input with its shape, upstream gradients with the
//     outputs' shapes, the flat form (Op::backward_reference) with the names and shapes of the inputs.
// The check points are chosen by each registration away from kinks (its labels say by how much); a
// finite difference across a kink is not a derivative.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/ops/op.hpp"
#include "dsv4/selfcheck/formats_selfcheck.hpp"

namespace dsv4::ops {

struct GradientCheckOptions {
  std::uint64_t seed = 1;
  double tolerance = 1e-10;          // backward vs finite differences, relative (∞-norm per input)
  double forward_tolerance = 1e-12;  // Mp50 forward vs the reference's exact double forward, relative
  double step = 1e-20;               // central-difference step h_j = step · max(|x_j|, step_floor)
  double step_floor = 1e-3;
};

// The check of one case.
struct GradientCaseCheck {
  std::string label;
  std::int64_t differences = 0;  // central differences taken (elements of the differentiable inputs)
  double max_rel = 0;            // max over differentiable inputs of ‖g − fd‖∞ / ‖fd‖∞
  std::string worst;             // where the largest |g − fd| of the worst input lies, with both values
  double forward_rel = 0;        // max over outputs of ‖y_double − y_mp50‖∞ / ‖y_mp50‖∞
  std::string error;             // a structural mismatch or an exception's message ("" when none)
  bool passed(const GradientCheckOptions& opt) const {
    return error.empty() && max_rel <= opt.tolerance && forward_rel <= opt.forward_tolerance;
  }
  std::string text() const;  // one line
};

GradientCaseCheck check_gradient_case(const Op& op, const Case& c, const GradientCheckOptions& opt);
// Every case of op.gradient->cases(opt.seed). std::invalid_argument when op has no backward.
std::vector<GradientCaseCheck> check_gradient_cases(const Op& op, const GradientCheckOptions& opt);
// The same as one line: cases, failures, the first failure; `what` names the largest disagreement.
SelfCheckLine check_gradient(const Op& op, const GradientCheckOptions& opt);

}  // namespace dsv4::ops
