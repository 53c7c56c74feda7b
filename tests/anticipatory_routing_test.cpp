// Anticipatory Routing (spec 06 §6.6, §6.15; ref/train/anticipatory_routing.hpp): with Δt = 0 it is
// the gate bit for bit; with Δt > 0 the indices are the historical gate's (checked against the
// current gate's, which differ) and the weights the current scores' at them; the spike detector's
// threshold is hit exactly; rollback restores the retained state of step s − R and routes with the
// state of step max(t − Δt, r) for the active window.
#include "dsv4/train/anticipatory_routing.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <limits>
#include <stdexcept>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/gate.hpp"
#include "support/mat_bits.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

using test::bit_equal;

constexpr std::int64_t kScoreLayer = 3;  // tiny: layers 0..2 hash-routed, 3 score-routed
constexpr std::int64_t kTokens = 24;

std::vector<std::int64_t> ids() {
  std::vector<std::int64_t> v(kTokens);
  for (std::int64_t t = 0; t < kTokens; ++t) v[static_cast<std::size_t>(t)] = 11 * t + 3;
  return v;
}

Mat gate_input(std::uint64_t stream) { return test::random_bf16_matrix(kTokens, 256, 7, stream, 1.0); }

// Δt = 0: the historical parameters and input are the current ones; the anticipatory gate is the
// gate, bit for bit, in both modes, for every score function and for a hash-routed layer.
TEST(AnticipatoryRouting, DeltaTZeroIsNormalRoutingBitForBit) {
  for (const Mode mode : {Mode::kExact, Mode::kOfficial}) {
    const Precision p(mode);
    for (const ScoreFunc f : {ScoreFunc::kSqrtSoftplus, ScoreFunc::kSigmoid, ScoreFunc::kSoftmax}) {
      for (const std::int64_t layer : {std::int64_t{0}, kScoreLayer}) {
        ModelConfig c = builtin_config("tiny");
        c.score_func = f;
        const Gate gate(p, c, layer, GateWeights::synthetic(c, layer, 1));
        const Mat x = gate_input(1);
        const GateOutput normal = gate.forward(x, ids());
        const GateOutput ar = anticipatory_gate(p, c, gate, x, ids(), anticipate_routing(gate, x, ids()));
        EXPECT_EQ(ar.indices, normal.indices);
        EXPECT_TRUE(bit_equal(ar.weights, normal.weights)) << "layer " << layer;
        EXPECT_TRUE(bit_equal(ar.scores, normal.scores));
      }
    }
  }
}

// Δt > 0: gate weights of θ_{t−Δt} (seed 1) and θ_t (seed 2), gate inputs differing too (the earlier
// layers' parameters differ). The indices must be the historical gate's — and differ from the
// current gate's for some tokens, so a version routing with the current parameters fails — and the
// weights ρ·s/Σs of the CURRENT scores at them (exact mode: written out here from the scores).
TEST(AnticipatoryRouting, IndicesFromTheOldParametersWeightsFromTheCurrentScores) {
  const Precision p(Mode::kExact);
  const ModelConfig c = builtin_config("tiny");
  const Gate old_gate(p, c, kScoreLayer, GateWeights::synthetic(c, kScoreLayer, 1));
  const Gate gate(p, c, kScoreLayer, GateWeights::synthetic(c, kScoreLayer, 2));
  const Mat x_old = gate_input(1), x = gate_input(2);
  const GateOutput historical = old_gate.forward(x_old, ids());
  const GateOutput normal = gate.forward(x, ids());
  const CachedRouting cache = anticipate_routing(old_gate, x_old, ids());
  const GateOutput ar = anticipatory_gate(p, c, gate, x, ids(), cache);

  EXPECT_EQ(ar.indices, historical.indices);
  std::int64_t differing = 0;
  for (std::int64_t t = 0; t < kTokens; ++t) {
    for (std::int64_t j = 0; j < c.n_activated_experts; ++j) differing += ar.index(t, j) != normal.index(t, j);
  }
  EXPECT_GT(differing, kTokens / 2) << "the two parameter versions must route differently for the test to bite";
  EXPECT_TRUE(bit_equal(ar.scores, normal.scores));  // features: current

  double worst = 0.0;
  for (std::int64_t t = 0; t < kTokens; ++t) {
    double total = 0.0;
    for (std::int64_t j = 0; j < c.n_activated_experts; ++j) total += normal.scores(t, ar.index(t, j));
    for (std::int64_t j = 0; j < c.n_activated_experts; ++j) {
      const double want = c.route_scale * normal.scores(t, ar.index(t, j)) / total;
      worst = std::fmax(worst, std::fabs(ar.weights(t, j) - want) / want);
      EXPECT_NE(ar.weights(t, j), historical.weights(t, j));
    }
  }
  EXPECT_LE(worst, 1e-15);  // two roundings each side (sum of two, division; ρ applied in another order)
  std::printf("measured: %lld of %lld routed slots differ from the current gate's; max relative |w - rho s/S| %.3g\n",
              static_cast<long long>(differing), static_cast<long long>(kTokens * c.n_activated_experts), worst);

  // The switchable alternative: the historical weights, as cached.
  const GateOutput cached = anticipatory_gate(p, c, gate, x, ids(), cache, CombineWeights::kCached);
  EXPECT_TRUE(bit_equal(cached.weights, historical.weights));
  EXPECT_EQ(cached.indices, historical.indices);

  // Hash-routed layers: tid2eid does not depend on parameters; the indices equal the current gate's.
  const Gate old_hash(p, c, 0, GateWeights::synthetic(c, 0, 1));
  const Gate hash(p, c, 0, GateWeights::synthetic(c, 0, 1));
  EXPECT_EQ(anticipatory_gate(p, c, hash, x, ids(), anticipate_routing(old_hash, x_old, ids())).indices,
            hash.forward(x, ids()).indices);
}

TEST(AnticipatoryRouting, ACacheOfAnotherBatchIsRefused) {
  const Precision p(Mode::kExact);
  const ModelConfig c = builtin_config("tiny");
  const Gate gate(p, c, kScoreLayer, GateWeights::synthetic(c, kScoreLayer, 1));
  CachedRouting cache = anticipate_routing(gate, gate_input(1), ids());
  const Mat fewer = gate_input(1).topRows(kTokens - 1);
  const std::vector<std::int64_t> all = ids(), fewer_ids(all.begin(), all.end() - 1);
  EXPECT_THROW(anticipatory_gate(p, c, gate, fewer, fewer_ids, cache), std::invalid_argument);
  cache.indices[5] = c.n_routed_experts;
  EXPECT_THROW(anticipatory_gate(p, c, gate, gate_input(1), ids(), cache), std::invalid_argument);
}

// Window {1, 3, 1, 3}: μ = 2, σ = 1 exactly; k_sigma 4, min_rise 0.25: threshold 2 + max(4, 0.5) = 6.
// Window {8, 8, 8, 8}: σ = 0, threshold 8 + 0.25·8 = 10 (the relative floor).
TEST(LossSpikeDetector, TriggersExactlyAboveTheStatedThreshold) {
  const SpikeDetectorConfig cfg{4, 4.0, 0.25};
  LossSpikeDetector d(cfg);
  for (const double l : {1.0, 3.0, 1.0}) d.accept(l);
  EXPECT_FALSE(d.ready());
  EXPECT_FALSE(d.is_spike(1e300));  // not ready: only a non-finite loss is a spike
  EXPECT_TRUE(d.is_spike(std::numeric_limits<double>::quiet_NaN()));
  EXPECT_TRUE(d.is_spike(std::numeric_limits<double>::infinity()));
  d.accept(3.0);
  ASSERT_TRUE(d.ready());
  EXPECT_EQ(d.threshold(), 6.0);
  EXPECT_FALSE(d.is_spike(6.0));
  EXPECT_TRUE(d.is_spike(std::nextafter(6.0, 7.0)));

  LossSpikeDetector flat(cfg);
  for (int i = 0; i < 6; ++i) flat.accept(8.0);
  EXPECT_EQ(flat.history().size(), 4u);
  EXPECT_EQ(flat.threshold(), 10.0);
  EXPECT_FALSE(flat.is_spike(10.0));
  EXPECT_TRUE(flat.is_spike(std::nextafter(10.0, 11.0)));
  EXPECT_THROW(flat.accept(NAN), std::invalid_argument);
}

TEST(LossSpikeDetector, DefaultsAreTheStatedOnes) {  // spec 06 §6.15
  const AnticipatoryRoutingConfig c;
  EXPECT_EQ(c.delta_t, 1);
  EXPECT_EQ(c.combine, CombineWeights::kCurrent);
  EXPECT_EQ(c.detector.window, 100);
  EXPECT_EQ(c.detector.k_sigma, 4.0);
  EXPECT_EQ(c.detector.min_rise, 0.05);
  EXPECT_EQ(c.rollback_steps, 100);
  EXPECT_EQ(c.active_steps, 1000);
  EXPECT_EQ(c.max_rollbacks, 3);
}

// A toy training state: parameters, an optimizer moment, a step count and a router bias, each a
// distinct function of the step, so restoring the wrong step's state is visible.
struct ToyState {
  Mat w;
  Mat moment;
  std::int64_t optimizer_step = 0;
  Vec bias;
};
ToyState toy(std::int64_t s) {
  ToyState st{Mat::Constant(2, 3, 0.5 * static_cast<double>(s) + 1.0 / 3.0),
              Mat::Constant(2, 3, std::sqrt(static_cast<double>(s) + 2.0)), s, Vec::Constant(4, 0.001 * s)};
  return st;
}
bool same(const ToyState& a, const ToyState& b) {
  return bit_equal(a.w, b.w) && bit_equal(a.moment, b.moment) && a.optimizer_step == b.optimizer_step &&
         bit_equal(a.bias, b.bias);
}
// The loss of step t: 2 + 0.5·(t mod 2) (μ = 2.25, σ = 0.25 over an even window).
double toy_loss(std::int64_t t) { return 2.0 + 0.5 * static_cast<double>(t % 2); }

TEST(AnticipatoryRoutingController, RollbackRestoresTheStateAndRoutesWithTheStateOfDeltaTEarlier) {
  AnticipatoryRoutingConfig cfg;
  cfg.delta_t = 2;
  cfg.detector = {4, 4.0, 0.05};  // threshold 2.25 + max(1, 0.1125) = 3.25
  cfg.rollback_steps = 3;
  cfg.active_steps = 5;
  cfg.max_rollbacks = 1;
  AnticipatoryRoutingController<ToyState> ctl(cfg, toy(0));
  std::deque<double> history_at_7;
  for (std::int64_t t = 0; t < 10; ++t) {
    ASSERT_EQ(ctl.step(), t);
    EXPECT_FALSE(ctl.active());
    EXPECT_EQ(ctl.routing_step(), t);  // off: normal routing
    EXPECT_TRUE(same(ctl.state(), toy(t)));
    if (t == 7) history_at_7 = ctl.detector().history();
    ASSERT_EQ(ctl.finish(toy_loss(t), toy(t + 1)), StepOutcome::kApplied);
  }
  // Step 10 spikes (3.25 would not: the threshold itself).
  EXPECT_FALSE(ctl.detector().is_spike(3.25));
  ToyState spiked = toy(11);
  spiked.w(0, 0) = 1e9;
  EXPECT_EQ(ctl.finish(3.5, spiked), StepOutcome::kRolledBack);
  EXPECT_EQ(ctl.step(), 7);  // s − R
  EXPECT_TRUE(same(ctl.state(), toy(7)));
  EXPECT_EQ(ctl.detector().history(), history_at_7);
  EXPECT_TRUE(ctl.active());
  EXPECT_EQ(ctl.active_since(), 7);
  // Active window 7..11: batch t routed with the state of step max(t − 2, 7).
  for (std::int64_t t = 7; t < 12; ++t) {
    ASSERT_EQ(ctl.step(), t);
    EXPECT_TRUE(ctl.active());
    EXPECT_EQ(ctl.routing_step(), std::max<std::int64_t>(t - 2, 7));
    EXPECT_TRUE(same(ctl.routing_state(), toy(std::max<std::int64_t>(t - 2, 7))));
    ASSERT_EQ(ctl.finish(toy_loss(t), toy(t + 1)), StepOutcome::kApplied);
  }
  EXPECT_FALSE(ctl.active());  // reverted to standard training after A = 5 steps
  EXPECT_EQ(ctl.routing_step(), 12);
}

TEST(AnticipatoryRoutingController, RollbackStopsAtTheFirstStepAndRepeatedSpikesAreUnrecovered) {
  AnticipatoryRoutingConfig cfg;
  cfg.delta_t = 1;
  cfg.rollback_steps = 5;
  cfg.active_steps = 3;
  cfg.max_rollbacks = 2;
  AnticipatoryRoutingController<ToyState> ctl(cfg, toy(100), 100);
  ASSERT_EQ(ctl.finish(1.0, toy(101)), StepOutcome::kApplied);
  ASSERT_EQ(ctl.finish(1.0, toy(102)), StepOutcome::kApplied);
  EXPECT_EQ(ctl.finish(NAN, toy(103)), StepOutcome::kRolledBack);  // a NaN loss is a spike
  EXPECT_EQ(ctl.step(), 100);                                      // not before the first step
  EXPECT_TRUE(same(ctl.state(), toy(100)));
  EXPECT_EQ(ctl.finish(INFINITY, toy(101)), StepOutcome::kRolledBack);  // second, inside the window
  EXPECT_EQ(ctl.rollbacks(), 2);
  EXPECT_EQ(ctl.finish(NAN, toy(101)), StepOutcome::kUnrecovered);
  EXPECT_TRUE(same(ctl.state(), toy(100)));
  EXPECT_THROW(ctl.finish(1.0, toy(101)), std::logic_error);
}

TEST(AnticipatoryRoutingController, BadParametersAreRefused) {
  AnticipatoryRoutingConfig cfg;
  cfg.delta_t = -1;
  EXPECT_THROW(AnticipatoryRoutingController<ToyState>(cfg, toy(0)), std::invalid_argument);
  cfg = {};
  cfg.active_steps = 0;
  EXPECT_THROW(AnticipatoryRoutingController<ToyState>(cfg, toy(0)), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
