// The MoE gate (spec 03 §3.1; gate.hpp): selection by biased scores, weights from the original
// scores, hash routing, score functions, fp32 logits, the exact-mode certified routing cut (bound
// checked against Mp50, constructed near-tie re-decided), determinism and bad input. Expected
// values are worked out by hand in the comments; tolerances are derived next to them.
#include "dsv4/model/gate.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "support/expect_errors.hpp"
#include "support/mat_bits.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const Precision kExact(Mode::kExact);
const Precision kOfficial(Mode::kOfficial);

ModelConfig tiny() { return builtin_config("tiny"); }  // E = 8, k = 2, d = 256, V = 1024, 3 hash layers
constexpr std::int64_t kScoreLayer = 3;                // first score-routed layer of tiny

std::vector<std::int64_t> ids(std::int64_t T, std::int64_t first = 0) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t) v[static_cast<std::size_t>(t)] = first + 7 * t;
  return v;
}

using test::bit_equal;

// A gate whose logits are hand-set: W_e = c_e · e₀ (only column 0 non-zero) and x = e₀, so
// ℓ_e = c_e exactly in both modes (one non-zero product; c_e bf16).
struct HandGate {
  ModelConfig c;
  GateWeights w;
  Mat x;
};
HandGate hand_gate(const std::vector<double>& logits, const std::vector<double>& bias) {
  HandGate h{tiny(), {}, Mat::Zero(1, 256)};
  Mat W = Mat::Zero(h.c.n_routed_experts, h.c.dim);
  for (std::size_t e = 0; e < logits.size(); ++e) W(static_cast<Eigen::Index>(e), 0) = logits[e];
  h.w.weight = LinearWeight::bf16_from(W);
  h.w.bias = Eigen::Map<const Vec>(bias.data(), static_cast<Eigen::Index>(bias.size()));
  h.x(0, 0) = 1.0;
  return h;
}

double sqrtsoftplus(double l) { return std::sqrt(l > 0 ? l + std::log1p(std::exp(-l)) : std::log1p(std::exp(l))); }

TEST(Gate, BiasChoosesButDoesNotWeigh) {
  // logits 3, 2, 1, 0, −1, −2, −3, −4. No bias: top-2 = {0, 1}. Bias +2 on expert 7:
  // ŝ_7 = sqrtsoftplus(−4) + 2 ≈ 2.134 > ŝ_0 = sqrtsoftplus(3) ≈ 1.756 → top-2 = {7, 0}.
  const std::vector<double> l{3, 2, 1, 0, -1, -2, -3, -4};
  for (const Precision& p : {kExact, kOfficial}) {
    HandGate h0 = hand_gate(l, std::vector<double>(8, 0.0));
    HandGate h1 = hand_gate(l, {0, 0, 0, 0, 0, 0, 0, 2.0});
    const Gate g0(p, h0.c, kScoreLayer, h0.w), g1(p, h1.c, kScoreLayer, h1.w);
    const GateOutput o0 = g0.forward(h0.x, {5}), o1 = g1.forward(h1.x, {5});
    EXPECT_EQ(o0.indices, (std::vector<std::int64_t>{0, 1}));
    EXPECT_EQ(o1.indices, (std::vector<std::int64_t>{7, 0}));
    EXPECT_TRUE(bit_equal(o0.scores, o1.scores));  // scores are the unbiased ones
    // Weights from the original scores: w = rs · s_e / (s_7 + s_0), not from s + b.
    const double s0 = o1.scores(0, 0), s7 = o1.scores(0, 7);
    EXPECT_NEAR(s7, sqrtsoftplus(-4), 1e-6);
    EXPECT_NEAR(s0, sqrtsoftplus(3), 1e-6);
    EXPECT_EQ(o1.weights(0, 0), p.mul(p.div(s7, p.add(s7, s0)), 2.5));
    EXPECT_EQ(o1.weights(0, 1), p.mul(p.div(s0, p.add(s7, s0)), 2.5));
    EXPECT_GT(std::abs(o1.weights(0, 0) - 2.5 * (s7 + 2.0) / (s7 + 2.0 + s0)), 0.5);
    // A uniform bias shift changes neither choice nor weights (bit for bit).
    HandGate h2 = hand_gate(l, std::vector<double>(8, 0.25));
    const GateOutput o2 = Gate(p, h2.c, kScoreLayer, h2.w).forward(h2.x, {5});
    EXPECT_EQ(o2.indices, o0.indices);
    EXPECT_TRUE(bit_equal(o2.weights, o0.weights));
    // margin of the biased cut: kth = ŝ_0, next = ŝ_1 (no bias: sqrtsoftplus(3) vs (2)).
    EXPECT_EQ(o0.margins[0].kth, o0.scores(0, 1));
    EXPECT_EQ(o0.margins[0].next, o0.scores(0, 2));
    EXPECT_EQ(o0.margins[0].gap, o0.scores(0, 1) - o0.scores(0, 2));
  }
}

// Exact mode: Σ_j w_j = rs·(Σ_j s_j/Σ̂)(1+δ) with Σ̂ = Σ s_j(1+θ), |θ| ≤ γ_{k−1} (double sum), one
// rounding for each division and each × rs (u each), plus the test's own double sum of the w_j
// (γ_{k−1}): |Σ w − rs| ≤ rs·(2γ_{k−1} + 2u)·(1 + 10⁻³) + γ_{k−1}·rs(1 + 10⁻³) ≤ rs·(3γ_k + 3u).
// Official mode: Σ = fl32(Σ s) = Σ s(1+θ), |θ| ≤ 2⁻²⁴; each weight rounds twice in fp32; the test
// sums exactly (k fp32 values): |Σ w − rs| ≤ rs·((1 + 2⁻²⁴)²/(1 − 2⁻²⁴) − 1) ≤ rs·3.01·2⁻²⁴.
TEST(Gate, WeightsSumToRouteScale) {
  for (ScoreFunc f : {ScoreFunc::kSqrtSoftplus, ScoreFunc::kSigmoid}) {
    for (const Precision& p : {kExact, kOfficial}) {
      ModelConfig c = tiny();
      c.score_func = f;
      c.n_activated_experts = 3;
      const Mat x = test::random_bf16_matrix(32, c.dim, 11, 1, 1.0);
      for (std::int64_t layer : {std::int64_t{0}, kScoreLayer}) {
        const Gate g(p, c, layer, GateWeights::synthetic(c, layer, 5));
        const GateOutput o = g.forward(x, ids(32));
        const double rs = c.route_scale;
        const double tol = p.official() ? rs * 3.01 * 0x1.0p-24 : rs * (3.0 * gamma_n(3) + 3.0 * 0x1.0p-53);
        for (std::int64_t t = 0; t < 32; ++t) {
          std::vector<double> w(o.weights.row(t).data(), o.weights.row(t).data() + 3);
          EXPECT_LE(std::abs(exact_sum_to_double(w) - rs), tol) << "token " << t << " layer " << layer;
        }
      }
    }
  }
}

TEST(Gate, FlashSliceWeightsSumToRouteScale) {
  // flash-slice: d = 4096, E = 8, k = 6, route_scale 1.5; bounds as in WeightsSumToRouteScale.
  const ModelConfig c = builtin_config("flash-slice");
  const Mat x = test::random_bf16_matrix(8, c.dim, 12, 1, 1.0);
  for (const Precision& p : {kExact, kOfficial}) {
    for (std::int64_t layer : {std::int64_t{0}, std::int64_t{2}}) {
      const GateOutput o = Gate(p, c, layer, GateWeights::synthetic(c, layer, 3)).forward(x, ids(8));
      const double tol = p.official() ? 1.5 * 3.01 * 0x1.0p-24 : 1.5 * (3.0 * gamma_n(6) + 3.0 * 0x1.0p-53);
      for (std::int64_t t = 0; t < 8; ++t) {
        std::vector<double> w(o.weights.row(t).data(), o.weights.row(t).data() + 6);
        EXPECT_LE(std::abs(exact_sum_to_double(w) - 1.5), tol);
        std::vector<std::int64_t> e(o.indices.begin() + t * 6, o.indices.begin() + t * 6 + 6);
        std::sort(e.begin(), e.end());
        EXPECT_EQ(std::adjacent_find(e.begin(), e.end()), e.end());
      }
    }
  }
}

TEST(Gate, HashRoutingFollowsTheTableAndIgnoresX) {
  const ModelConfig c = tiny();
  const GateWeights w = GateWeights::synthetic(c, 1, 9);
  ASSERT_TRUE(w.bias.size() == 0);
  ASSERT_EQ(static_cast<std::int64_t>(w.tid2eid.size()), c.vocab_size * 2);
  for (const Precision& p : {kExact, kOfficial}) {
    const Gate g(p, c, 1, w);
    EXPECT_TRUE(g.hash());
    const std::vector<std::int64_t> tok{0, 17, 1023, 17};
    const Mat xa = test::random_bf16_matrix(4, c.dim, 3, 1, 1.0);
    const Mat xb = test::random_bf16_matrix(4, c.dim, 3, 2, 5.0);
    const GateOutput a = g.forward(xa, tok), b = g.forward(xb, tok);
    EXPECT_EQ(a.indices, b.indices);
    for (std::size_t t = 0; t < tok.size(); ++t) {
      for (std::size_t j = 0; j < 2; ++j)
        EXPECT_EQ(a.indices[t * 2 + j], w.tid2eid[static_cast<std::size_t>(tok[t]) * 2 + j]);
      EXPECT_EQ(a.margins[t].gap, kInf);
      EXPECT_FALSE(a.margins[t].redecided);
      // weights still come from the gate's scores of x: different x, different weights
      EXPECT_EQ(a.weights(static_cast<Eigen::Index>(t), 0),
                p.mul(p.div(a.scores(static_cast<Eigen::Index>(t), a.indices[t * 2]),
                            p.sum(std::vector<double>{a.scores(static_cast<Eigen::Index>(t), a.indices[t * 2]),
                                                      a.scores(static_cast<Eigen::Index>(t), a.indices[t * 2 + 1])}
                                      .data(),
                                  2)),
                      2.5));
    }
    EXPECT_FALSE(bit_equal(a.weights, b.weights));
  }
  // The MTP block's layer id n_layers is score-routed (it has a bias, no table).
  EXPECT_FALSE(Gate(kOfficial, c, c.n_layers, GateWeights::synthetic(c, c.n_layers, 9)).hash());
  EXPECT_TRUE(GateWeights::synthetic(c, c.n_layers, 9).tid2eid.empty());
}

TEST(Gate, SyntheticTableRowsAreDistinctAndDeterministic) {
  const ModelConfig c = builtin_config("flash-slice");  // E = 8, k = 6: rows are 6 of 8 experts
  const GateWeights a = GateWeights::synthetic(c, 0, 4), b = GateWeights::synthetic(c, 0, 4);
  EXPECT_EQ(a.tid2eid, b.tid2eid);
  EXPECT_NE(a.tid2eid, GateWeights::synthetic(c, 0, 5).tid2eid);
  std::vector<std::int64_t> count(8, 0);
  for (std::int64_t v = 0; v < c.vocab_size; ++v) {
    std::vector<std::int64_t> row(a.tid2eid.begin() + v * 6, a.tid2eid.begin() + v * 6 + 6);
    for (auto e : row) ++count[static_cast<std::size_t>(e)];
    std::sort(row.begin(), row.end());
    EXPECT_EQ(std::adjacent_find(row.begin(), row.end()), row.end());
  }
  // each expert is left out of a row with probability 2/8: expected count V·6/8 = 3072 per expert,
  // standard deviation √(V·(3/4)(1/4)) ≈ 27.7; 10σ = 277 (a broken shuffle is far off).
  for (auto n : count) EXPECT_NEAR(static_cast<double>(n), 3072.0, 277.0);
}

TEST(Gate, ScoreFunctionsByHand) {
  // logits 1, 0.5, 0, … (hand gate): softmax, sigmoid and sqrtsoftplus scores.
  const std::vector<double> l{1, 0.5, 0, -0.5, -1, -1.5, -2, -2.5};
  std::vector<Mat> scores;
  for (ScoreFunc f : {ScoreFunc::kSqrtSoftplus, ScoreFunc::kSigmoid, ScoreFunc::kSoftmax}) {
    HandGate h = hand_gate(l, std::vector<double>(8, 0.0));
    h.c.score_func = f;
    const GateOutput o = Gate(kExact, h.c, kScoreLayer, h.w).forward(h.x, {1});
    double z = 0;
    for (double v : l) z += std::exp(v);
    for (std::int64_t e = 0; e < 8; ++e) {
      const double want = f == ScoreFunc::kSqrtSoftplus ? sqrtsoftplus(l[static_cast<std::size_t>(e)])
                          : f == ScoreFunc::kSigmoid    ? 1.0 / (1.0 + std::exp(-l[static_cast<std::size_t>(e)]))
                                                        : std::exp(l[static_cast<std::size_t>(e)]) / z;
      EXPECT_NEAR(o.scores(0, e), want, 1e-15);
    }
    // softmax weights are not normalised: Σ w = rs·(s_0 + s_1) < rs; the others sum to rs.
    const double sum_w = o.weights(0, 0) + o.weights(0, 1);
    if (f == ScoreFunc::kSoftmax) {
      EXPECT_NEAR(sum_w, 2.5 * (std::exp(1.0) + std::exp(0.5)) / z, 1e-14);
    } else {
      EXPECT_NEAR(sum_w, 2.5, 1e-14);
    }
    scores.push_back(o.scores);
  }
  EXPECT_GT((scores[0] - scores[2]).cwiseAbs().maxCoeff(), 0.1);
  EXPECT_GT((scores[0] - scores[1]).cwiseAbs().maxCoeff(), 0.1);
}

TEST(Gate, OfficialLogitsAreFp32NotBf16) {
  // x = (1, 2⁻⁶, 0…), W_0 = (1, 2⁻⁶, 0…): ℓ_0 = 1 + 2⁻¹² — an fp32 value that bf16 would round to 1.
  // Official sigmoid score: σ_C2(1 + 2⁻¹²) ≠ σ_C2(1).
  HandGate h = hand_gate({1, 0, 0, 0, 0, 0, 0, 0}, std::vector<double>(8, 0.0));
  h.c.score_func = ScoreFunc::kSigmoid;
  Mat W = h.w.weight.values();
  W(0, 1) = 0x1.0p-6;
  h.w.weight = LinearWeight::bf16_from(W);
  h.x(0, 1) = 0x1.0p-6;
  const GateOutput o = Gate(kOfficial, h.c, kScoreLayer, h.w).forward(h.x, {2});
  EXPECT_EQ(o.scores(0, 0), static_cast<double>(sigmoid_c2(1.0f + 0x1.0p-12f)));
  EXPECT_NE(o.scores(0, 0), static_cast<double>(sigmoid_c2(1.0f)));
  EXPECT_EQ(o.scores(0, 1), 0.5);
}

TEST(Gate, OfficialSqrtSoftplusThreshold) {
  // PyTorch softplus threshold 20: ℓ = 24 → softplus = 24 exactly, score = fl32(√24).
  HandGate h = hand_gate({24, 0, 0, 0, 0, 0, 0, 0}, std::vector<double>(8, 0.0));
  const GateOutput o = Gate(kOfficial, h.c, kScoreLayer, h.w).forward(h.x, {2});
  EXPECT_EQ(o.scores(0, 0), static_cast<double>(static_cast<float>(std::sqrt(24.0))));
  EXPECT_EQ(o.scores(0, 1), static_cast<double>(static_cast<float>(std::sqrt(static_cast<double>(cr_log1p(1.0f))))));
}

// Mp50 biased score of (t, e) from the gate's inputs.
Mp50 mp50_biased(ScoreFunc f, const Mat& x, std::int64_t t, const Mat& W, const Vec& b, std::int64_t e) {
  using boost::multiprecision::exp;
  using boost::multiprecision::log1p;
  using boost::multiprecision::sqrt;
  std::vector<Mp50> l(static_cast<std::size_t>(W.rows()));
  for (Eigen::Index j = 0; j < W.rows(); ++j) {
    Mp50 a = 0;
    for (Eigen::Index i = 0; i < x.cols(); ++i) a += Mp50(x(t, i)) * Mp50(W(j, i));
    l[static_cast<std::size_t>(j)] = a;
  }
  const Mp50& v = l[static_cast<std::size_t>(e)];
  Mp50 s;
  if (f == ScoreFunc::kSqrtSoftplus) {
    s = sqrt(v > 0 ? Mp50(v + log1p(exp(-v))) : Mp50(log1p(exp(v))));
  } else if (f == ScoreFunc::kSigmoid) {
    s = 1 / (1 + exp(-v));
  } else {
    Mp50 z = 0;
    for (const Mp50& u : l) z += exp(u);
    s = exp(v) / z;
  }
  return s + Mp50(b(e));
}

TEST(Gate, ExactBoundHoldsAgainstMp50AndIsNotVacuous) {
  for (ScoreFunc f : {ScoreFunc::kSqrtSoftplus, ScoreFunc::kSigmoid, ScoreFunc::kSoftmax}) {
    ModelConfig c = tiny();
    c.score_func = f;
    const GateWeights w = GateWeights::synthetic(c, kScoreLayer, 21);
    // wide logits (x scale 8: |ℓ| up to ~30) to exercise the softplus/sigmoid tails
    Mat x = 8.0 * test::random_bf16_matrix(6, c.dim, 2, 7, 1.0);
    x(0, 0) = 1e-3;  // not a bf16 value: exact mode takes any double input
    const GateOutput o = Gate(kExact, c, kScoreLayer, w).forward(x, ids(6));
    ASSERT_EQ(o.score_bounds.rows(), 6);
    // Not vacuous: the logit bound is e_ℓ = γ_{d+2}(1 + 4γ)·Σ|x||w|, and every score function has
    // slope ≤ 1 in ℓ (softmax: a factor ≤ 2e_ℓ(1 + 2e_ℓ) on s ≤ 1), the evaluation errors are
    // ~10⁻¹⁵: every bound must be ≤ 3·max e_ℓ + 10⁻¹⁴.
    Mat absprod(6, 8);
    gemm_nt(6, 8, c.dim, x.data(), c.dim, w.weight.values().data(), c.dim, absprod.data(), 8, 0, true);
    const double g = gamma_n(static_cast<std::size_t>(c.dim) + 2);
    const double limit = 3.0 * g * (1.0 + 4.0 * g) * absprod.maxCoeff() + 1e-14;
    double worst_bound = 0;
    for (std::int64_t t = 0; t < 6; ++t) {
      for (std::int64_t e = 0; e < 8; ++e) {
        const double biased = o.scores(t, e) + w.bias(e);  // the gate's double fl(ŝ + b)
        const Mp50 truth = mp50_biased(f, x, t, w.weight.values(), w.bias, e);
        const double err = static_cast<double>(boost::multiprecision::abs(Mp50(biased) - truth));
        EXPECT_LE(err, o.score_bounds(t, e)) << "t " << t << " e " << e;
        worst_bound = std::max(worst_bound, o.score_bounds(t, e));
      }
    }
    EXPECT_LE(worst_bound, limit) << "score function " << static_cast<int>(f);
    EXPECT_LT(limit, 1e-10);
    EXPECT_EQ(o.decisions.redecided, 0);
  }
}

TEST(Gate, ExactBoundHoldsInTheTails) {
  // Hand logits across the softplus threshold and into the underflow range of exp (−745, −800,
  // −2000): every bound still covers the Mp50 truth.
  const std::vector<double> l{30, 21, 19, -30, -600, -744, -800, -2000};
  for (ScoreFunc f : {ScoreFunc::kSqrtSoftplus, ScoreFunc::kSigmoid, ScoreFunc::kSoftmax}) {
    HandGate h = hand_gate(l, {0.5, -0.25, 0, 0, 0.125, 0, 0, 1});
    h.c.score_func = f;
    const GateOutput o = Gate(kExact, h.c, kScoreLayer, h.w).forward(h.x, {4});
    for (std::int64_t e = 0; e < 8; ++e) {
      const Mp50 truth = mp50_biased(f, h.x, 0, h.w.weight.values(), h.w.bias, e);
      const double err = static_cast<double>(boost::multiprecision::abs(Mp50(o.scores(0, e) + h.w.bias(e)) - truth));
      EXPECT_LE(err, o.score_bounds(0, e)) << "f " << static_cast<int>(f) << " e " << e;
    }
  }
}

TEST(Gate, ExactNearTieIsRedecidedInMp50) {
  // x = (1, 2⁻³⁰, 0…). W_0 = (5, 0) → ℓ_0 = 5; W_1 = (1, 0) → ℓ_1 = 1; W_3 = (1, 2⁻³⁰) → ℓ_3 = 1 + 2⁻⁶⁰
  // exactly, but the double GEMM rounds fl(1 + 2⁻⁶⁰) = 1: the double scores of experts 1 and 3 tie
  // and C4 would take expert 1 (lower index). The truth: ŝ_3 > ŝ_1, so the cut (k = 2) must be
  // re-decided in Mp50 and choose {0, 3}. Other experts: ℓ = −5.
  for (ScoreFunc f : {ScoreFunc::kSqrtSoftplus, ScoreFunc::kSigmoid, ScoreFunc::kSoftmax}) {
    HandGate h = hand_gate({5, 1, -5, 1, -5, -5, -5, -5}, std::vector<double>(8, 0.0));
    h.c.score_func = f;
    Mat W = h.w.weight.values();
    W(3, 1) = 0x1.0p-30;
    h.w.weight = LinearWeight::bf16_from(W);
    h.x(0, 1) = 0x1.0p-30;
    const GateOutput o = Gate(kExact, h.c, kScoreLayer, h.w).forward(h.x, {3});
    EXPECT_EQ(o.scores(0, 1), o.scores(0, 3));  // the double computation cannot tell them apart
    EXPECT_EQ(o.indices, (std::vector<std::int64_t>{0, 3}));
    EXPECT_TRUE(o.margins[0].redecided);
    EXPECT_EQ(o.decisions.redecided, 1);
    EXPECT_EQ(o.decisions.flipped, 1);
    EXPECT_GT(o.margins[0].bound, 0.0);
    // official mode sees the fp32 logits 1 and 1 + 2⁻⁶⁰ → 1: an exact tie, C4 picks expert 1.
    const GateOutput off = Gate(kOfficial, h.c, kScoreLayer, h.w).forward(h.x, {3});
    EXPECT_EQ(off.indices, (std::vector<std::int64_t>{0, 1}));
    EXPECT_EQ(off.margins[0].gap, 0.0);
    EXPECT_FALSE(off.margins[0].redecided);
  }
  // The same construction with the tie broken the other way by a bias that the double sees:
  // bias −2⁻²⁰ on expert 3 decides the cut for expert 1 without any re-decision.
  HandGate h = hand_gate({5, 1, -5, 1, -5, -5, -5, -5}, {0, 0, 0, -0x1.0p-20, 0, 0, 0, 0});
  Mat W = h.w.weight.values();
  W(3, 1) = 0x1.0p-30;
  h.w.weight = LinearWeight::bf16_from(W);
  h.x(0, 1) = 0x1.0p-30;
  const GateOutput o = Gate(kExact, h.c, kScoreLayer, h.w).forward(h.x, {3});
  EXPECT_EQ(o.indices, (std::vector<std::int64_t>{0, 1}));
  EXPECT_FALSE(o.margins[0].redecided);
}

TEST(Gate, OfficialIsBitIdenticalAcrossThreadsRunsAndBatches) {
  const ModelConfig c = tiny();
  const GateWeights w = GateWeights::synthetic(c, kScoreLayer, 2);
  const Mat x = test::random_bf16_matrix(24, c.dim, 8, 3, 1.0);
  const Gate g(kOfficial, c, kScoreLayer, w);
  set_gemm_threads(1);
  const GateOutput a = g.forward(x, ids(24));
  set_gemm_threads(2);
  const GateOutput b = g.forward(x, ids(24));
  set_gemm_threads(0);
  EXPECT_TRUE(bit_equal(a.weights, b.weights));
  EXPECT_TRUE(bit_equal(a.scores, b.scores));
  EXPECT_EQ(a.indices, b.indices);
  for (std::int64_t t = 0; t < 24; ++t) {  // one token at a time: the same bits (C1 is batch invariant)
    const GateOutput r = g.forward(x.middleRows(t, 1), {ids(24)[static_cast<std::size_t>(t)]});
    EXPECT_TRUE(bit_equal(r.weights, a.weights.middleRows(t, 1)));
    EXPECT_EQ(r.indices[0], a.indices[static_cast<std::size_t>(2 * t)]);
    EXPECT_EQ(r.indices[1], a.indices[static_cast<std::size_t>(2 * t + 1)]);
  }
}

using testing_support::expect_invalid;

TEST(Gate, BadInputNamesTheField) {
  const ModelConfig c = tiny();
  const Mat x = test::random_bf16_matrix(2, c.dim, 1, 1, 1.0);
  for (std::int64_t layer : {std::int64_t{0}, kScoreLayer}) {
    const Gate g(kOfficial, c, layer, GateWeights::synthetic(c, layer, 1));
    expect_invalid([&] { g.forward(x, {0, -1}); }, "token_ids");
    expect_invalid([&] { g.forward(x, {0, c.vocab_size}); }, "token_ids");
    expect_invalid([&] { g.forward(x, {0}); }, "token_ids");
    expect_invalid([&] { g.forward(Mat::Zero(2, c.dim - 1), {0, 1}); }, "x");
  }
  GateWeights dup = GateWeights::synthetic(c, 0, 1);
  dup.tid2eid[5 * 2 + 1] = dup.tid2eid[5 * 2];
  expect_invalid([&] { Gate(kExact, c, 0, dup); }, "tid2eid");
  GateWeights range = GateWeights::synthetic(c, 0, 1);
  range.tid2eid[7] = c.n_routed_experts;
  expect_invalid([&] { Gate(kExact, c, 0, range); }, "tid2eid");
  range.tid2eid[7] = -1;
  expect_invalid([&] { Gate(kExact, c, 0, range); }, "tid2eid");
  GateWeights short_table = GateWeights::synthetic(c, 0, 1);
  short_table.tid2eid.pop_back();
  expect_invalid([&] { Gate(kExact, c, 0, short_table); }, "tid2eid");
  GateWeights no_bias = GateWeights::synthetic(c, kScoreLayer, 1);
  no_bias.bias.resize(3);
  expect_invalid([&] { Gate(kExact, c, kScoreLayer, no_bias); }, "gate.bias");
  GateWeights shape = GateWeights::synthetic(c, kScoreLayer, 1);
  shape.weight = LinearWeight::bf16_from(Mat::Zero(7, c.dim));
  expect_invalid([&] { Gate(kExact, c, kScoreLayer, shape); }, "gate.weight");
  expect_invalid([&] { Gate(kExact, c, c.n_layers + c.n_mtp_layers, GateWeights::synthetic(c, kScoreLayer, 1)); },
                 "layer");
}

}  // namespace
}  // namespace dsv4
