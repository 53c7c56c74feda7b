// Registration of the experts' clamped SwiGLU (spec 03 §3.2 steps 2–4, element-wise): h =
// bf16(fl(w · fl(silu(min(g, λ)) · clamp(u, −λ, λ)))), the input of the down projection.
#include <cmath>
#include <string>
#include <utility>

#include "dsv4/gpu/swiglu.hpp"
#include "dsv4/model/expert.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/swiglu_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {routed (1: the route_weight input multiplies h; 0: the shared expert, route_weight
// ignored)}, reals {limit = swiglu_limit}; inputs g, u [tokens, de] (bf16 values) and route_weight
// [tokens, 1] (fp32 values), all per row → h [tokens, de] (bf16 values).
Outputs reference(const Call& c) {
  const Array& g = c.inputs.at(0);
  const float* rw = c.ints.at(0) != 0 ? c.inputs.at(2).f32.data() : nullptr;
  return {Array::floats("h", g.rows, g.cols,
                        clamped_swiglu_rows(Precision(Mode::kOfficial), g.f32.data(), c.inputs.at(1).f32.data(), g.rows,
                                            g.cols, c.reals.at(0), rw))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const Array& g = c.inputs.at(0);
  const float* rw = c.ints.at(0) != 0 ? c.inputs.at(2).f32.data() : nullptr;
  gpu::SwigluBatch r = gpu::clamped_swiglu(g.f32.data(), c.inputs.at(1).f32.data(), g.rows, g.cols, c.reals.at(0), rw);
  return {Array::floats("h", g.rows, g.cols, std::move(r.h))};
}
#endif

// bf16 projections covering the clamp's edges (λ = limit): ±λ exactly and its bf16 neighbours,
// beyond it (up to 2^40), ±0, bf16 subnormals, large negative gates (silu → −0, exp overflows) and
// the ordinary range N(0, 3²).
std::vector<float> projections(std::int64_t count, double limit, std::uint64_t seed, const char* stream) {
  const CounterRng rng(seed, stream_id(stream));
  std::vector<float> v(static_cast<std::size_t>(count));
  const double lim = limit > 0.0 ? limit : 10.0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto w = rng.words(i);
    const double sign = (w[1] & 1u) != 0 ? -1.0 : 1.0;
    double x = 0.0;
    switch (w[0] % 10) {
      case 0:
        x = sign * lim;
        break;
      case 1: {  // the bf16 neighbours of ±λ
        const double ulp = std::ldexp(1.0, static_cast<int>(std::floor(std::log2(lim))) - 7);
        x = sign * (lim + ((w[2] & 1u) != 0 ? ulp : -ulp));
        break;
      }
      case 2:
        x = sign * std::ldexp(1.0 + static_cast<double>(w[2] % 128) / 128.0, 4 + static_cast<int>(w[3] % 37));
        break;
      case 3:
        x = sign * 0.0;
        break;
      case 4:
        x = sign * std::ldexp(static_cast<double>(1 + w[2] % 127), -133);
        break;
      case 5:
        x = -std::ldexp(1.0 + static_cast<double>(w[2] % 128) / 128.0, 6 + static_cast<int>(w[3] % 4));
        break;
      default:
        x = 3.0 * rng.normal(i);
        break;
    }
    v[i] = round_bf16(x);
  }
  return v;
}

// Routing weights in (0, 2.5) with some exact zeros and subnormal fp32 values.
std::vector<float> route_weights(std::int64_t tokens, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.swiglu.route_weight"));
  std::vector<float> w(static_cast<std::size_t>(tokens));
  for (std::size_t t = 0; t < w.size(); ++t) {
    const auto r = rng.words(t);
    w[t] = r[0] % 13 == 0 ? 0.0f
                          : (r[0] % 13 == 1 ? static_cast<float>(std::ldexp(1.0 + (r[1] % 64) / 64.0, -140))
                                            : static_cast<float>(2.5 * rng.uniform(t)));
  }
  return w;
}

std::vector<Case> swiglu_cases(std::uint64_t seed) {
  struct Spec {
    std::int64_t tokens, de;
    bool routed;
    double limit;
  };
  // Expert widths of V4-Flash (2048) and V4-Pro (3072), tiny-like (64); routed and shared experts;
  // λ = 10 (V4), another λ and no clamp (λ = 0).
  const std::vector<Spec> specs = {
      {64, 2048, true, 10.0}, {16, 3072, true, 10.0}, {33, 2048, false, 10.0},
      {300, 64, true, 10.0},  {17, 256, true, 7.0},   {9, 100, false, 0.0},
  };
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    const std::uint64_t base = seed * 1000 + 200 + 10 * k;
    Case c;
    c.label = std::to_string(s.tokens) + "x" + std::to_string(s.de) + (s.routed ? " routed" : " shared") + ", limit " +
              std::to_string(static_cast<int>(s.limit));
    c.call.ints = {s.routed ? 1 : 0};
    c.call.reals = {s.limit};
    c.call.inputs = {Array::floats("g", s.tokens, s.de, projections(s.tokens * s.de, s.limit, base, "ops.swiglu.g")),
                     Array::floats("u", s.tokens, s.de, projections(s.tokens * s.de, s.limit, base, "ops.swiglu.u")),
                     Array::floats("route_weight", s.tokens, 1, route_weights(s.tokens, base))};
    return c;
  });
}

// The backward (spec 06 §6.7, §6.12, ref/train swiglu_backward; boundary convention kClosed): dg,
// du, d(route_weight) (zero for the shared expert, whose route_weight input is ignored). Check
// points keep every g and |u| ≥ 0.01 from λ (the clamp's kinks), with clamped elements present.
GradientForms swiglu_gradient() {
  GradientForms g;
  g.outputs = {"h"};
  g.wrt = {0, 1, 2};
  g.forward_exact = [](const Call& c) {
    const Array& ga = c.inputs.at(0);
    const Precision exact(Mode::kExact);
    std::vector<double> h(ga.f32.size());
    for (std::size_t i = 0; i < h.size(); ++i) {
      const double w = c.inputs.at(2).f32.at(i / static_cast<std::size_t>(ga.cols));
      h[i] = clamped_swiglu(exact, ga.f32[i], c.inputs.at(1).f32[i], c.reals.at(0), c.ints.at(0) != 0 ? &w : nullptr);
    }
    return Doubles{std::move(h)};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const std::size_t cols = static_cast<std::size_t>(c.inputs.at(0).cols);
    std::vector<Mp50> h(x.at(0).size());
    for (std::size_t i = 0; i < h.size(); ++i) {
      h[i] =
          clamped_swiglu_exact(x.at(0)[i], x.at(1)[i], c.ints.at(0) != 0 ? &x.at(2)[i / cols] : nullptr, c.reals.at(0));
    }
    return Mp50s{std::move(h)};
  };
  g.backward = [](const Call& c) {
    const Array& ga = c.inputs.at(0);
    const std::size_t cols = static_cast<std::size_t>(ga.cols);
    const bool routed = c.ints.at(0) != 0;
    Doubles d = {std::vector<double>(ga.f32.size()), std::vector<double>(ga.f32.size()),
                 std::vector<double>(static_cast<std::size_t>(ga.rows), 0.0)};
    for (std::size_t i = 0; i < ga.f32.size(); ++i) {
      const double w = routed ? c.inputs.at(2).f32.at(i / cols) : 1.0;
      const SwigluElementGrads e =
          clamped_swiglu_backward(ga.f32[i], c.inputs.at(1).f32[i], w, c.reals.at(0), c.inputs.at(3).f32[i]);
      d[0][i] = e.dg;
      d[1][i] = e.du;
      if (routed) d[2][i / cols] += e.dw;
    }
    return d;
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      std::int64_t tokens, de;
      bool routed, clamp;
    };
    const std::vector<Spec> specs = {{3, 6, true, true}, {2, 5, false, true}, {2, 4, true, false}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      const std::uint64_t base = seed * 100 + k;
      const std::int64_t n = s.tokens * s.de;
      std::vector<float> gv = normals(n, 1.5, base, "grad.swiglu.g"), uv = normals(n, 1.5, base, "grad.swiglu.u");
      double limit = 0.0;
      if (s.clamp) {
        const std::vector<double> gd(gv.begin(), gv.end()), ud(uv.begin(), uv.end());
        limit = clamp_limit_away_from_edges(gd, ud, 0.01);
      }
      Case c;
      c.label = std::to_string(s.tokens) + "x" + std::to_string(s.de) + (s.routed ? " routed" : " shared") +
                (s.clamp ? ", clamped (every g and |u| ≥ 0.01 from λ; elements on both sides)" : ", no clamp (smooth)");
      c.call.ints = {s.routed ? 1 : 0};
      c.call.reals = {limit};
      c.call.inputs = {Array::floats("g", s.tokens, s.de, std::move(gv)),
                       Array::floats("u", s.tokens, s.de, std::move(uv)),
                       Array::floats("route_weight", s.tokens, 1, route_weights(s.tokens, base)),
                       upstream("dh", s.tokens, s.de, base, "grad.swiglu.dh")};
      return c;
    });
  };
  return g;
}

}  // namespace

Op swiglu_op() {
  return registration("swiglu", "spec 03 §3.2",
                      "expert SwiGLU with the clamp: bf16(w · silu(min(g, λ)) · clamp(u, −λ, λ)) per element",
                      {"routed"}, {"limit"}, reference, DSV4_OPS_DEVICE(device), swiglu_cases, swiglu_gradient());
}

}  // namespace dsv4::ops::detail
