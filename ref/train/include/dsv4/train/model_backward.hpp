// The whole-model backward of one training step, exact mode (spec 06 §6.12, §6.13; issue 16 item 7):
// the forward of spec 05 (prefill of one sequence) with every value the backward needs kept, the
// step's loss — next-token cross-entropy, λ_MTP times the MTP cross-entropy, the sequence-wise
// balance loss of every score-routed MoE layer — and its gradient with respect to every float
// parameter, keyed by the official name, composed of the registered component backwards
// (ref/train/<stem>_backward).
//
// Parameters are the exact values the exact-mode forward multiplies by (quantised weights
// dequantised: the straight-through estimator of spec 06 §6.12 makes their gradient the master
// weight's), held as double so that a training step or a finite difference can move them.
//
// Choices (spec 06 §6.12, §6.16):
//  * Discrete decisions carry no gradient: the routing (top-k of the biased scores, or tid2eid) and
//    the index lists (window, HCA, and the indexer's top-k) are computed by the forward and held
//    fixed in the backward. The indexer enters the LM loss only through its selection, so its
//    parameters (`*.indexer.*`) receive zero gradient here; their signal is indexer_loss (§6.16), a
//    separate objective. gate.bias only chooses: zero gradient (03 §3.4 updates it).
//  * The FP8 / FP4 activation simulations (window KV, compressed KV) pass the gradient straight
//    through: the loss differentiated is the surrogate whose quantisation points add the offset
//    δ = Q(v₀) − v₀ of the point v₀ where the step is taken (`QuantOffsets`); at v₀ it is the exact
//    forward, bit for bit (Q(v₀) − v₀ is exact by Sterbenz, |Q(v) − v| ≤ |v|/16).
//  * The MTP block (05 §5.5) runs on positions 0..s−2 with the ids t₁..t_{s−1}; its loss is the mean
//    over positions 0..s−3 of −log p(t_{i+2}), weighted by λ_MTP (6.13).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/train/balance_loss.hpp"
#include "dsv4/train/cross_entropy.hpp"
#include "dsv4/train/fp32_partitioned_sum.hpp"

namespace dsv4 {

// Official name → exact value (matrices [rows, cols]; vectors as [n, 1]). Every float parameter of
// visit_model_parameters: a linear's `<name>.weight` (dequantised), matrices and vectors; not the
// block scales (`*.scale`, derived from the master weight) nor `gate.tid2eid` (integers).
using ParameterMap = std::map<std::string, Mat>;
ParameterMap model_parameters(const ModelConfig& c, const ModelWeights& w);

struct TrainingLossOptions {
  double mtp_weight = kMtpWeightBeforeDecay;  // λ_MTP (6.13; 0 or no MTP layer: no MTP loss)
  double balance_alpha = kBalanceLossWeight;  // α of the sequence-wise balance loss (0: none)
};

// The surrogate's offsets δ = Q(v₀) − v₀ per quantisation site (`layers.2.attn.kv`,
// `layers.2.attn.compressor`, …). Empty: taken from this forward (the step's point).
using QuantOffsets = std::map<std::string, Mat>;

// The discrete decisions of one forward (what the backward holds fixed).
struct TrainingDecisions {
  std::map<std::string, std::vector<std::int64_t>> routing;  // `layers.N.ffn` / `mtp.0.ffn` → [s·k]
  std::map<std::string, IndexLists> index_lists;             // `layers.N.attn` → the attention's lists
  double min_routing_gap = 0;  // smallest biased-score gap of a score-routed cut (+∞ if none)
  bool operator==(const TrainingDecisions& o) const { return routing == o.routing && index_lists == o.index_lists; }
};

struct TrainingLoss {
  double total = 0, lm = 0, mtp = 0, balance = 0;
  Mat last_logits;      // [1, V] logits of position s−1 (Transformer::forward's)
  Mat mtp_last_logits;  // [1, V] MTP logits of position s−2 (empty without MTP)
  TrainingDecisions decisions;
  QuantOffsets offsets;  // those used (given, or of this forward)
};

// The step's loss for tokens t₀..t_{s−1} (s ≥ 3), exact mode. `weights` supplies the integer
// tables (tid2eid) and shapes; every float value comes from `params`. std::invalid_argument on a
// missing parameter or a bad token.
TrainingLoss training_loss(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                           const std::vector<std::int64_t>& tokens, const TrainingLossOptions& opt = {},
                           const QuantOffsets* offsets = nullptr);

struct ModelGradients {
  TrainingLoss loss;
  ParameterMap grad;  // same keys and shapes as params
};
// training_loss and ∂total/∂params (exact mode, double, fixed-order sums).
ModelGradients model_backward(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                              const std::vector<std::int64_t>& tokens, const TrainingLossOptions& opt = {});

// The official-style step (spec 06 §6.17): what a bf16 training engine computes, as the yardstick
// of a faithful engine's error beside the exact step (as the official forward is for inference).
//  * Forward: the same equations with Precision(kOfficial): every ref/model component at its
//    official cast points and fp32 arithmetic (RMSNorm, RoPE, mHC, sparse attention, SwiGLU, the
//    FP8 KV simulation); a linear is the official C1 product (one fp32 rounding per element) stored
//    bf16 — fp32 for the fp32 linears (compressor wkv / wgate, the head's logits); the gate's
//    scores and the compressor's pooling are evaluated in double and stored fp32, the routing
//    weights by the gate's official arithmetic at the held indices (routing_weights_at).
//  * Decisions: `held`'s — the exact step's routing and index lists — so that both steps
//    differentiate the same function (a decision the fp32 forward would take otherwise is the
//    exact step's margin, recorded as min_routing_gap).
//  * Backward: every component backward of the exact step evaluated on the stored values, each
//    activation gradient it passes on stored bf16, each parameter gradient accumulated in fp32
//    (a training engine's fp32 main_grad); every linear's weight gradient by the FP32-partitioned
//    sum of spec 06 §6.14 (linear_dweight_fp32, `style.partition`) and its input gradient by the
//    fp32 row rule (linear_dx_fp32), from bf16 upstream gradients; on the same rule and partition
//    the experts' weight gradients (expert_dweights_fp32), sparse attention's dkv and dsink
//    (sparse_attention_dkv_fp32, _dsink_fp32), mHC's parameter gradients (mhc_dparams_fp32),
//    head.weight and the router's gate.weight (linear sites), the RMSNorm gains
//    (rmsnorm_dweight_fp32), the embedding and ape (embedding_dtable_fp32): every parameter
//    gradient, from the component backward's per-row coefficients rounded once to fp32.
// std::invalid_argument as model_backward, and when `held` does not cover a routed layer or an
// attention. style.deviation: the bug catalogue's training entries only (precision.hpp).
struct OfficialStyleOptions {
  Deviation deviation = Deviation::kNone;
  PartitionRule partition;
};
ModelGradients model_backward_official(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                                       const std::vector<std::int64_t>& tokens, const TrainingDecisions& held,
                                       const TrainingLossOptions& opt = {}, const OfficialStyleOptions& style = {});

}  // namespace dsv4
