// One MoE expert: SwiGLU with clamping (spec 03 §3.2; official code class `Expert`).
#include "dsv4/model/expert.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "dsv4/model/expert_config.hpp"

namespace dsv4 {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("expert: " + field + ": " + why);
}
std::string str(std::int64_t v) { return std::to_string(v); }

void check_weight(const char* field, const LinearWeight& w, std::int64_t n, std::int64_t k) {
  if (w.out_features() != n || w.in_features() != k) {
    bad(field, "shape [" + str(w.out_features()) + ", " + str(w.in_features()) + "], expected [" + str(n) + ", " +
                   str(k) + "]");
  }
  if (w.kind == WeightKind::kFP32) bad(field, "an expert weight is bf16, fp8 or fp4, not fp32");
}

}  // namespace

// spec 03 §3.2 steps 2–4.
double clamped_swiglu(const Precision& p, double g, double u, double limit, const double* route_weight) {
  if (limit > 0.0) {
    u = std::min(std::max(u, -limit), limit);
    g = std::min(g, limit);
    // (Deviation kClampGateBothSides, bug catalogue only: the gate also clamped below.)
    if (p.deviates(Deviation::kClampGateBothSides)) g = std::max(g, -limit);
  }
  double h = p.mul(p.silu(g), u);
  if (route_weight != nullptr) h = p.mul(*route_weight, h);
  return h;
}

std::vector<float> clamped_swiglu_rows(const Precision& p, const float* g, const float* u, std::int64_t tokens,
                                       std::int64_t de, double limit, const float* route_weight) {
  if (tokens < 0 || de < 0) throw std::invalid_argument("expert: tokens and de must be non-negative");
  const double lim = p.fp32(limit);
  std::vector<float> h(static_cast<std::size_t>(tokens * de));
  for (std::int64_t t = 0; t < tokens; ++t) {
    const double w = route_weight != nullptr ? route_weight[t] : 0.0;
    for (std::int64_t i = 0; i < de; ++i) {
      const std::size_t at = static_cast<std::size_t>(t * de + i);
      h[at] = static_cast<float>(p.bf16(clamped_swiglu(p, g[at], u[at], lim, route_weight != nullptr ? &w : nullptr)));
    }
  }
  return h;
}

// spec 03 §3.2.
Mat expert_forward(const Precision& p, const ModelConfig& c, const ExpertWeights& w, const Mat& x,
                   const Vec* route_weight) {
  const std::int64_t d = c.dim, de = c.moe_inter_dim;
  check_weight("w1", w.w1, de, d);
  check_weight("w3", w.w3, de, d);
  check_weight("w2", w.w2, d, de);
  if (x.cols() != d) bad("x", "has " + str(x.cols()) + " columns, expected dim = " + str(d));
  if (route_weight != nullptr && route_weight->size() != x.rows()) {
    bad("route_weight", "has " + str(route_weight->size()) + " entries for " + str(x.rows()) + " rows of x");
  }
  const ScaleFormat fmt = linear_scale_format(c);
  // step 1: g = W1 x, u = W3 x (bf16 outputs in official mode, widened: no-op on the values).
  const Mat g = linear(p, x, w.w1, fmt);
  const Mat u = linear(p, x, w.w3, fmt);
  // steps 2–4, then the bf16 cast of the down projection's input.
  const double limit = p.fp32(c.swiglu_limit);
  Mat h(x.rows(), de);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const double* rw = route_weight != nullptr ? &(*route_weight)(t) : nullptr;
    for (std::int64_t i = 0; i < de; ++i) h(t, i) = p.bf16(clamped_swiglu(p, g(t, i), u(t, i), limit, rw));
  }
  // step 5: y = W2 bf16(h).
  return linear(p, h, w.w2, fmt);
}

ModelConfig expert_config(std::int64_t d, std::int64_t de, double swiglu_limit, ScaleFormat act_scales) {
  ModelConfig c = builtin_config("tiny");
  c.dim = d;
  c.moe_inter_dim = de;
  c.swiglu_limit = swiglu_limit;
  c.scale_fmt = act_scales == ScaleFormat::kUE8M0 ? "ue8m0" : "";
  return c;
}

}  // namespace dsv4
