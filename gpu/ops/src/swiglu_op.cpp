// Registration of the experts' clamped SwiGLU (spec 03 §3.2 steps 2–4, element-wise): h =
// bf16(fl(w · fl(silu(min(g, λ)) · clamp(u, −λ, λ)))), the input of the down projection.
#include <cmath>
#include <string>
#include <utility>

#include "dsv4/model/expert.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "op_list.hpp"
#if DSV4_HAVE_CUDA
#include "dsv4/gpu/swiglu.hpp"
#endif

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
  std::vector<Case> cases;
  std::uint64_t k = 0;
  // Expert widths of V4-Flash (2048) and V4-Pro (3072), tiny-like (64); routed and shared experts;
  // λ = 10 (V4), another λ and no clamp (λ = 0).
  for (const Spec s : std::vector<Spec>{{64, 2048, true, 10.0},
                                        {16, 3072, true, 10.0},
                                        {33, 2048, false, 10.0},
                                        {300, 64, true, 10.0},
                                        {17, 256, true, 7.0},
                                        {9, 100, false, 0.0}}) {
    ++k;
    const std::uint64_t base = seed * 1000 + 200 + 10 * k;
    Case c;
    c.label = std::to_string(s.tokens) + "x" + std::to_string(s.de) + (s.routed ? " routed" : " shared") + ", limit " +
              std::to_string(static_cast<int>(s.limit));
    c.call.ints = {s.routed ? 1 : 0};
    c.call.reals = {s.limit};
    c.call.inputs = {Array::floats("g", s.tokens, s.de, projections(s.tokens * s.de, s.limit, base, "ops.swiglu.g")),
                     Array::floats("u", s.tokens, s.de, projections(s.tokens * s.de, s.limit, base, "ops.swiglu.u")),
                     Array::floats("route_weight", s.tokens, 1, route_weights(s.tokens, base))};
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace

Op swiglu_op() {
  Op op;
  op.stem = "swiglu";
  op.spec = "spec 03 §3.2";
  op.summary = "expert SwiGLU with the clamp: bf16(w · silu(min(g, λ)) · clamp(u, −λ, λ)) per element";
  op.int_params = {"routed"};
  op.real_params = {"limit"};
  op.reference = reference;
#if DSV4_HAVE_CUDA
  op.device = device;
#endif
  op.cases = swiglu_cases;
  return op;
}

}  // namespace dsv4::ops::detail
