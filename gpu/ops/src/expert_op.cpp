// Registration of expert (spec 03 §3.2; spec 06 §6.7, §6.12): one routed MoE expert, SwiGLU with
// the clamp, y = W2 (w · silu(min(g, λ)) · clamp(u, −λ, λ)), g = W1 x, u = W3 x; its backward.
#include <algorithm>
#include <cmath>
#include <span>
#include <stdexcept>
#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/expert.hpp"
#include "dsv4/model/expert.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/expert_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// reals {swiglu_limit λ (≤ 0: no clamp)}; inputs x [tokens, d] (per row, bf16 values),
// route_weight [tokens, 1] (per row, fp32 values), w1 [de, d], w3 [de, d], w2 [d, de] (shared, bf16
// values) → y [tokens, d].
struct ExpertArgs {
  Mat x, w1, w3, w2;
  Vec route_weight;
  double limit;
  explicit ExpertArgs(const Call& c)
      : x(to_mat(c.inputs.at(0))),
        w1(to_mat(c.inputs.at(2))),
        w3(to_mat(c.inputs.at(3))),
        w2(to_mat(c.inputs.at(4))),
        route_weight(to_vec(c.inputs.at(1))),
        limit(c.reals.at(0)) {
    if (c.inputs.at(1).cols != 1) throw std::invalid_argument("expert: route_weight must be [tokens, 1]");
  }
};

Mat forward(const Precision& p, const ExpertArgs& a) {
  ModelConfig c = builtin_config("tiny");
  c.dim = a.x.cols();
  c.moe_inter_dim = a.w1.rows();
  c.swiglu_limit = a.limit;
  const ExpertWeights w{LinearWeight::bf16_from(a.w1), LinearWeight::bf16_from(a.w2), LinearWeight::bf16_from(a.w3)};
  return expert_forward(p, c, w, a.x, &a.route_weight);
}

Outputs reference(const Call& c) {
  const Mat y = forward(Precision(Mode::kOfficial), ExpertArgs(c));
  return {Array::floats("y", y.rows(), y.cols(), to_floats(y))};
}

#if DSV4_HAVE_CUDA
// gpu::expert (gpu/src/expert.cu: the linear kernel's dense code for W1, W3, W2 and the swiglu kernel
// between them). The weights as the reference holds them: bf16 (LinearWeight::bf16_from rounds).
Outputs device(const Call& c) {
  const ExpertArgs a(c);
  const std::int64_t d = a.x.cols(), de = a.w1.rows();
  if (a.w1.cols() != d || a.w3.rows() != de || a.w3.cols() != d || a.w2.rows() != d || a.w2.cols() != de) {
    throw std::invalid_argument("expert: the weights are not w1, w3 [de, d], w2 [d, de]");
  }
  std::vector<std::vector<float>> w(3);
  for (std::size_t i = 0; i < 3; ++i) {
    for (const float v : c.inputs.at(2 + i).f32) w[i].push_back(round_bf16(v));
  }
  gpu::ExpertWeightsView v;
  v.dim = d;
  v.inter = de;
  v.w1 = w[0].data();
  v.w3 = w[1].data();
  v.w2 = w[2].data();
  gpu::ExpertBatch r = gpu::expert(c.inputs.at(0).f32.data(), a.x.rows(), v, a.limit, c.inputs.at(1).f32.data());
  return {Array::floats("y", a.x.rows(), d, std::move(r.y))};
}
#endif

std::vector<float> uniforms(std::int64_t n, std::uint64_t seed, const char* stream) {
  const CounterRng rng(seed, stream_id(stream));
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(rng.uniform(i));
  return v;
}

// x, route_weight, w1, w3, w2 of one case (weights σ_w · N(0, 1)).
std::vector<Array> expert_inputs(std::int64_t tokens, std::int64_t d, std::int64_t de, double sigma_w, bool bf16,
                                 std::uint64_t seed) {
  const auto values = [&](std::int64_t n, double sigma, const char* stream) {
    return bf16 ? bf16_normals(n, sigma, seed, stream) : normals(n, sigma, seed, stream);
  };
  std::vector<Array> in = {Array::floats("x", tokens, d, values(tokens * d, 1.0, "expert.x")),
                           Array::floats("route_weight", tokens, 1, uniforms(tokens, seed, "expert.route_weight")),
                           Array::floats("w1", de, d, values(de * d, sigma_w, "expert.w1")),
                           Array::floats("w3", de, d, values(de * d, sigma_w, "expert.w3")),
                           Array::floats("w2", d, de, values(d * de, sigma_w, "expert.w2"))};
  for (std::size_t i = 2; i < in.size(); ++i) in[i].per_row = false;
  return in;
}

std::vector<Case> expert_cases(std::uint64_t seed) {
  struct Spec {
    std::int64_t tokens, d, de;
    double limit;
  };
  // λ = 10 (V4: rarely active at these scales), λ = 0.5 (most elements clamped), no clamp; the edge
  // values: x from edge_activations with magnitudes ≥ 2^16 scaled by 2^-120 (zero blocks, the amax
  // floor range, bf16 subnormals, ties of the quantisers' grids, outliers up to 2^16), edge_weight
  // weights (zero blocks and rows, subnormals, ±2^30 outliers: g and u far beyond λ), routing
  // weights with exact zeros and subnormals (every fourth token 0, every fourth 2^-140..2^-132);
  // d not a multiple of 32.
  const std::vector<Spec> specs = {
      {64, 64, 32, 10.0}, {5, 128, 16, 0.5}, {17, 16, 8, 0.0}, {23, 96, 20, 10.0}, {18, 40, 24, 0.5}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    const bool edges = k > 3;
    Case c;
    c.label = std::to_string(s.tokens) + " tokens, d " + std::to_string(s.d) + ", de " + std::to_string(s.de) +
              ", limit " + std::to_string(s.limit).substr(0, 4) + (edges ? ", edge values" : "");
    c.call.reals = {s.limit};
    const std::uint64_t cs = seed * 1000 + 600 + k;
    c.call.inputs = expert_inputs(s.tokens, s.d, s.de, 4.0 / std::sqrt(static_cast<double>(s.d)), true, cs);
    if (edges) {
      c.call.inputs[0].f32 = edge_activations_tamed(s.tokens, s.d, cs, 0x1p16, 0x1p-120);
      for (std::size_t t = 0; t < c.call.inputs[1].f32.size(); ++t) {
        if (t % 4 == 1) c.call.inputs[1].f32[t] = 0.0f;
        if (t % 4 == 2)
          c.call.inputs[1].f32[t] =
              static_cast<float>(std::ldexp(1.0 + 0.25 * (t % 3), -140 + static_cast<int>(t % 9)));
      }
      c.call.inputs[2].f32 = edge_weight(s.de, s.d, cs + 1, true, "ops.expert.w1");
      c.call.inputs[3].f32 = edge_weight(s.de, s.d, cs + 3, true, "ops.expert.w3");
      c.call.inputs[4].f32 = edge_weight(s.d, s.de, cs + 2, true, "ops.expert.w2");
    }
    return c;
  });
}

// The check point's clamp limit (ref/train clamp_limit_away_from_edges) from its g = W1 x, u = W3 x.
double limit_away_from_edges(const ExpertArgs& a, double margin) {
  const Precision exact(Mode::kExact);
  const Mat g = exact.matmul_nt(a.x, a.w1), u = exact.matmul_nt(a.x, a.w3);
  return clamp_limit_away_from_edges(std::span<const double>(g.data(), static_cast<std::size_t>(g.size())),
                                     std::span<const double>(u.data(), static_cast<std::size_t>(u.size())), margin);
}

// The backward (spec 06 §6.12, ref/train expert_backward; boundary convention kClosed): dx,
// d(route_weight), dw1, dw3, dw2. Check points keep every g and |u| ≥ 0.01 from λ (the clamp's
// kinks), with clamped elements on both sides present.
GradientForms expert_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1, 2, 3, 4};
  g.forward_exact = [](const Call& c) { return Doubles{flat(forward(Precision(Mode::kExact), ExpertArgs(c)))}; };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& in = c.inputs.at(0);
    return Mp50s{expert_exact(x.at(0), in.rows, in.cols, &x.at(1), x.at(2), x.at(3), x.at(4), c.inputs.at(2).rows,
                              c.reals.at(0))};
  };
  g.backward = [](const Call& c) {
    const ExpertArgs a(c);
    const ExpertGrads r = expert_backward(a.x, &a.route_weight, a.w1, a.w3, a.w2, a.limit, to_mat(c.inputs.at(5)));
    return Doubles{flat(r.dx), flat(r.droute_weight), flat(r.dw1), flat(r.dw3), flat(r.dw2)};
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      std::int64_t tokens, d, de;
      bool clamp;
    };
    const std::vector<Spec> specs = {{3, 8, 6, true}, {4, 6, 5, true}, {2, 8, 4, false}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      Case c;
      c.call.inputs = expert_inputs(s.tokens, s.d, s.de, 0.5, true, seed * 100 + k);  // bf16 weights (the op's)
      c.call.reals = {0.0};
      if (s.clamp) c.call.reals[0] = limit_away_from_edges(ExpertArgs(c.call), 0.01);
      c.call.inputs.push_back(upstream("dy", s.tokens, s.d, seed * 100 + k, "grad.expert.dy"));
      c.label = std::to_string(s.tokens) + " tokens, d " + std::to_string(s.d) + ", de " + std::to_string(s.de) +
                (s.clamp ? ", clamped (every g and |u| ≥ 0.01 from λ; elements on both sides)" : ", no clamp (smooth)");
      return c;
    });
  };
  return g;
}

}  // namespace

Op expert_op() {
  return registration(
      "expert", "spec 03 §3.2",
      "routed MoE expert: W2 bf16(w · silu(min(g, λ)) · clamp(u, ±λ)), g = W1 x, u = W3 x, bf16 linears", {},
      {"swiglu_limit"}, reference, DSV4_OPS_DEVICE(device), expert_cases, expert_gradient());
}

}  // namespace dsv4::ops::detail
