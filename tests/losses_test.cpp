// The losses of the training half (spec 06 §6.4–6.5, ref/train/cross_entropy.hpp and
// balance_loss.hpp): hand-derived values of the cross-entropy, the MTP weight schedule, the
// sequence-wise balance loss (its frequencies and the unbiased scores) and the auxiliary-loss-free
// bias update. The backwards are checked against 50-digit differences by tests/gradient_check_test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "dsv4/train/balance_loss.hpp"
#include "dsv4/train/cross_entropy.hpp"

namespace dsv4 {
namespace {

// Logits (0, ln 2, ln 5) → probabilities (1, 2, 5)/8: c = ln 8 − ln(weight of the target).
TEST(CrossEntropy, HandDerivedValues) {
  Mat l(2, 3);
  l << 0.0, std::log(2.0), std::log(5.0), 1000.0, 1000.0 + std::log(2.0), 1000.0 + std::log(5.0);
  const Vec c = token_cross_entropy(l, {0, 2});
  EXPECT_NEAR(c(0), std::log(8.0), 1e-15);
  EXPECT_NEAR(c(1), std::log(8.0 / 5.0), 1e-12);  // a shift of 1000 changes nothing (max subtracted)
  EXPECT_NEAR(lm_loss(l, {0, 2}), (std::log(8.0) + std::log(1.6)) / 2, 1e-12);
  Vec dc(2);
  dc << 1.0, 0.5;
  const Mat d = cross_entropy_backward(l, {0, 2}, dc);
  const double want[2][3] = {{1.0 / 8 - 1, 2.0 / 8, 5.0 / 8}, {0.5 / 8, 1.0 / 8, 2.5 / 8 - 0.5}};
  double worst = 0;
  for (int t = 0; t < 2; ++t) {
    for (int v = 0; v < 3; ++v) worst = std::fmax(worst, std::fabs(d(t, v) - want[t][v]));
  }
  EXPECT_LE(worst, 1e-12);
  std::printf("measured: max |dlogits - hand| %.3g\n", worst);
  EXPECT_NEAR(d.row(0).sum(), 0.0, 1e-15);  // softmax − onehot sums to 0
}

TEST(CrossEntropy, BadInputThrows) {
  const Mat l = Mat::Zero(2, 3);
  EXPECT_THROW(token_cross_entropy(l, {0, 3}), std::invalid_argument);
  EXPECT_THROW(token_cross_entropy(l, {0}), std::invalid_argument);
  EXPECT_THROW(token_cross_entropy(Mat::Constant(1, 2, NAN), {0}), std::invalid_argument);
  EXPECT_THROW(lm_loss(Mat(0, 3), {}), std::invalid_argument);
  EXPECT_THROW(cross_entropy_backward(l, {0, 1}, Vec::Zero(3)), std::invalid_argument);
}

// 0.3 before the LR decay starts, 0.1 from its first step (report §4.2.2).
TEST(MtpLossWeight, SwitchesAtTheStartOfTheDecay) {
  EXPECT_EQ(mtp_loss_weight(0, 1000), 0.3);
  EXPECT_EQ(mtp_loss_weight(999, 1000), 0.3);
  EXPECT_EQ(mtp_loss_weight(1000, 1000), 0.1);
  EXPECT_EQ(mtp_loss_weight(5000, 1000), 0.1);
  EXPECT_EQ(mtp_loss_weight(0, 0), 0.1);
  EXPECT_THROW(mtp_loss_weight(-1, 10), std::invalid_argument);
}

// T = 2 tokens, E = 4 experts, K = 2: token 0 chooses {0, 1}, token 1 {0, 2}; loads (2, 1, 1, 0),
// f = 4/(2·2)·loads = (2, 1, 1, 0). Scores (1, 1, 1, 1) and (2, 1, 1, 0.5)·… :
//   s'_0 = (1/4, 1/4, 1/4, 1/4), s'_1 = (4, 2, 1, 1)/8 → P = (3/8, 1/4, 3/16, 3/16),
//   L = α(2·3/8 + 1/4 + 3/16) = α·19/16.
TEST(BalanceLoss, HandDerivedValue) {
  Mat s(2, 4);
  s << 1, 1, 1, 1, 4, 2, 1, 1;
  const std::vector<std::int64_t> chosen{0, 1, 0, 2};
  const std::vector<double> f = balance_frequencies(chosen, 2, 4, 2);
  EXPECT_EQ(f, (std::vector<double>{2, 1, 1, 0}));
  EXPECT_NEAR(balance_loss(s, chosen, 2), 1e-4 * 19.0 / 16.0, 1e-19);
  // ∂L/∂s_{j,0} = (α/2)(f_j − Σ f_i s'_i)/4 with Σ f s' = 1: (α/8)(1, 0, 0, −1).
  const Mat d = balance_loss_backward(s, chosen, 2, 1.0);
  EXPECT_NEAR(d(0, 0), 1e-4 / 8, 1e-20);
  EXPECT_NEAR(d(0, 1), 0.0, 1e-20);
  EXPECT_NEAR(d(0, 3), -1e-4 / 8, 1e-20);
  // The loss is scale-invariant per token (s' = s/S): the gradient is orthogonal to each row.
  EXPECT_NEAR(d.row(1).dot(s.row(1)), 0.0, 1e-20);
}

// The affinities are the UNBIASED scores: the same choice with the router bias added to the scores
// gives another loss (the catalogue's "balance loss on the biased scores" must be distinguishable).
TEST(BalanceLoss, UsesTheScoresGivenNotTheBiasedOnes) {
  Mat s(1, 3);
  s << 0.5, 1.0, 2.0;
  Mat biased = s;
  biased(0, 0) += 0.3;
  EXPECT_NE(balance_loss(s, {2}, 1), balance_loss(biased, {2}, 1));
}

TEST(BalanceLoss, BadInputThrows) {
  const Mat s = Mat::Constant(2, 3, 1.0);
  EXPECT_THROW(balance_loss(s, {0}, 1), std::invalid_argument) << "a token without an id";
  EXPECT_THROW(balance_loss(s, {0, 0, 1, 1}, 2), std::invalid_argument) << "a repeated id";
  EXPECT_THROW(balance_loss(s, {0, 3}, 1), std::invalid_argument) << "an id out of range";
  EXPECT_THROW(balance_loss(Mat::Zero(2, 3), {0, 1}, 1), std::invalid_argument) << "scores must be > 0";
  EXPECT_THROW(balance_loss(s, {0, 1}, 4), std::invalid_argument) << "k > experts";
}

// Loads (3, 1, 2, 2): mean 2 → expert 0 overloaded (bias −u), 1 underloaded (+u), 2 and 3 at the
// mean (unchanged).
TEST(RouterBiasUpdate, SignOfTheLoadAgainstTheMean) {
  Vec b(4);
  b << 0.5, -0.25, 0.0, 1.0;
  update_router_bias(b, expert_loads({0, 1, 0, 2, 0, 3, 2, 3}, 4, 4, 2));
  EXPECT_EQ(b(0), 0.5 - 0.001);
  EXPECT_EQ(b(1), -0.25 + 0.001);
  EXPECT_EQ(b(2), 0.0);
  EXPECT_EQ(b(3), 1.0);
  EXPECT_THROW(update_router_bias(b, {1, 2}), std::invalid_argument);
  EXPECT_THROW(update_router_bias(b, {1, 2, -1, 0}), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
