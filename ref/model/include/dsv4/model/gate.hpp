// The MoE gate (spec 03 §3.1; official code class `Gate`): scores every routed expert for every
// token, chooses k experts (by the biased scores, or by the token id's row of tid2eid in the
// hash-routed layers) and returns their routing weights.
//
// Recordable outputs (canonical name `layers.N.ffn.gate`): weights (out0), indices (out1), the
// original scores and the margin of every token's routing cut.
//
// Exact mode certifies every routing cut (ref/README.md §Precision design): each biased score
// carries a rigorous error bound (derivation at the top of gate.cpp); a cut the bounds do not
// decide is re-decided from the inputs in Mp50 (topk_exact) and flagged `redecided`.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// Parameters of one gate (spec 03 §3.1).
struct GateWeights {
  LinearWeight weight;                // bf16 [E, d] (`gate.weight`, widened to fp32 at use)
  Vec bias;                           // fp32 [E] (`gate.bias`); empty in hash layers
  std::vector<std::int64_t> tid2eid;  // [V·k] row-major (`gate.tid2eid`), hash layers only; empty otherwise

  // Deterministic synthetic gate of layer `layer` (Philox, see moe.hpp for the distributions):
  // weight bf16(N(0, 1/d)); score-routed layers: bias fp32(N(0, 0.05²)); hash layers: tid2eid row v
  // = k distinct experts (the first k of a Philox-driven Fisher–Yates shuffle of 0..E−1).
  static GateWeights synthetic(const ModelConfig& c, std::int64_t layer, std::uint64_t seed);
};

// The margin of one token's routing cut, on the biased scores ŝ = s + b (spec 03 §3.1 step 3).
// kth: ŝ of the k-th chosen expert; next: ŝ of the best unchosen one; gap = kth − next (≥ 0;
// +∞ when every expert is chosen). bound: exact mode, the rigorous error bound of kth plus that of
// next (0 in official mode, where the fp32 scores are the decision's exact inputs). redecided:
// exact mode, the bounds did not decide the cut and it was re-decided in Mp50.
// Hash-routed layers have no cut: kth = +∞, next = −∞, gap = +∞, bound = 0.
struct RoutingMargin {
  double kth = 0.0;
  double next = 0.0;
  double gap = 0.0;
  double bound = 0.0;
  bool redecided = false;
};

struct GateOutput {
  Mat weights;                         // [T, k] fp32 routing weights (out0)
  std::vector<std::int64_t> indices;   // [T·k] row-major expert ids (out1), top-k order (C4)
  Mat scores;                          // [T, E] original (unbiased) scores s
  std::vector<RoutingMargin> margins;  // [T]
  // Exact mode (score-routed layers): the rigorous |error| bound of every biased score [T, E]
  // (empty in official mode and in hash layers).
  Mat score_bounds;
  // Exact mode (score-routed layers): the routing cuts, one per token, certified or re-decided in
  // Mp50 (flipped: the chosen set differs from the double top-k; recomputed: candidates).
  DecisionStats decisions;

  std::int64_t index(std::int64_t t, std::int64_t j) const {
    return indices[static_cast<std::size_t>(t * weights.cols() + j)];
  }
};

class Gate {
 public:
  // layer < n_hash_layers → hash routed (the MTP layer id n_layers never is). Validates the weights
  // (std::invalid_argument naming the parameter, e.g. `layers.0.ffn.gate.tid2eid`, or `layer`): tid2eid
  // rows must hold k distinct expert ids in [0, E).
  Gate(Precision p, const ModelConfig& c, std::int64_t layer, GateWeights w);

  bool hash() const { return hash_; }
  std::int64_t layer() const { return layer_; }

  // spec 03 §3.1: x [T, d] (the ffn_norm output; bf16 values in official mode), token_ids [T]
  // (each in [0, vocab_size)). Throws std::invalid_argument naming `x` or `token_ids`.
  GateOutput forward(const Mat& x, const std::vector<std::int64_t>& token_ids) const;

 private:
  Precision p_;
  ModelConfig c_;
  std::int64_t layer_;
  bool hash_;
  GateWeights w_;
  LinearWeight w32_;  // the bf16 weight widened to fp32 (exact): the official fp32 F.linear path
};

// The gate on flat row-major arrays (the op registry's and the GPU kernel's host fallback's adapter;
// ref/model/src/gate_rows.cpp): x [tokens, d] (bf16 values), token_ids [tokens], weight [E, d]
// (bf16 values), score_func, k = n_activated_experts, route_scale; score-routed when tid2eid is
// null (bias [E], fp32 values), hash-routed otherwise (tid2eid [vocab, k], bias null). Token ids
// must lie in [0, vocab). Returns weights [tokens, k], indices [tokens, k] and the original scores
// [tokens, E] of Gate::forward in precision p. Throws std::invalid_argument as Gate does.
struct GateRows {
  std::vector<float> weights;
  std::vector<std::int64_t> indices;
  std::vector<float> scores;
};
GateRows gate_rows(const Precision& p, const float* x, std::int64_t tokens, std::int64_t d,
                   const std::int64_t* token_ids, const float* weight, std::int64_t experts, const float* bias,
                   const std::int64_t* tid2eid, std::int64_t vocab, ScoreFunc score_func, std::int64_t k,
                   double route_scale);

}  // namespace dsv4
