// Registration of the MoE combine (spec 03 §3.3, the experts of §3.2) for given routing: per token
// the routed experts' outputs in ascending expert-id order, then the shared expert's, bf16 out;
// its backward (spec 06 §6.12): dx, the routing weights' gradient and every expert's weights' with
// the indices held fixed.
#include <algorithm>
#include <cmath>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/moe.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/moe_combine_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n_experts E}, reals {swiglu_limit λ (≤ 0: no clamp)}; inputs x [tokens, d] (per row, bf16
// values), weights [tokens, k] (per row, fp32 values), indices [tokens, k] (per row, expert ids as
// exact integers), w1 and w3 [E·de, d], w2 [E·d, de] (expert e: rows e·de.. resp. e·d..), shared_w1,
// shared_w3 [de, d], shared_w2 [d, de] (shared, bf16 values) → y [tokens, d].
struct CombineArgs {
  Mat x, weights;
  std::vector<std::int64_t> indices;
  std::int64_t experts, de;
  double limit;
  std::vector<ExpertMats> routed;
  ExpertMats shared;
  explicit CombineArgs(const Call& c)
      : x(to_mat(c.inputs.at(0))),
        weights(to_mat(c.inputs.at(1))),
        indices(checked_integers(c.inputs.at(2))),
        experts(c.ints.at(0)),
        de(c.inputs.at(6).rows),
        limit(c.reals.at(0)),
        shared{to_mat(c.inputs.at(6)), to_mat(c.inputs.at(7)), to_mat(c.inputs.at(8))} {
    const Mat w1 = to_mat(c.inputs.at(3)), w3 = to_mat(c.inputs.at(4)), w2 = to_mat(c.inputs.at(5));
    if (experts < 1 || w1.rows() != experts * de || w3.rows() != experts * de || w2.rows() != experts * x.cols()) {
      throw std::invalid_argument("moe_combine: the routed experts' weights are not [E·de, d], [E·de, d], [E·d, de]");
    }
    for (std::int64_t e = 0; e < experts; ++e) {
      routed.push_back({w1.middleRows(e * de, de), w3.middleRows(e * de, de), w2.middleRows(e * x.cols(), x.cols())});
    }
  }
  // The reference's Moe::combine (spec 03 §3.3) with these experts as bf16 weights; the gate it
  // holds (synthetic) is not called: the routing is given.
  Mat forward(const Precision& p) const {
    ModelConfig c = builtin_config("tiny");
    c.dim = x.cols();
    c.moe_inter_dim = de;
    c.n_routed_experts = experts;
    c.n_activated_experts = weights.cols();
    c.swiglu_limit = limit;
    const std::int64_t layer = c.n_hash_layers;  // a score-routed layer
    MoeWeights w;
    w.gate = GateWeights::synthetic(c, layer, 1);
    const auto bf16 = [](const ExpertMats& m) {
      return ExpertWeights{LinearWeight::bf16_from(m.w1), LinearWeight::bf16_from(m.w2), LinearWeight::bf16_from(m.w3)};
    };
    for (const ExpertMats& m : routed) w.experts.push_back(bf16(m));
    w.shared = bf16(shared);
    GateOutput routing;
    routing.weights = weights;
    routing.indices = indices;
    return Moe(p, c, layer, std::move(w)).combine(x, routing);
  }
};

Outputs reference(const Call& c) {
  const Mat y = CombineArgs(c).forward(Precision(Mode::kOfficial));
  return {Array::floats("y", y.rows(), y.cols(), to_floats(y))};
}

struct Spec {
  std::int64_t tokens, d, de, experts, k;
  double limit;
};

// k distinct experts per token (a partial shuffle), routing weights uniform in (0.05, 1.05).
std::vector<float> routing_indices(const Spec& s, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.moe_combine.indices"));
  std::vector<float> out(static_cast<std::size_t>(s.tokens * s.k));
  std::vector<std::int64_t> ids(static_cast<std::size_t>(s.experts));
  for (std::int64_t t = 0; t < s.tokens; ++t) {
    for (std::int64_t e = 0; e < s.experts; ++e) ids[static_cast<std::size_t>(e)] = e;
    for (std::int64_t j = 0; j < s.k; ++j) {
      const auto w = rng.words(static_cast<std::uint64_t>(t * s.k + j));
      const auto pick = static_cast<std::int64_t>(j + w[0] % static_cast<std::uint64_t>(s.experts - j));
      std::swap(ids[static_cast<std::size_t>(j)], ids[static_cast<std::size_t>(pick)]);
      out[static_cast<std::size_t>(t * s.k + j)] = static_cast<float>(ids[static_cast<std::size_t>(j)]);
    }
  }
  return out;
}

Case make_case(const Spec& s, std::uint64_t seed, double sigma_w) {
  const auto values = [&](std::int64_t n, double sigma, const char* stream) {
    return bf16_normals(n, sigma, seed, stream);
  };
  const CounterRng rng(seed, stream_id("ops.moe_combine.weights"));
  std::vector<float> weights(static_cast<std::size_t>(s.tokens * s.k));
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(0.05 + rng.uniform(i));
  Case c;
  c.label = std::to_string(s.tokens) + " tokens, d " + std::to_string(s.d) + ", de " + std::to_string(s.de) + ", " +
            std::to_string(s.experts) + " experts, top " + std::to_string(s.k);
  c.call.ints = {s.experts};
  c.call.reals = {s.limit};
  c.call.inputs = {
      Array::floats("x", s.tokens, s.d, values(s.tokens * s.d, 1.0, "ops.moe_combine.x")),
      Array::floats("weights", s.tokens, s.k, std::move(weights)),
      Array::floats("indices", s.tokens, s.k, routing_indices(s, seed)),
      Array::floats("w1", s.experts * s.de, s.d, values(s.experts * s.de * s.d, sigma_w, "ops.moe_combine.w1")),
      Array::floats("w3", s.experts * s.de, s.d, values(s.experts * s.de * s.d, sigma_w, "ops.moe_combine.w3")),
      Array::floats("w2", s.experts * s.d, s.de, values(s.experts * s.d * s.de, sigma_w, "ops.moe_combine.w2")),
      Array::floats("shared_w1", s.de, s.d, values(s.de * s.d, sigma_w, "ops.moe_combine.shared_w1")),
      Array::floats("shared_w3", s.de, s.d, values(s.de * s.d, sigma_w, "ops.moe_combine.shared_w3")),
      Array::floats("shared_w2", s.d, s.de, values(s.d * s.de, sigma_w, "ops.moe_combine.shared_w2"))};
  for (std::size_t i = 3; i < c.call.inputs.size(); ++i) c.call.inputs[i].per_row = false;
  return c;
}

std::vector<Case> moe_combine_cases(std::uint64_t seed) {
  // λ = 10 (V4), λ = 0.5 (most elements clamped), no clamp; every expert chosen (k = E); some
  // experts with no token (8 tokens × top 2 of 16).
  const std::vector<Spec> specs = {{32, 64, 32, 8, 2, 10.0}, {5, 128, 16, 4, 4, 0.5}, {8, 32, 8, 16, 2, 0.0}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    Case c = make_case(s, seed * 1000 + 950 + k, 4.0 / std::sqrt(static_cast<double>(s.d)));
    c.label += ", limit " + std::to_string(s.limit).substr(0, 4);
    return c;
  });
}

// The check point's clamp limit: every expert's g = W1 x and u = W3 x at the tokens routed to it,
// and the shared expert's at every token, ≥ margin from λ (clamp_limit_away_from_edges).
double limit_away_from_edges(const CombineArgs& a, double margin) {
  const Precision exact(Mode::kExact);
  std::vector<double> g, u;
  const auto add = [&](const Mat& xs, const ExpertMats& w) {
    const Mat ge = exact.matmul_nt(xs, w.w1), ue = exact.matmul_nt(xs, w.w3);
    g.insert(g.end(), ge.data(), ge.data() + ge.size());
    u.insert(u.end(), ue.data(), ue.data() + ue.size());
  };
  const std::int64_t k = a.weights.cols();
  for (Eigen::Index t = 0; t < a.x.rows(); ++t) {
    for (std::int64_t j = 0; j < k; ++j)
      add(a.x.row(t), a.routed[static_cast<std::size_t>(a.indices[static_cast<std::size_t>(t * k + j)])]);
  }
  add(a.x, a.shared);
  return clamp_limit_away_from_edges(g, u, margin);
}

// The backward (spec 06 §6.12, ref/train moe_combine_backward; clamp boundary kClosed): dx,
// d(weights), dw1, dw3, dw2 of the routed experts and the shared expert's; the indices are held
// fixed. Check points keep every g and |u| ≥ 0.01 from λ (the clamp's kinks), with clamped elements
// on both sides present, or have no clamp.
GradientForms moe_combine_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1, 3, 4, 5, 6, 7, 8};
  g.forward_exact = [](const Call& c) { return Doubles{flat(CombineArgs(c).forward(Precision(Mode::kExact)))}; };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const CombineArgs a(c);
    return Mp50s{moe_combine_exact(x.at(0), a.x.rows(), a.x.cols(), x.at(1), a.indices, a.weights.cols(), a.experts,
                                   a.de, x.at(3), x.at(4), x.at(5), x.at(6), x.at(7), x.at(8), a.limit)};
  };
  g.backward = [](const Call& c) {
    const CombineArgs a(c);
    const MoeCombineGrads r =
        moe_combine_backward(a.x, a.weights, a.indices, a.routed, a.shared, a.limit, to_mat(c.inputs.at(9)));
    return Doubles{flat(r.dx),  flat(r.dweights),   flat(r.dw1),        flat(r.dw3),
                   flat(r.dw2), flat(r.dshared.w1), flat(r.dshared.w3), flat(r.dshared.w2)};
  };
  g.cases = [](std::uint64_t seed) {
    const std::vector<std::pair<Spec, bool>> specs = {
        {{3, 4, 3, 3, 2, 0.0}, true}, {{3, 3, 2, 3, 3, 0.0}, true}, {{3, 4, 3, 3, 2, 0.0}, false}};
    return cases_of(specs, [&](const std::pair<Spec, bool>& spec, std::uint64_t k) {
      const auto& [s, clamp] = spec;
      Case c = make_case(s, seed * 100 + k, 0.5);  // bf16 weights (the op's)
      if (clamp) c.call.reals[0] = limit_away_from_edges(CombineArgs(c.call), 0.01);
      c.label += clamp ? ", clamped (every g and |u| ≥ 0.01 from λ; elements on both sides)" : ", no clamp (smooth)";
      c.label += "; indices fixed (no gradient through the choice)";
      c.call.inputs.push_back(upstream("dy", s.tokens, s.d, seed * 100 + k, "grad.moe_combine.dy"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op moe_combine_op() {
  return registration(
      "moe_combine", "spec 03 §3.3",
      "MoE combine for given routing: routed experts in ascending id order, then the shared expert, bf16",
      {"n_experts"}, {"swiglu_limit"}, reference, Fn(), moe_combine_cases, moe_combine_gradient());
}

}  // namespace dsv4::ops::detail
