// The MoE feed-forward of every layer (spec 03 §3.3; official code class `MoE`): gate, the routed
// experts chosen per token, combined in ascending expert-id order, plus the shared expert.
//
// Recordable outputs (canonical name `layers.N.ffn`): the gate's outputs and the MoE output.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/expert.hpp"
#include "dsv4/model/gate.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

struct MoeWeights {
  GateWeights gate;
  std::vector<ExpertWeights> experts;  // E routed experts (cfg.expert_dtype: "fp4", "fp8" or "bf16")
  ExpertWeights shared;                // FP8 (bf16 when cfg.dtype == "bf16")

  // Deterministic synthetic weights of layer `layer` (Philox; element i of a tensor is a function of
  // (seed, layer, tensor name, i)):
  //   gate: see GateWeights::synthetic (weight bf16(N(0, 1/d)), bias fp32(N(0, 0.05²)) or tid2eid);
  //   every expert w1, w3: N(0, 1/d), w2: N(0, 1/d_e), stored in the expert's dtype —
  //     fp4: synthetic_fp4_weight (1×32 power-of-two scales fitting the block amax into ±6, codes RNE),
  //     fp8: synthetic_fp8_weight (128×128 power-of-two scales fitting the tile amax into ±448, RNE),
  //     bf16: synthetic_bf16_weight (RNE to bf16).
  static MoeWeights synthetic(const ModelConfig& c, std::int64_t layer, std::uint64_t seed);
};

struct MoeOutput {
  GateOutput gate;
  Mat out;  // [T, d] (bf16 values in official mode)
};

class Moe {
 public:
  // Validates the number of experts (E = n_routed_experts) and every expert's shapes
  // (std::invalid_argument naming `experts`, `experts[e].wN` or `shared.wN`).
  Moe(Precision p, const ModelConfig& c, std::int64_t layer, MoeWeights w);

  const Gate& gate() const { return gate_; }

  // spec 03 §3.3: x [T, d] (the ffn_norm output), token_ids [T].
  MoeOutput forward(const Mat& x, const std::vector<std::int64_t>& token_ids) const;
  // spec 03 §3.3 steps 1–5 for given routing decisions (the gate's, or forced ones — `dsv4 diff`
  // replays a candidate's legitimate near-tie routing): x [T, d], routing weights/indices [T, k].
  Mat combine(const Mat& x, const GateOutput& routing) const;

 private:
  Precision p_;
  ModelConfig c_;
  std::int64_t layer_;
  Gate gate_;
  std::vector<ExpertWeights> experts_;
  ExpertWeights shared_;
};

}  // namespace dsv4
