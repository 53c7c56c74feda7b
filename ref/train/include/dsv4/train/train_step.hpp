// One complete training step of the reference, exact mode (spec 06 §6.12, §6.13; issue 16 item 7):
// the whole-model forward and backward of one sequence (model_backward.hpp), then every parameter
// stepped by the optimizer its official name assigns (optimizer_assignment.hpp) from a zero state:
//   Muon  (muon.hpp)   — momentum M₁ and W₁ = W₀(1 − ηλ) − η·O (wo_a per row block: muon_row_blocks);
//   AdamW (adamw.hpp)  — moments m₁, v₁ (step count 1) and W₁ = W₀(1 − ηλ) − η·m̂/(√v̂ + ε);
//   none               — `gate.bias` of every score-routed layer (MTP's included) follows the
//                        auxiliary-loss-free update (balance_loss.hpp, spec 03 §3.4) from the loads of
//                        the step's routing; nothing else is untrained among the ParameterMap's
//                        names (block scales and tid2eid are not in it).
// Parameters are visited in the ParameterMap's (name) order; each step is independent of the others
// (the optimizers act per tensor), so the order changes no bit.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/train/adamw.hpp"
#include "dsv4/train/balance_loss.hpp"
#include "dsv4/train/model_backward.hpp"
#include "dsv4/train/muon.hpp"
#include "dsv4/train/optimizer_assignment.hpp"

namespace dsv4 {

// The peak learning rate of DeepSeek-V4-Flash (spec 06 §6.4, report §4.2.2); the schedule (warm-up,
// decay) is the caller's: a step takes the η it is given.
inline constexpr double kPeakLearningRateFlash = 2.7e-4;

struct TrainStepOptions {
  double lr = kPeakLearningRateFlash;  // η of this step (both optimizers)
  TrainingLossOptions loss;            // λ_MTP, α
  AdamWConfig adamw;
  MuonConfig muon;
  double bias_speed = kBiasUpdateSpeed;  // u of the router bias update
};

struct TrainStepResult {
  ModelGradients step;                             // loss parts, decisions, offsets and ∂L/∂θ at θ₀
  std::map<std::string, OptimizerKind> optimizer;  // every parameter's optimizer_for kind
  std::map<std::string, AdamWState> adamw;         // the AdamW parameters' states after the step
  std::map<std::string, MuonState> muon;           // the Muon parameters' momenta after the step
  ParameterMap updated;                            // every parameter after the step (same keys as θ₀)
};

// The step from θ₀ = params on tokens t₀..t_{s−1} (model_backward's requirements). `threads`: as
// gemm_nt for Newton–Schulz (0 = gemm_threads()); the result never depends on it.
// std::invalid_argument as model_backward, adamw_step, muon_step and update_router_bias.
TrainStepResult train_step(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                           const std::vector<std::int64_t>& tokens, const TrainStepOptions& opt = {}, int threads = 0);

// The official-style step (spec 06 §6.17): model_backward_official with `held` (the exact step's
// decisions: its TrainStepResult::step.loss.decisions), then every parameter stepped as train_step
// does, the optimizer's arithmetic in double on the fp32 gradient and every state and updated
// parameter stored fp32 (a training engine's fp32 master weights and optimizer states).
// style.deviation: the training bug catalogue (precision.hpp) — the backward's entries through
// model_backward_official, kMuonTransposeNotUndone / kNsFastCoefficientsOnly through
// MuonConfig::deviation, kAdamWOnRouter steps every `*.ffn.gate.weight` by AdamW.
TrainStepResult train_step_official(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                                    const std::vector<std::int64_t>& tokens, const TrainingDecisions& held,
                                    const TrainStepOptions& opt = {}, const OfficialStyleOptions& style = {},
                                    int threads = 0);

// One parameter's optimizer step from a zero state, as train_step and train_step_official take it
// (they call it for every Muon and AdamW parameter; certify's teacher-forced optimizer calls it on
// a candidate's own gradient, spec 06 §6.17): `kind` kMuon — muon_step with the parameter's
// muon_row_blocks(name, c), MuonConfig::deviation = `deviation` — or kAdamW — adamw_step — on
// θ₀ = w0 and the gradient g (g's shape is w0's), η = opt.lr. official: the same arithmetic, the
// states and the updated parameter then stored fp32 (an engine's fp32 optimizer states and master
// weights: stored_fp32 of the double step, bit for bit); else double.
// std::invalid_argument as muon_step / adamw_step (shapes, non-finite values), and for kNone (the
// router bias update is a function of the routing, not of a gradient).
struct OptimizerStep {
  std::optional<AdamWState> adamw;  // kAdamW: m, v after the step
  std::optional<MuonState> muon;    // kMuon: the momentum after the step
  Mat updated;                      // θ₁
};
OptimizerStep optimizer_step(const ModelConfig& c, const std::string& name, OptimizerKind kind, const Mat& w0,
                             const Mat& g, const TrainStepOptions& opt, bool official,
                             Deviation deviation = Deviation::kNone, int threads = 0);
// The official-style storage of a step: every state and the updated parameter rounded to fp32.
OptimizerStep stored_fp32(OptimizerStep s);

// The routing module of a router bias (`layers.3.ffn.gate.bias` → `layers.3.ffn`, the key of
// TrainingDecisions::routing); empty for any other name.
std::string routing_module_of_bias(const std::string& name);

}  // namespace dsv4
