// The gradient check of the op registry (dsv4/ops/gradient_check.hpp; spec 06 §6.12).
#include "dsv4/ops/gradient_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include "dsv4/ops/gradient.hpp"

namespace dsv4::ops {
namespace {

std::string num(double v) {
  char b[40];
  std::snprintf(b, sizeof b, "%.3e", v);
  return b;
}

std::string num17(double v) {
  char b[40];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

std::string coordinate(const Array& a, std::size_t j) {
  const auto cols = static_cast<std::size_t>(std::max<std::int64_t>(a.cols, 1));
  return "[" + std::to_string(j / cols) + ", " + std::to_string(j % cols) + "]";
}

void require(bool ok, const std::string& what) {
  if (!ok) throw std::logic_error(what);
}

// ‖a − b‖∞ / ‖b‖∞ (0 when both are 0; +inf when only b is 0, or at the first NaN or infinity of
// either) and the index of the largest |a − b| (or of that NaN/infinity).
struct Disagreement {
  double rel = 0;
  std::size_t at = 0;
};
template <class A>
Disagreement disagreement(const std::vector<A>& a, const std::vector<Mp50>& b) {
  Mp50 diff = 0, norm = 0;
  Disagreement d;
  for (std::size_t j = 0; j < b.size(); ++j) {
    if (!std::isfinite(static_cast<double>(a[j])) || !isfinite(b[j])) return {INFINITY, j};
    const Mp50 e = abs(Mp50(a[j]) - b[j]);
    if (e > diff) {
      diff = e;
      d.at = j;
    }
    norm = std::max(norm, Mp50(abs(b[j])));
  }
  if (diff == 0) return d;
  d.rel = norm == 0 ? INFINITY : static_cast<double>(diff / norm);
  return d;
}

}  // namespace

std::string GradientCaseCheck::text() const {
  if (!error.empty()) return label + ": " + error;
  return label + ": " + std::to_string(differences) + " differences, backward vs fd " + num(max_rel) +
         (worst.empty() ? "" : " (" + worst + ")") + ", forward mp50 vs exact " + num(forward_rel);
}

GradientCaseCheck check_gradient_case(const Op& op, const Case& c, const GradientCheckOptions& opt) {
  GradientCaseCheck r;
  r.label = c.label;
  try {
    require(op.gradient != nullptr && static_cast<bool>(op.backward_reference), op.stem + " has no backward");
    const GradientForms& g = *op.gradient;
    const std::size_t n_out = g.outputs.size();
    require(c.call.inputs.size() > n_out, "the case has no forward inputs");
    const std::size_t n_in = c.call.inputs.size() - n_out;
    const Call fwd = forward_call(c.call, n_in);

    // The reference's exact forward and the Mp50 forward at the check point.
    const Doubles y_exact = g.forward_exact(fwd);
    Mp50s x(n_in);
    for (std::size_t i = 0; i < n_in; ++i) {
      for (const float v : fwd.inputs[i].f32) x[i].emplace_back(static_cast<double>(v));
    }
    const Mp50s y_mp = g.forward_mp50(fwd, x);
    require(y_exact.size() == n_out && y_mp.size() == n_out, "the forwards do not return one array per output");
    std::vector<std::vector<Mp50>> dy(n_out);
    for (std::size_t o = 0; o < n_out; ++o) {
      const Array& d = c.call.inputs[n_in + o];
      require(d.name == "d" + g.outputs[o],
              "upstream gradient " + std::to_string(o) + " is named " + d.name + ", expected d" + g.outputs[o]);
      require(y_exact[o].size() == d.f32.size() && y_mp[o].size() == d.f32.size(),
              "output " + g.outputs[o] + " and its upstream gradient differ in size");
      for (const float v : d.f32) dy[o].emplace_back(static_cast<double>(v));
      r.forward_rel = std::max(r.forward_rel, disagreement(y_exact[o], y_mp[o]).rel);
    }

    // The backward, in both forms.
    const Doubles grads = g.backward(c.call);
    require(grads.size() == g.wrt.size(), "the backward does not return one gradient per differentiable input");
    for (std::size_t i = 0; i < g.wrt.size(); ++i) {
      const Array& in = fwd.inputs.at(g.wrt[i]);
      require(grads[i].size() == in.f32.size(), "gradient of " + in.name + " has the wrong size");
    }
    const Outputs flat_grads = op.backward_reference(c.call);
    require(flat_grads.size() == g.wrt.size(),
            "the flat backward does not return one gradient per differentiable input");
    for (std::size_t i = 0; i < g.wrt.size(); ++i) {
      const Array& in = fwd.inputs.at(g.wrt[i]);
      require(flat_grads[i].name == "d" + in.name && flat_grads[i].rows == in.rows && flat_grads[i].cols == in.cols,
              "flat gradient " + flat_grads[i].name + " does not have the name and shape of d" + in.name);
    }

    // L(x) = Σ dy ⊙ y in Mp50; central differences over every element of every differentiable input.
    const auto loss = [&] {
      const Mp50s y = g.forward_mp50(fwd, x);
      Mp50 l = 0;
      for (std::size_t o = 0; o < n_out; ++o) {
        for (std::size_t j = 0; j < y[o].size(); ++j) l += dy[o][j] * y[o][j];
      }
      return l;
    };
    const Mp50 rel_step(opt.step), floor(opt.step_floor);
    for (std::size_t i = 0; i < g.wrt.size(); ++i) {
      std::vector<Mp50>& xi = x[g.wrt[i]];
      std::vector<Mp50> fd(xi.size());
      for (std::size_t j = 0; j < xi.size(); ++j) {
        const Mp50 x0 = xi[j];
        const Mp50 h = rel_step * std::max(Mp50(abs(x0)), floor);
        xi[j] = x0 + h;
        const Mp50 up = xi[j];
        const Mp50 l_up = loss();
        xi[j] = x0 - h;
        const Mp50 down = xi[j];
        const Mp50 l_down = loss();
        xi[j] = x0;
        fd[j] = (l_up - l_down) / (up - down);
        ++r.differences;
      }
      const Disagreement d = disagreement(grads[i], fd);
      if (d.rel > r.max_rel || (i == 0 && r.worst.empty())) {
        r.max_rel = std::max(r.max_rel, d.rel);
        r.worst = "d" + fwd.inputs[g.wrt[i]].name + coordinate(fwd.inputs[g.wrt[i]], d.at) + " backward " +
                  num17(grads[i].at(d.at)) + " fd " + num17(static_cast<double>(fd.at(d.at)));
      }
    }
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

std::vector<GradientCaseCheck> check_gradient_cases(const Op& op, const GradientCheckOptions& opt) {
  if (op.gradient == nullptr || !op.gradient->cases) throw std::invalid_argument(op.stem + " has no backward");
  std::vector<GradientCaseCheck> out;
  for (const Case& c : op.gradient->cases(opt.seed)) out.push_back(check_gradient_case(op, c, opt));
  return out;
}

SelfCheckLine check_gradient(const Op& op, const GradientCheckOptions& opt) {
  SelfCheckLine l;
  double worst = 0, worst_forward = 0;
  for (const GradientCaseCheck& c : check_gradient_cases(op, opt)) {
    ++l.cases;
    worst = std::max(worst, c.max_rel);
    worst_forward = std::max(worst_forward, c.forward_rel);
    if (!c.passed(opt)) {
      ++l.failures;
      if (l.first_failure.empty()) l.first_failure = c.text();
    }
  }
  l.what = op.stem + " backward vs 50-digit central differences: max rel " + num(worst) + " (≤ " + num(opt.tolerance) +
           "), forward mp50 vs exact " + num(worst_forward) + " (≤ " + num(opt.forward_tolerance) + ")";
  return l;
}

}  // namespace dsv4::ops
