// The gate's flat-array adapter (dsv4/model/gate.hpp gate_rows): one Gate of a one-layer
// configuration (layer 0, hash-routed when a tid2eid table is given) run on the rows.
#include <stdexcept>
#include <string>
#include <utility>

#include "dsv4/model/gate.hpp"

namespace dsv4 {

GateRows gate_rows(const Precision& p, const float* x, std::int64_t tokens, std::int64_t d,
                   const std::int64_t* token_ids, const float* weight, std::int64_t experts, const float* bias,
                   const std::int64_t* tid2eid, std::int64_t vocab, ScoreFunc score_func, std::int64_t k,
                   double route_scale) {
  if (tokens < 0 || d < 1 || experts < 1 || vocab < 1) {
    throw std::invalid_argument("gate: tokens must be non-negative and dim, experts, vocab positive");
  }
  const bool hash = tid2eid != nullptr;
  if (hash == (bias != nullptr)) throw std::invalid_argument("gate: give exactly one of bias and tid2eid");
  ModelConfig c;
  c.dim = d;
  c.n_routed_experts = experts;
  c.n_activated_experts = k;
  c.score_func = score_func;
  c.route_scale = route_scale;
  c.vocab_size = vocab;
  c.n_layers = 1;
  c.n_mtp_layers = 0;
  c.n_hash_layers = hash ? 1 : 0;
  Mat w(experts, d);
  for (std::int64_t i = 0; i < experts * d; ++i) w.data()[i] = weight[i];
  GateWeights gw;
  gw.weight = LinearWeight::bf16_from(w);
  if (hash) {
    gw.tid2eid.assign(tid2eid, tid2eid + vocab * k);
  } else {
    gw.bias.resize(experts);
    for (std::int64_t e = 0; e < experts; ++e) gw.bias(e) = bias[e];
  }
  const Gate gate(p, c, 0, std::move(gw));
  Mat xm(tokens, d);
  for (std::int64_t i = 0; i < tokens * d; ++i) xm.data()[i] = x[i];
  const GateOutput out = gate.forward(xm, std::vector<std::int64_t>(token_ids, token_ids + tokens));
  GateRows r;
  r.indices = out.indices;
  r.weights.resize(static_cast<std::size_t>(out.weights.size()));
  for (Eigen::Index i = 0; i < out.weights.size(); ++i) r.weights[static_cast<std::size_t>(i)] = out.weights.data()[i];
  r.scores.resize(static_cast<std::size_t>(out.scores.size()));
  for (Eigen::Index i = 0; i < out.scores.size(); ++i) r.scores[static_cast<std::size_t>(i)] = out.scores.data()[i];
  return r;
}

}  // namespace dsv4
