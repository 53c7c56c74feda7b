// oracle/compare set comparison (set_compare.hpp): identical rows, a near-tie swap accepted, a
// far swap rejected, the swapped-out side checked too, masks, padding, malformed candidate rows,
// and bad input.
#include "dsv4/compare/set_compare.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <vector>

#include "dsv4/compare/tolerance.hpp"

namespace dsv4::compare {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
using V = std::vector<std::int64_t>;

// One row of 5 items; the exact top-3 is {0, 1, 2} (k-th score 3.0); item 3 trails it by 0.001.
const std::vector<double> kScores{5.0, 4.0, 3.0, 2.999, 1.0};
const V kRef{0, 1, 2};

SetComparison one_row(const V& cand, double tau, const std::vector<double>& scores = kScores, const V& ref = kRef) {
  const std::vector<double> t{tau};
  return compare_sets_dense(cand, ref, 1, static_cast<std::int64_t>(ref.size()), 5, scores, t);
}

TEST(SetCompare, SameSetInAnyOrderIsIdentical) {
  const SetComparison c = one_row({2, 0, 1}, 0.0);
  EXPECT_EQ(c.identical, 1);
  EXPECT_TRUE(c.differing.empty());
  EXPECT_TRUE(c.pass());
}

TEST(SetCompare, NearTieSwapIsAcceptedWithinTau) {
  // Swap 2 (3.0) for 3 (2.999): slack = 2.999 − 3.0 = −0.001 ≥ −τ for τ = 0.01.
  const SetComparison c = one_row({0, 1, 3}, 0.01);
  ASSERT_EQ(c.differing.size(), 1u);
  const SetRow& r = c.differing[0];
  EXPECT_EQ(r.status, RowStatus::kNearTie);
  EXPECT_EQ(r.swapped_in, V{3});
  EXPECT_EQ(r.swapped_out, V{2});
  EXPECT_EQ(r.in_scores, std::vector<double>{2.999});
  EXPECT_EQ(r.out_scores, std::vector<double>{3.0});
  EXPECT_EQ(r.kth_score, 3.0);
  EXPECT_DOUBLE_EQ(r.slack, 2.999 - 3.0);
  EXPECT_EQ(c.near_tie, 1);
  EXPECT_TRUE(c.pass());
  EXPECT_NE(r.reason.find("near-tie swap accepted"), std::string::npos) << r.reason;
  // The same swap with τ = 0.0005 < 0.001 is rejected.
  const SetComparison tight = one_row({0, 1, 3}, 0.0005);
  EXPECT_EQ(tight.differing[0].status, RowStatus::kRejected);
  EXPECT_FALSE(tight.pass());
}

TEST(SetCompare, FarSwapIsRejectedWithTheNumbers) {
  // Item 4 scores 1.0, two below the k-th score 3.0.
  const SetComparison c = one_row({0, 1, 4}, 0.01);
  ASSERT_EQ(c.differing.size(), 1u);
  EXPECT_EQ(c.differing[0].status, RowStatus::kRejected);
  EXPECT_DOUBLE_EQ(c.differing[0].slack, -2.0);
  EXPECT_NE(c.differing[0].reason.find("4 (1)"), std::string::npos) << c.differing[0].reason;
  EXPECT_EQ(c.rejected, 1);
}

TEST(SetCompare, DroppingTheBestItemIsRejectedEvenForANearCutNewcomer) {
  // Swap 0 (5.0) out for 3 (2.999): the newcomer is within τ of the k-th score, but dropping the
  // top item is no near-tie: slack = 2.999 − 5.0.
  const SetComparison c = one_row({1, 2, 3}, 0.01);
  EXPECT_EQ(c.differing[0].status, RowStatus::kRejected);
  EXPECT_DOUBLE_EQ(c.differing[0].slack, 2.999 - 5.0);
}

TEST(SetCompare, MaskedItemIsNeverANearTie) {
  std::vector<double> s = kScores;
  s[3] = kNegInf;  // masked
  const SetComparison c = one_row({0, 1, 3}, 1e300, s);
  EXPECT_EQ(c.differing[0].status, RowStatus::kRejected);
}

TEST(SetCompare, PaddingCountsAndMalformedCandidateRows) {
  // Reference row with only two valid items.
  const V ref{0, 1, -1};
  EXPECT_EQ(one_row({-1, 1, 0}, 0.0, kScores, ref).identical, 1);
  SetComparison c = one_row({0, 1, 2}, 1.0, kScores, ref);
  EXPECT_EQ(c.differing[0].status, RowStatus::kRejected);
  EXPECT_NE(c.differing[0].reason.find("selects 3 items, reference 2"), std::string::npos) << c.differing[0].reason;
  c = one_row({0, 0, 1}, 1.0);
  EXPECT_NE(c.differing[0].reason.find("selected twice"), std::string::npos) << c.differing[0].reason;
  c = one_row({0, 1, 7}, 1.0);
  EXPECT_NE(c.differing[0].reason.find("outside [0, 5)"), std::string::npos) << c.differing[0].reason;
  c = one_row({0, 1, -5}, 1.0);
  EXPECT_EQ(c.differing[0].status, RowStatus::kRejected);
}

TEST(SetCompare, UnknownScoreRejectsTheSwap) {
  // A sparse golden that holds scores only for the reference's own items.
  const ScoreLookup lookup = [](std::int64_t, std::int64_t i) -> std::optional<double> {
    if (i <= 2) return kScores[static_cast<std::size_t>(i)];
    return std::nullopt;
  };
  const std::vector<double> tau{10.0};
  const V cand{0, 1, 3};
  const SetComparison c = compare_sets(cand, kRef, 1, 3, 5, lookup, tau);
  EXPECT_EQ(c.differing[0].status, RowStatus::kRejected);
  EXPECT_NE(c.differing[0].reason.find("no score"), std::string::npos);
  EXPECT_EQ(compare_sets(kRef, kRef, 1, 3, 5, lookup, tau).identical, 1);
}

TEST(SetCompare, ExpertIdsPerTokenWithPerRowTauFromTheToleranceModel) {
  // 3 tokens, 8 experts, top-2. Exact selection scores per token.
  const std::vector<double> scores{
      0.90, 0.10, 0.50, 0.49990, 0.05, 0.20, 0.30, 0.00,  // token 0: 2nd/3rd differ by 1e-4
      0.10, 0.80, 0.70, 0.10,    0.60, 0.00, 0.00, 0.00,  // token 1: clear cut (0.70 vs 0.60)
      0.33, 0.33, 0.10, 0.10,    0.10, 0.10, 0.10, 0.10,  // token 2: exact tie at the top
  };
  const V reference{0, 2, 1, 2, 0, 1};
  const V candidate{0, 3, 1, 4, 1, 0};  // token 0: near-tie swap 2→3; token 1: far swap 2→4; token 2: same
  // τ per token from the official score error 3e-5 in fp32 scores: 2·(2·3e-5 + ulp_fp32(s_k)),
  // ≈ 1.2e-4: token 0's gap of 1e-4 is inside it, token 1's gap of 0.1 far outside.
  std::vector<double> tau;
  for (const double kth : {0.5, 0.70, 0.33}) tau.push_back(tie_tolerance(3e-5, kth, DType::kF32));
  EXPECT_GT(tau[0], 1e-4);
  EXPECT_LT(tau[1], 0.1);
  const SetComparison c = compare_sets_dense(candidate, reference, 3, 2, 8, scores, tau);
  EXPECT_EQ(c.identical, 1);
  EXPECT_EQ(c.near_tie, 1);
  EXPECT_EQ(c.rejected, 1);
  ASSERT_EQ(c.differing.size(), 2u);
  EXPECT_EQ(c.differing[0].row, 0);
  EXPECT_EQ(c.differing[0].status, RowStatus::kNearTie);
  EXPECT_EQ(c.differing[1].row, 1);
  EXPECT_EQ(c.differing[1].status, RowStatus::kRejected);
  EXPECT_FALSE(c.pass());
}

TEST(SetCompare, BadInputIsRefused) {
  const std::vector<double> tau{0.0};
  EXPECT_THROW(compare_sets_dense(V{0, 1}, kRef, 1, 3, 5, kScores, tau), std::invalid_argument);
  EXPECT_THROW(compare_sets_dense(kRef, V{0, 1}, 1, 3, 5, kScores, tau), std::invalid_argument);
  EXPECT_THROW(compare_sets_dense(kRef, V{0, 0, 1}, 1, 3, 5, kScores, tau), std::invalid_argument);  // bad reference
  EXPECT_THROW(compare_sets_dense(kRef, V{0, 1, 9}, 1, 3, 5, kScores, tau), std::invalid_argument);
  EXPECT_THROW(compare_sets_dense(kRef, kRef, 1, 3, 5, std::vector<double>(4), tau), std::invalid_argument);
  EXPECT_THROW(compare_sets_dense(kRef, kRef, 1, 3, 5, kScores, std::vector<double>{-1.0}), std::invalid_argument);
  EXPECT_THROW(compare_sets_dense(kRef, kRef, 1, 3, 5, kScores, std::vector<double>{0.0, 0.0}), std::invalid_argument);
  std::vector<double> nan_scores = kScores;
  nan_scores[3] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(compare_sets_dense(V{0, 1, 3}, kRef, 1, 3, 5, nan_scores, std::vector<double>{1.0}),
               std::invalid_argument);
}

}  // namespace
}  // namespace dsv4::compare
