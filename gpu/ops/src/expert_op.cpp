// Registration of expert (spec 03 §3.2; spec 06 §6.7, §6.12): one routed MoE expert, SwiGLU with
// the clamp, y = W2 (w · silu(min(g, λ)) · clamp(u, −λ, λ)), g = W1 x, u = W3 x; its backward.
#include <algorithm>
#include <cmath>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/expert.hpp"
#include "dsv4/model/expert.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/expert_backward.hpp"
#include "expert_weights.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {weight_kind: the three weights' kind, 0 bf16, 2 fp8, 3 fp4 (dsv4::WeightKind; V4's routed
//       experts are fp4, or fp8 after `--expert-dtype fp8`),
//       act_scale_fp32: the fp8 / fp4 linears' activation scales (0 ue8m0 — config scale_fmt "ue8m0";
//       1 fp32 — scale_fmt "")};
// reals {swiglu_limit λ (≤ 0: no clamp)}; inputs x [tokens, d] (per row, bf16 values), route_weight
// [tokens, 1] (per row, fp32 values), then w1 [de, d], w3 [de, d], w2 [d, de] each in its storage
// form (expert_weights.hpp: bf16 values, or codes and "<name>_scale") → y [tokens, d].
struct ExpertCall {
  const Array& x;
  Vec route_weight;
  double limit;
  ScaleFormat fmt;
  std::int64_t d, de;
  WeightInput w1, w3, w2;
  explicit ExpertCall(const Call& c)
      : x(c.inputs.at(0)),
        route_weight(to_vec(c.inputs.at(1))),
        limit(c.reals.at(0)),
        fmt(c.ints.at(1) != 0 ? ScaleFormat::kFP32 : ScaleFormat::kUE8M0),
        d(x.cols),
        de(c.inputs.at(2).rows) {
    if (c.inputs.at(1).cols != 1 || c.inputs.at(1).rows != x.rows) {
      throw std::invalid_argument("expert: route_weight must be [tokens, 1]");
    }
    const WeightKind kind = expert_weight_kind(c.ints.at(0), "expert");
    std::size_t at = 2;
    w1 = read_weight(c, at, kind, 1, de, d, "expert");
    w3 = read_weight(c, at, kind, 1, de, d, "expert");
    w2 = read_weight(c, at, kind, 1, d, de, "expert");
    if (at != c.inputs.size()) throw std::invalid_argument("expert: wrong number of inputs");
  }
  // The reference's expert_forward (spec 03 §3.2) with these weights.
  Mat forward(const Precision& p) const {
    return expert_forward(p, expert_config(d, de, limit, fmt), ExpertWeights{w1.block(0), w2.block(0), w3.block(0)},
                          to_mat(x), &route_weight);
  }
};

// The bf16 expert's values in double (the backward's and the gradient check's forms: bf16 weights).
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
    if (c.ints.at(0) != 0) throw std::invalid_argument("expert: the backward takes bf16 weights");
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
  const Mat y = ExpertCall(c).forward(Precision(Mode::kOfficial));
  return {Array::floats("y", y.rows(), y.cols(), to_floats(y))};
}

#if DSV4_HAVE_CUDA
// gpu::expert (gpu/src/expert.cu: the linear kernel by weight kind for W1, W3, W2 and the swiglu
// kernel between them). The weights as the reference holds them: bf16 values rounded
// (LinearWeight::bf16_from), fp8 / fp4 codes and scales as given.
Outputs device(const Call& c) {
  const ExpertCall a(c);
  std::vector<float> b1, b3, b2;
  gpu::ExpertWeightsView v;
  v.dim = a.d;
  v.inter = a.de;
  v.w1 = a.w1.view(b1);
  v.w3 = a.w3.view(b3);
  v.w2 = a.w2.view(b2);
  v.act_fmt = a.fmt;
  gpu::ExpertBatch r = gpu::expert(a.x.f32.data(), a.x.rows, v, a.limit, c.inputs.at(1).f32.data());
  return {Array::floats("y", a.x.rows, a.d, std::move(r.y))};
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
    WeightKind kind = WeightKind::kBF16;
    bool fp32_scales = false;
    bool edges = false;
  };
  using W = WeightKind;
  // λ = 10 (V4: rarely active at these scales), λ = 0.5 (most elements clamped), no clamp; the edge
  // values: x from edge_activations with magnitudes ≥ 2^16 scaled by 2^-120 (zero blocks, the amax
  // floor range, bf16 subnormals, ties of the quantisers' grids, outliers up to 2^16), edge_weight
  // weights (zero blocks and rows, subnormals, ±2^30 outliers: g and u far beyond λ), routing
  // weights with exact zeros and subnormals (every fourth token 0, every fourth 2^-140..2^-132);
  // d not a multiple of 32. Every expert weight kind: bf16, fp8 (128×128 tiles: the shared expert,
  // routed experts after `--expert-dtype fp8`) and fp4 (1×32: V4's routed experts), with both
  // activation scale formats; the quantised kinds' normals are the model's synthetic weights, their
  // edges edge_fp8_codes / edge_fp4_codes (zero blocks, subnormal codes, the top binade, ±6) with
  // scales 2^-127 (σ and the scaled partials subnormal or zero), tiny, 2^-10..2^-5 and 2^4.
  const std::vector<Spec> specs = {{64, 64, 32, 10.0},
                                   {5, 128, 16, 0.5},
                                   {17, 16, 8, 0.0},
                                   {23, 96, 20, 10.0, W::kBF16, false, true},
                                   {18, 40, 24, 0.5, W::kBF16, false, true},
                                   {24, 128, 128, 10.0, W::kFP4},
                                   {9, 256, 128, 0.5, W::kFP8, true},
                                   {16, 128, 256, 0.0, W::kFP4, true, true},
                                   {20, 256, 128, 10.0, W::kFP8, false, true},
                                   {12, 128, 128, 0.5, W::kFP4, false, true},
                                   {14, 256, 256, 0.0, W::kFP8, true, true}};
  static const char* const kKindText[] = {"bf16", "fp32", "fp8", "fp4"};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    const bool quantised = s.kind != W::kBF16;
    Case c;
    c.label = std::to_string(s.tokens) + " tokens, d " + std::to_string(s.d) + ", de " + std::to_string(s.de) +
              ", limit " + std::to_string(s.limit).substr(0, 4) + (s.edges ? ", edge values" : "") + ", " +
              kKindText[static_cast<int>(s.kind)] + " weights" +
              (quantised ? (s.fp32_scales ? ", fp32 act scales" : ", ue8m0 act scales") : "");
    c.call.ints = {static_cast<std::int64_t>(s.kind), s.fp32_scales ? 1 : 0};
    c.call.reals = {s.limit};
    const std::uint64_t cs = seed * 1000 + 600 + k;
    const double sigma = 4.0 / std::sqrt(static_cast<double>(s.d));
    c.call.inputs = expert_inputs(s.tokens, s.d, s.de, sigma, true, cs);
    if (s.edges) {
      c.call.inputs[0].f32 = edge_activations_tamed(s.tokens, s.d, cs, 0x1p16, 0x1p-120);
      for (std::size_t t = 0; t < c.call.inputs[1].f32.size(); ++t) {
        if (t % 4 == 1) c.call.inputs[1].f32[t] = 0.0f;
        if (t % 4 == 2)
          c.call.inputs[1].f32[t] =
              static_cast<float>(std::ldexp(1.0 + 0.25 * (t % 3), -140 + static_cast<int>(t % 9)));
      }
      if (!quantised) {
        c.call.inputs[2].f32 = edge_weight(s.de, s.d, cs + 1, true, "ops.expert.w1");
        c.call.inputs[3].f32 = edge_weight(s.de, s.d, cs + 3, true, "ops.expert.w3");
        c.call.inputs[4].f32 = edge_weight(s.d, s.de, cs + 2, true, "ops.expert.w2");
      }
    }
    if (quantised) {
      const WeightValues v = s.edges ? WeightValues::kEdges : WeightValues::kNormals;
      c.call.inputs.resize(2);
      for (const auto& [name, n, kk, off] :
           {std::tuple{"w1", s.de, s.d, 1}, std::tuple{"w3", s.de, s.d, 3}, std::tuple{"w2", s.d, s.de, 2}}) {
        for (Array& a : quantised_weight_arrays(s.kind, name, 1, n, kk, sigma, v, cs + static_cast<std::uint64_t>(off)))
          c.call.inputs.push_back(std::move(a));
      }
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
      c.call.inputs = expert_inputs(s.tokens, s.d, s.de, 0.5, true, seed * 100 + k);
      c.call.ints = {0, 0};  // bf16 weights (the backward's)
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
      "routed MoE expert: W2 bf16(w · silu(min(g, λ)) · clamp(u, ±λ)), g = W1 x, u = W3 x, linears of bf16, fp8 "
      "(128×128) or fp4 (1×32) weights",
      {"weight_kind", "act_scale_fp32"}, {"swiglu_limit"}, reference, DSV4_OPS_DEVICE(device), expert_cases,
      expert_gradient());
}

}  // namespace dsv4::ops::detail
