// Properties of the MoE gate (spec 03 §3.1; ref/model/gate.hpp) on the tiny config's synthetic
// gates: routing weights sum to route_scale and come from the unbiased scores, the chosen experts
// are the top-k of the biased scores, hash routing ignores the hidden state and score routing the
// token id.
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/gate.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {
namespace {

double unit_roundoff(Mode mode) { return mode == Mode::kOfficial ? 0x1p-24 : 0x1p-53; }

struct GateCase {
  ModelConfig config;
  std::int64_t layer = 0;
  Mode mode = Mode::kExact;
  Mat x;
  std::vector<std::int64_t> ids;
};

// tiny with route_scale ∈ {1, 1.5, 2.5, 0.7}, a hash (0–2) or score-routed (3–5) layer, T ∈ [1, 6]
// tokens of the ffn_norm output N(0, 1)·2^e per row (e ∈ [−6, 6]; bf16 values in official mode),
// token ids uniform in the vocabulary.
GateCase gen_case() {
  GateCase g;
  g.config = builtin_config("tiny");
  g.config.route_scale = *rc::gen::element(1.0, 1.5, 2.5, 0.7);
  g.layer = *rc::gen::inRange<std::int64_t>(0, g.config.n_layers);
  g.mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const std::int64_t tokens = *rc::gen::inRange<std::int64_t>(1, 7);
  const CounterRng rng(*rc::gen::arbitrary<std::uint64_t>(), stream_id("gate_props.x"));
  g.x.resize(tokens, g.config.dim);
  for (std::int64_t t = 0; t < tokens; ++t) {
    const int e = *rc::gen::inRange(-6, 7);
    for (std::int64_t i = 0; i < g.config.dim; ++i) {
      const double v = std::ldexp(rng.normal(static_cast<std::uint64_t>(t * g.config.dim + i)), e);
      g.x(t, i) = g.mode == Mode::kOfficial ? static_cast<double>(round_bf16(v)) : v;
    }
  }
  for (std::int64_t t = 0; t < tokens; ++t) g.ids.push_back(*rc::gen::inRange<std::int64_t>(0, g.config.vocab_size));
  return g;
}

Gate make_gate(const GateCase& g, std::uint64_t seed = 1) {
  return Gate(Precision(g.mode), g.config, g.layer, GateWeights::synthetic(g.config, g.layer, seed));
}

// Σ_j w_j = route_scale (sqrtsoftplus: the chosen scores normalised, then × route_scale).
// w_j = fl(fl(s_j / Ŝ)·ρ̂) with Ŝ = Σ s_j (1 + θ_{k−1}) (k − 1 additions) and ρ̂ = fl32(ρ) = ρ(1 + δ)
// in official mode: Σ w_j = ρ(1 + δ)(1 + θ_2)/(1 + θ_{k−1}), so |Σ w_j − ρ| ≤ ρ·1.01·(k + 2)u.
// Σ w_j is evaluated exactly (exact_sum).
void weights_sum_property() {
  const GateCase g = gen_case();
  const GateOutput out = make_gate(g).forward(g.x, g.ids);
  const std::int64_t k = g.config.n_activated_experts;
  const double bound = g.config.route_scale * 1.01 * static_cast<double>(k + 2) * unit_roundoff(g.mode);
  for (Eigen::Index t = 0; t < out.weights.rows(); ++t) {
    std::vector<double> w(static_cast<std::size_t>(k));
    for (std::int64_t j = 0; j < k; ++j) {
      w[static_cast<std::size_t>(j)] = out.weights(t, j);
      RC_ASSERT(out.weights(t, j) > 0.0);
    }
    RC_ASSERT(std::fabs(exact_sum_to_double(w) - g.config.route_scale) <= bound);
  }
}

// The weights are the ORIGINAL scores of the chosen experts (the selection bias only chooses):
// w_j = ρ·s_{e_j} / Σ_i s_{e_i} within 1.01·(k + 3)u relative (the rounding of the sum, the
// division, ρ and the product), in both routing kinds.
void weights_from_unbiased_scores_property() {
  const GateCase g = gen_case();
  const GateOutput out = make_gate(g).forward(g.x, g.ids);
  const std::int64_t k = g.config.n_activated_experts;
  const double rel = 1.01 * static_cast<double>(k + 3) * unit_roundoff(g.mode);
  for (Eigen::Index t = 0; t < out.weights.rows(); ++t) {
    std::vector<double> s(static_cast<std::size_t>(k));
    for (std::int64_t j = 0; j < k; ++j) s[static_cast<std::size_t>(j)] = out.scores(t, out.index(t, j));
    const double total = exact_sum_to_double(s);
    for (std::int64_t j = 0; j < k; ++j) {
      const double expect = g.config.route_scale * s[static_cast<std::size_t>(j)] / total;
      RC_ASSERT(std::fabs(out.weights(t, j) - expect) <= rel * expect);
    }
  }
}

// Score-routed layers: the chosen experts are k distinct ids whose biased scores ŝ = s + b are
// each ≥ every unchosen expert's (official: the fp32 ŝ the decision used, ties allowed; exact
// mode: up to the two scores' rigorous bounds, the decision being certified). The recorded margin
// is that cut.
void topk_of_biased_scores_property() {
  GateCase g = gen_case();
  g.layer = *rc::gen::inRange<std::int64_t>(g.config.n_hash_layers, g.config.n_layers);
  const GateWeights w = GateWeights::synthetic(g.config, g.layer, 1);
  const Precision p(g.mode);
  const GateOutput out = Gate(p, g.config, g.layer, w).forward(g.x, g.ids);
  const std::int64_t k = g.config.n_activated_experts, E = g.config.n_routed_experts;
  for (Eigen::Index t = 0; t < out.weights.rows(); ++t) {
    std::set<std::int64_t> chosen;
    for (std::int64_t j = 0; j < k; ++j) chosen.insert(out.index(t, j));
    RC_ASSERT(static_cast<std::int64_t>(chosen.size()) == k);
    double min_chosen = std::numeric_limits<double>::infinity(), max_other = -min_chosen;
    double slack_chosen = 0.0, slack_other = 0.0;
    for (std::int64_t e = 0; e < E; ++e) {
      const double b = p.add(out.scores(t, e), w.bias(e));
      const double slack = p.official() ? 0.0 : out.score_bounds(t, e);
      if (chosen.count(e) != 0 && b < min_chosen) {
        min_chosen = b;
        slack_chosen = slack;
      } else if (chosen.count(e) == 0 && b > max_other) {
        max_other = b;
        slack_other = slack;
      }
    }
    RC_ASSERT(min_chosen >= max_other - slack_chosen - slack_other);
    RC_ASSERT(out.margins[static_cast<std::size_t>(t)].gap >= 0.0);
  }
}

// Hash-routed layers: the chosen experts are the token id's row of tid2eid, whatever the hidden
// state (two unrelated x give the same ids); score-routed layers: the token id changes nothing
// (bit for bit).
void routing_inputs_property() {
  const GateCase g = gen_case();
  const Gate gate = make_gate(g);
  const GateOutput a = gate.forward(g.x, g.ids);
  const std::int64_t k = g.config.n_activated_experts;
  if (gate.hash()) {
    const GateWeights w = GateWeights::synthetic(g.config, g.layer, 1);
    const GateOutput b = gate.forward(-2.0 * g.x.reverse(), g.ids);
    RC_ASSERT(a.indices == b.indices);
    for (std::size_t t = 0; t < g.ids.size(); ++t)
      for (std::int64_t j = 0; j < k; ++j)
        RC_ASSERT(a.index(static_cast<Eigen::Index>(t), j) == w.tid2eid[static_cast<std::size_t>(g.ids[t] * k + j)]);
  } else {
    std::vector<std::int64_t> other = g.ids;
    for (auto& id : other) id = (id + 1 + *rc::gen::inRange<std::int64_t>(0, 1000)) % g.config.vocab_size;
    const GateOutput b = gate.forward(g.x, other);
    RC_ASSERT(a.indices == b.indices);
    RC_ASSERT(a.weights == b.weights);
  }
}

}  // namespace

void register_gate_properties(Registry& r) {
  r.add_rc("gate.weights_sum_to_route_scale", "gate",
           "every token's k routing weights are positive and sum to route_scale within 1.01 (k+2) u", 300,
           weights_sum_property);
  r.add_rc("gate.weights_from_unbiased_scores", "gate",
           "w_j = route_scale s_j / sum_i s_i of the ORIGINAL scores (the bias only chooses), relative 1.01 (k+3) u",
           300, weights_from_unbiased_scores_property);
  r.add_rc("gate.topk_of_biased_scores", "gate",
           "score-routed: k distinct experts, each biased score >= every unchosen one (exact mode: within the bounds)",
           300, topk_of_biased_scores_property);
  r.add_rc("gate.routing_inputs", "gate",
           "hash layers: experts = tid2eid[token id] whatever the hidden state; score layers: the token id changes "
           "nothing",
           300, routing_inputs_property);
}

}  // namespace dsv4::props
