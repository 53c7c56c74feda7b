// Anticipatory Routing (spec 06 §6.6, the reference's choices spec 06 §6.15; report §4.2.3).
//
// At step t the features (expert inputs and outputs, everything but the choice of experts) are
// computed with the current parameters θ_t, while the routing INDICES of every score-routed MoE
// layer are those a forward pass with the parameters θ_{t−Δt} chose for the data of step t:
//
//   indices_t  = top-k( s(x_t^{θ_{t−Δt}}; W_{t−Δt}) + b_{t−Δt} )      (§1 anticipate_routing)
//   weights_t  = ρ · s_{e_j}(x_t^{θ_t}; W_t) / Σ_i s_{e_i}(x_t^{θ_t}; W_t) at those indices
//                                                                     (§2 anticipatory_gate)
//
// (x^θ: the gate's input under parameters θ — the whole earlier network, not only the gate, differs.)
// The combine weights are gathered from the CURRENT scores at the cached indices — the report is
// silent [U, spec 06 §6.6]; this is the hash-routing analogue (fixed indices, current scores) and
// keeps the router trained by the LM loss (the gate's backward, train/gate_backward, takes the
// indices as fixed inputs). Switchable: CombineWeights::kCached uses the historical forward's
// weights (then the LM loss gives the router no gradient). Hash-routed layers choose by tid2eid,
// which no parameter changes, so anticipatory routing is the identity there.
//
// §3 the loss-spike detector, §4 the rollback and the active window: AnticipatoryRoutingController
// keeps the training state of the last max(R, Δt) + 1 steps (R the rollback length), judges each
// step's loss before its update is applied, and on a spike at step s discards the update, restores
// the state of the start of step r = max(s − R, oldest retained) and trains steps r … r + A − 1
// with anticipatory routing on (A the active window), routing batch t with the state of step
// max(t − Δt, r) — the steps before r were trained without the anticipatory forward, so no cache
// exists for them [C]. Every parameter: AnticipatoryRoutingConfig (defaults spec 06 §6.15).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/gate.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// Where the combine weights of an anticipatory step come from (spec 06 §6.15).
enum class CombineWeights {
  kCurrent,  // ρ·s/Σs of the current scores at the cached indices (the reference's choice)
  kCached,   // the historical forward's weights, as cached (no LM-loss gradient into the router)
};

// The loss-spike detector (spec 06 §6.15, [C]): over the last `window` accepted losses with mean μ
// and population standard deviation σ (two-pass, ascending), step s's loss L is a spike iff
//   L is not finite,  or  the window is full and L > μ + max(k_sigma·σ, min_rise·|μ|).
// The relative floor keeps a flat loss curve (σ ≈ 0) from flagging noise. Strict ">": a loss equal
// to the threshold is no spike.
struct SpikeDetectorConfig {
  std::int64_t window = 100;
  double k_sigma = 4.0;
  double min_rise = 0.05;
};

struct AnticipatoryRoutingConfig {
  std::int64_t delta_t = 1;  // Δt: routing indices from θ_{t−Δt} (≥ 0; 0 = normal routing)
  CombineWeights combine = CombineWeights::kCurrent;
  SpikeDetectorConfig detector;
  std::int64_t rollback_steps = 100;  // R: a spike at s restarts from the start of step s − R
  std::int64_t active_steps = 1000;   // A: anticipatory routing on for steps r … r + A − 1
  std::int64_t max_rollbacks = 3;     // rollbacks since AR was last off; a spike beyond them → unrecovered
};

// ---- §1: the cached routing of a batch, from the historical parameters ----

// What the anticipatory forward of batch t (run with θ_{t−Δt}) keeps for step t, per MoE layer:
// the choice and the decision's margins (exact mode: certified or re-decided in Mp50, as any gate's),
// and the historical weights (used only with CombineWeights::kCached).
struct CachedRouting {
  std::vector<std::int64_t> indices;  // [T·k] row-major, C4 order
  Mat weights;                        // [T, k]
  std::vector<RoutingMargin> margins;
  DecisionStats decisions;
};

// `historical`: the layer's gate with the parameters of θ_{t−Δt} (weight and bias); x_historical
// [T, d]: the gate input of batch t under θ_{t−Δt}; token_ids [T]: batch t's tokens.
CachedRouting anticipate_routing(const Gate& historical, const Mat& x_historical,
                                 const std::vector<std::int64_t>& token_ids);

// ---- §2: the gate of an anticipatory step ----

// Spec 03 §3.1 step 4 at given indices [T·k]: w_j = ρ·s_{e_j}/Σ_i s_{e_i} (sqrtsoftplus, sigmoid) or
// ρ·s_{e_j} (softmax), in the arithmetic of Precision p (the gate's own operations, so Δt = 0 gives
// the gate's bits). scores [T, E]: the unbiased scores.
Mat routing_weights_at(const Precision& p, const Mat& scores, const std::vector<std::int64_t>& indices, std::int64_t k,
                       ScoreFunc f, double route_scale);

// The gate output of step t: `current` is the layer's gate with θ_t, x [T, d] its input under θ_t.
// Indices, margins and decisions are the cache's; scores the current ones; weights per `combine`.
// std::invalid_argument when the cache's shape does not match the batch.
GateOutput anticipatory_gate(const Precision& p, const ModelConfig& c, const Gate& current, const Mat& x,
                             const std::vector<std::int64_t>& token_ids, const CachedRouting& cached,
                             CombineWeights combine = CombineWeights::kCurrent);

// ---- §3: the loss-spike detector ----

class LossSpikeDetector {
 public:
  explicit LossSpikeDetector(SpikeDetectorConfig c);
  bool ready() const { return static_cast<std::int64_t>(history_.size()) == c_.window; }
  // μ + max(k_sigma·σ, min_rise·|μ|) of the window; +∞ until the window is full.
  double threshold() const;
  bool is_spike(double loss) const { return !std::isfinite(loss) || loss > threshold(); }
  // An applied step's loss enters the window (the oldest leaves once `window` are held).
  void accept(double loss);
  const std::deque<double>& history() const { return history_; }
  void restore(std::deque<double> history) { history_ = std::move(history); }

 private:
  SpikeDetectorConfig c_;
  std::deque<double> history_;
};

// ---- §4: rollback and the active window ----

enum class StepOutcome {
  kApplied,     // the loss was no spike: the step's state is the next step's
  kRolledBack,  // spike: the update is discarded, state and detector restored to step r, AR on
  kUnrecovered  // spike after max_rollbacks rollbacks since AR was last off: nothing changes; the run stops
};

// State: everything a step reads and writes (spec 06 §6.15: parameters, optimizer states — Muon
// momenta, AdamW moments and step count —, router biases; the data cursor and LR schedule position
// are the step index the controller holds). Copyable; each retained step keeps a copy.
template <class State>
class AnticipatoryRoutingController {
 public:
  AnticipatoryRoutingController(AnticipatoryRoutingConfig c, State initial, std::int64_t first_step = 0)
      : c_(c), detector_(c.detector) {
    if (c.delta_t < 0 || c.rollback_steps < 0 || c.active_steps < 1 || c.max_rollbacks < 0 || c.detector.window < 1 ||
        !(c.detector.k_sigma >= 0) || !(c.detector.min_rise >= 0)) {
      throw std::invalid_argument(
          "anticipatory_routing: need delta_t >= 0, rollback_steps >= 0, active_steps >= 1, max_rollbacks >= 0, "
          "window >= 1, k_sigma >= 0, min_rise >= 0");
    }
    retained_.push_back({first_step, std::move(initial), {}});
  }

  std::int64_t step() const { return retained_.back().step; }    // t: the step to run next
  const State& state() const { return retained_.back().state; }  // its state (start of step t)
  const LossSpikeDetector& detector() const { return detector_; }
  bool active() const { return active_since_ >= 0; }
  std::int64_t active_since() const { return active_since_; }  // r, or −1 when off
  std::int64_t rollbacks() const { return rollbacks_; }        // since AR was last off

  // The step whose state routes batch t: max(t − Δt, r) while active, t otherwise.
  std::int64_t routing_step() const { return active() ? std::max(step() - c_.delta_t, active_since_) : step(); }
  const State& routing_state() const { return find(routing_step()).state; }

  // Reports step t's loss (computed with state()) and the state after its update.
  StepOutcome finish(double loss, State next) {
    if (unrecovered_) throw std::logic_error("anticipatory_routing: the run did not recover from a loss spike");
    const std::int64_t t = step();
    if (detector_.is_spike(loss)) {
      if (rollbacks_ >= c_.max_rollbacks) {
        unrecovered_ = true;
        return StepOutcome::kUnrecovered;
      }
      const std::int64_t r = std::max(t - c_.rollback_steps, retained_.front().step);
      while (retained_.back().step > r) retained_.pop_back();
      detector_.restore(retained_.back().history);
      active_since_ = r;
      ++rollbacks_;
      return StepOutcome::kRolledBack;
    }
    detector_.accept(loss);
    retained_.push_back({t + 1, std::move(next), detector_.history()});
    while (static_cast<std::int64_t>(retained_.size()) > std::max(c_.rollback_steps, c_.delta_t) + 1)
      retained_.pop_front();
    if (active() && t + 1 >= active_since_ + c_.active_steps) {  // the window closes: standard training
      active_since_ = -1;
      rollbacks_ = 0;
    }
    return StepOutcome::kApplied;
  }

 private:
  struct Retained {
    std::int64_t step;
    State state;
    std::deque<double> history;  // the detector's window at the start of the step
  };
  const Retained& find(std::int64_t s) const {
    for (const Retained& r : retained_) {
      if (r.step == s) return r;
    }
    throw std::logic_error("anticipatory_routing: the state of step " + std::to_string(s) + " is not retained");
  }

  AnticipatoryRoutingConfig c_;
  LossSpikeDetector detector_;
  std::deque<Retained> retained_;  // ascending steps, the last one the step to run next
  std::int64_t active_since_ = -1;
  std::int64_t rollbacks_ = 0;
  bool unrecovered_ = false;
};

}  // namespace dsv4
