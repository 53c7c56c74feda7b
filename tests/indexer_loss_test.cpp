// The Lightning Indexer's training signal (spec 06 §6.16; ref/train/indexer_loss.hpp): hand-derived
// KL values, the ReLU's mask, the main attention's target and bad input. The backward is checked
// against 50-digit differences by tests/gradient_check_test (registered op `indexer_loss`).
#include "dsv4/train/indexer_loss.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <stdexcept>

namespace dsv4 {
namespace {

IndexLists lists(std::int64_t rows, std::int64_t width, std::initializer_list<std::int32_t> v) {
  IndexLists l(rows, width);
  std::copy(v.begin(), v.end(), l.data.begin());
  return l;
}

// One head, c = 1, q = 1, ω = 1, keys (1, 2, 3): s = I = (1, 2, 3), q = softmax(1, 2, 3).
struct Hand {
  Mat q = Mat::Constant(1, 1, 1.0);
  Mat w = Mat::Constant(1, 1, 1.0);
  Mat keys = (Mat(3, 1) << 1.0, 2.0, 3.0).finished();
  IndexLists sel = lists(1, 3, {0, 1, 2});
};

TEST(IndexerLoss, HandDerivedValues) {
  const Hand h;
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  // p = (1/2, 1/2, 0): L = Σ p log p − Σ p I + lse = −ln 2 − 3/2 + lse.
  const Mat half = (Mat(1, 3) << 1.0, 1.0, 0.0).finished();
  EXPECT_NEAR(indexer_kl_loss(h.q, h.w, h.keys, h.sel, half)(0), -std::log(2.0) - 1.5 + lse, 1e-15);
  // p = q (any scale of the target: it is renormalised): L = 0 and every gradient 0.
  Mat same(1, 3);
  for (int j = 0; j < 3; ++j) same(0, j) = 5.0 * std::exp(1.0 + j - lse);
  EXPECT_NEAR(indexer_kl_loss(h.q, h.w, h.keys, h.sel, same)(0), 0.0, 1e-15);
  const IndexerLossGrads g = indexer_kl_loss_backward(h.q, h.w, h.keys, h.sel, same, Vec::Ones(1));
  EXPECT_LE(g.dq.cwiseAbs().maxCoeff() + g.dweights.cwiseAbs().maxCoeff() + g.dkeys.cwiseAbs().maxCoeff(), 1e-15);
  // p = (1/2, 1/2, 0): dI = q − p; dω = Σ dI_j s_j; dq = ω Σ dI_j K_j (= dω here); dK_j = ω q dI_j.
  const IndexerLossGrads d = indexer_kl_loss_backward(h.q, h.w, h.keys, h.sel, half, Vec::Constant(1, 2.0));
  double dw = 0.0;
  for (int j = 0; j < 3; ++j) {
    const double dij = 2.0 * (std::exp(1.0 + j - lse) - half(0, j) / 2.0);
    dw += dij * (1.0 + j);
    EXPECT_NEAR(d.dkeys(j, 0), dij, 1e-14);  // a few ulps of values ≈ 1
  }
  EXPECT_NEAR(d.dweights(0, 0), dw, 1e-14);
  EXPECT_NEAR(d.dq(0, 0), dw, 1e-14);
}

// q = −1: every s < 0, I ≡ 0, the indexer's distribution uniform whatever ω; no gradient reaches q,
// ω or the keys through the ReLU (a backward without the mask would give dq ≠ 0).
TEST(IndexerLoss, TheReluPassesNoGradientBelowZero) {
  Hand h;
  h.q(0, 0) = -1.0;
  const Mat t = (Mat(1, 3) << 1.0, 0.0, 0.0).finished();
  EXPECT_NEAR(indexer_kl_loss(h.q, h.w, h.keys, h.sel, t)(0), std::log(3.0), 1e-15);  // KL(δ ‖ uniform)
  const IndexerLossGrads g = indexer_kl_loss_backward(h.q, h.w, h.keys, h.sel, t, Vec::Ones(1));
  EXPECT_EQ(g.dq(0, 0), 0.0);
  EXPECT_EQ(g.dweights(0, 0), 0.0);
  EXPECT_EQ(g.dkeys.cwiseAbs().maxCoeff(), 0.0);
}

// −1 entries are not candidates; a row with none has loss 0.
TEST(IndexerLoss, MissingEntriesAndEmptyRows) {
  const Hand h;
  const Mat q = Mat::Constant(2, 1, 1.0), w = Mat::Constant(2, 1, 1.0);
  const Mat t = (Mat(2, 3) << 1.0, 7.0, 1.0, 1.0, 1.0, 1.0).finished();
  const Vec l = indexer_kl_loss(q, w, h.keys, lists(2, 3, {2, -1, 0, -1, -1, -1}), t);
  const double lse = std::log(std::exp(3.0) + std::exp(1.0));  // entries 2 and 0, p = (1/2, 1/2)
  EXPECT_NEAR(l(0), -std::log(2.0) - 2.0 + lse, 1e-15);
  EXPECT_EQ(l(1), 0.0);
}

// Main attention with q = 0: every score 0, so with sink 0 each of the n valid entries and the sink
// has probability 1/(n + 1) per head; H = 2 → a = 2/(n + 1) at each selected entry the list holds.
// List of row 0: window rows 0, 1, then compressed entries 0, 2 at offset 4 (kv rows 4, 6); the
// selection (2, 0, 1) lists entry 1, which the main list does not hold: a = 0 there.
TEST(IndexerLoss, TargetIsTheMainAttentionSummedOverHeads) {
  const Mat q_main = Mat::Zero(2, 3);
  const Mat kv = Mat::Ones(7, 3);
  const Vec sink = Vec::Zero(2);
  const Mat a =
      indexer_attention_target(q_main, 2, kv, sink, lists(1, 5, {0, 1, 4, -1, 6}), 0.125, 4, lists(1, 3, {2, 0, 1}));
  EXPECT_NEAR(a(0, 0), 2.0 / 5.0, 1e-16);
  EXPECT_NEAR(a(0, 1), 2.0 / 5.0, 1e-16);
  EXPECT_EQ(a(0, 2), 0.0);
  // A sink of ln 3 in head 1 takes 3 shares there: a = 1/5 + 1/7.
  const Vec sink2 = (Vec(2) << 0.0, std::log(3.0)).finished();
  const Mat b =
      indexer_attention_target(q_main, 2, kv, sink2, lists(1, 5, {0, 1, 4, -1, 6}), 0.125, 4, lists(1, 3, {2, 0, 1}));
  EXPECT_NEAR(b(0, 0), 0.2 + 1.0 / 7.0, 1e-15);
}

TEST(IndexerLoss, BadInputThrows) {
  const Hand h;
  const Mat t = Mat::Ones(1, 3);
  EXPECT_THROW(indexer_kl_loss(h.q, h.w, h.keys, lists(1, 3, {0, 0, 1}), t), std::invalid_argument);  // twice
  EXPECT_THROW(indexer_kl_loss(h.q, h.w, h.keys, lists(1, 3, {0, 3, 1}), t), std::invalid_argument);  // outside
  EXPECT_THROW(indexer_kl_loss(h.q, h.w, h.keys, h.sel, -t), std::invalid_argument);
  EXPECT_THROW(indexer_kl_loss(h.q, h.w, h.keys, h.sel, Mat::Zero(1, 3)), std::invalid_argument);  // no mass
  EXPECT_THROW(indexer_kl_loss(h.q, Mat::Ones(1, 2), h.keys, h.sel, t), std::invalid_argument);    // heads
  EXPECT_THROW(indexer_kl_loss(Mat::Constant(1, 1, NAN), h.w, h.keys, h.sel, t), std::invalid_argument);
  EXPECT_THROW(indexer_kl_loss_backward(h.q, h.w, h.keys, h.sel, t, Vec::Ones(2)), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
