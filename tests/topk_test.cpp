// Top-k with margins (spec 01 §1.11 C4; ref/README.md §Precision design). Expected results are
// worked out by hand in the comments.
#include "dsv4/model/topk.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace dsv4 {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(Topk, DescendingWithTiesByAscendingIndex) {
  // values 1, 3, 3, 2, 3: the three 3s come first in index order 1, 2, 4, then 2 (index 3).
  const std::vector<double> s{1, 3, 3, 2, 3};
  const TopkResult r = topk(s, 4);
  EXPECT_EQ(r.indices, (std::vector<std::int64_t>{1, 2, 4, 3}));
  EXPECT_TRUE(r.margin.has_cut);
  EXPECT_EQ(r.margin.kth, 2.0);
  EXPECT_EQ(r.margin.next, 1.0);
  EXPECT_EQ(r.margin.gap, 1.0);
  EXPECT_EQ(r.margin.bound, 0.0);
  EXPECT_FALSE(r.margin.redecided);
}

TEST(Topk, TieAtTheCutIsDecidedByIndex) {
  // 5, 4, 4: k = 2 takes index 1 (the lower index of the tie); gap 0.
  const std::vector<double> s{5, 4, 4};
  const TopkResult r = topk(s, 2);
  EXPECT_EQ(r.indices, (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(r.margin.gap, 0.0);
}

TEST(Topk, MaskedCandidatesAndFullSelection) {
  const std::vector<double> s{-kInf, 2, -kInf, 1};
  const TopkResult r = topk(s, 3);
  EXPECT_EQ(r.indices, (std::vector<std::int64_t>{1, 3, 0}));  // −∞ ties by index
  EXPECT_EQ(r.margin.gap, kInf);
  const TopkResult all = topk(s, 4);
  EXPECT_FALSE(all.margin.has_cut);
  EXPECT_EQ(all.indices, (std::vector<std::int64_t>{1, 3, 0, 2}));
  const TopkResult two = topk(s, 2);
  EXPECT_EQ(two.margin.next, -kInf);
  EXPECT_EQ(two.margin.gap, kInf);
}

TEST(Topk, BadInput) {
  const std::vector<double> s{1, 2};
  EXPECT_THROW(topk(s, 3), std::invalid_argument);
  EXPECT_THROW(topk(s, -1), std::invalid_argument);
  const std::vector<double> nan{1, std::nan("")};
  EXPECT_THROW(topk(nan, 1), std::invalid_argument);
  const std::vector<double> b{0.1};
  EXPECT_THROW(topk_exact(s, b, 1, {}), std::invalid_argument);
}

TEST(TopkExact, CertifiedCutDoesNotRecompute) {
  const std::vector<double> s{1.0, 3.0, 2.0};
  const std::vector<double> b{0.1, 0.1, 0.1};
  int calls = 0;
  const TopkResult r = topk_exact(s, b, 2, [&](std::int64_t) {
    ++calls;
    return Mp50(0);
  });
  EXPECT_EQ(r.indices, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(r.margin.redecided);
  EXPECT_EQ(r.margin.gap, 1.0);
  EXPECT_NEAR(r.margin.bound, 0.2, 1e-15);
}

TEST(TopkExact, OverlappingBoundsAreRedecidedInMultiprecision) {
  // Double scores say 2.0 (index 0) > 1.99 (index 2), but their bounds (0.01 each) overlap;
  // the true values (from the callback) are 1.995 and 1.996: index 2 wins the last slot.
  const std::vector<double> s{2.0, 5.0, 1.99, 0.0};
  const std::vector<double> b{0.01, 0.01, 0.01, 0.01};
  std::vector<std::int64_t> asked;
  const TopkResult r = topk_exact(s, b, 2, [&](std::int64_t i) {
    asked.push_back(i);
    if (i == 0) return Mp50("1.995");
    if (i == 2) return Mp50("1.996");
    return Mp50(-100);
  });
  EXPECT_EQ(r.indices, (std::vector<std::int64_t>{1, 2}));
  EXPECT_TRUE(r.margin.redecided);
  EXPECT_EQ(r.margin.recomputed, 2);  // only the two overlapping candidates, not 5.0 or 0.0
  EXPECT_EQ(asked, (std::vector<std::int64_t>{0, 2}));
  EXPECT_DOUBLE_EQ(r.margin.kth, 1.996);
  EXPECT_DOUBLE_EQ(r.margin.next, 1.995);
  EXPECT_NEAR(r.margin.gap, 0.001, 1e-12);
  // The same, with the true values keeping the double order.
  const TopkResult keep = topk_exact(s, b, 2, [&](std::int64_t i) { return i == 0 ? Mp50("1.999") : Mp50("1.998"); });
  EXPECT_EQ(keep.indices, (std::vector<std::int64_t>{1, 0}));
  EXPECT_TRUE(keep.margin.redecided);
}

TEST(TopkExact, ExactTieInMultiprecisionGoesToLowerIndex) {
  const std::vector<double> s{1.0, 1.0 + 1e-12};
  const std::vector<double> b{1e-10, 1e-10};
  const TopkResult r = topk_exact(s, b, 1, [](std::int64_t) { return Mp50(1); });
  EXPECT_EQ(r.indices, (std::vector<std::int64_t>{0}));
  EXPECT_EQ(r.margin.gap, 0.0);
  EXPECT_TRUE(r.margin.redecided);
}

TEST(TopkExact, MaskedScoresAreExact) {
  // The cut falls among −∞ scores: nothing to recompute even with a missing callback.
  const std::vector<double> s{-kInf, 1.0, -kInf};
  const std::vector<double> b{0.0, 0.5, 0.0};
  const TopkResult r = topk_exact(s, b, 2, {});
  EXPECT_EQ(r.indices, (std::vector<std::int64_t>{1, 0}));
  EXPECT_FALSE(r.margin.redecided);
  const std::vector<double> bad_b{0.1, 0.5, 0.0};
  EXPECT_THROW(topk_exact(s, bad_b, 1, {}), std::invalid_argument);
  // An undecided cut without a callback is an error, not a guess.
  const std::vector<double> close{1.0, 1.0 + 1e-9};
  const std::vector<double> cb{1e-6, 1e-6};
  EXPECT_THROW(topk_exact(close, cb, 1, {}), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
