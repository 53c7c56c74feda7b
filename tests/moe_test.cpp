// The MoE feed-forward (spec 03 §3.3; moe.hpp): combine in ascending expert-id order with
// sequential fp32 accumulation (not top-k order, not C1), the shared expert added last, bf16
// output; synthetic weights (dtypes, determinism); bit-identical official runs across thread
// counts and batch splits; bad input.
#include "dsv4/model/moe.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "support/expect_errors.hpp"
#include "support/mat_bits.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

const Precision kExact(Mode::kExact);
const Precision kOfficial(Mode::kOfficial);

using test::bit_equal;

// The combine of spec 03 §3.3 for a given per-token expert order, from the expert outputs
// (expert_forward per token, the component under test elsewhere): y = 0, then for each expert in
// `order(t)` y_t = fl32(y_t + Expert_e(x_t, w)), then the shared expert (first or last), bf16.
Mat combine(const Precision& p, const ModelConfig& c, const MoeWeights& w, const Mat& x, const GateOutput& g,
            bool ascending, bool shared_last) {
  const std::int64_t k = c.n_activated_experts;
  Mat y = Mat::Zero(x.rows(), c.dim);
  const Mat shared = expert_forward(p, c, w.shared, x, nullptr);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    std::vector<std::int64_t> slots(static_cast<std::size_t>(k));
    for (std::int64_t j = 0; j < k; ++j) slots[static_cast<std::size_t>(j)] = j;
    if (ascending) std::sort(slots.begin(), slots.end(), [&](auto a, auto b) { return g.index(t, a) < g.index(t, b); });
    if (!shared_last) {
      for (std::int64_t i = 0; i < c.dim; ++i) y(t, i) = p.add(y(t, i), shared(t, i));
    }
    for (std::int64_t j : slots) {
      Vec rw(1);
      rw(0) = g.weights(t, j);
      const Mat ye = expert_forward(p, c, w.experts[static_cast<std::size_t>(g.index(t, j))], x.middleRows(t, 1), &rw);
      for (std::int64_t i = 0; i < c.dim; ++i) y(t, i) = p.add(y(t, i), ye(0, i));
    }
    if (shared_last) {
      for (std::int64_t i = 0; i < c.dim; ++i) y(t, i) = p.add(y(t, i), shared(t, i));
    }
  }
  p.bf16_inplace(y);
  return y;
}

TEST(Moe, OfficialCombineIsAscendingExpertOrderThenShared) {
  // tiny with k = 3 (fp32 addition order matters from three terms on), bf16 experts and shared
  // expert (so weights can be negated and scaled by powers of two exactly). Hash layer 0, every
  // used token routed by the table row (7, 4, 1): top-k order 7, 4, 1, ascending order 1, 4, 7.
  // Expert 7 is expert 1 with W2 negated and the same gate row (same routing weight), so
  // y_7 = −y_1 exactly; expert 4 and the shared expert are scaled by 2⁻²⁰. Ascending order gives
  // fl(fl(y_1 + y_4) − y_1), top-k order fl(fl(−y_1 + y_4) + y_1): y_4 rounded to the fp32 grid of
  // y_1 from either side — different wherever |y_1| is a power of two (the grid below it is finer),
  // and visible after the bf16 cast because the result is ~2⁻²⁰|y_1|.
  ModelConfig c = builtin_config("tiny");
  c.n_activated_experts = 3;
  c.expert_dtype = "bf16";
  c.dtype = "bf16";
  MoeWeights w = MoeWeights::synthetic(c, 0, 17);
  w.experts[7] = w.experts[1];
  w.experts[7].w2 = LinearWeight::bf16_from(-w.experts[1].w2.values());
  w.experts[4].w2 = LinearWeight::bf16_from(0x1.0p-20 * w.experts[4].w2.values());
  w.shared.w2 = LinearWeight::bf16_from(0x1.0p-20 * w.shared.w2.values());
  Mat gw = w.gate.weight.values();
  gw.row(7) = gw.row(1);
  w.gate.weight = LinearWeight::bf16_from(gw);
  std::vector<std::int64_t> tok(12);
  for (std::int64_t t = 0; t < 12; ++t) {
    tok[static_cast<std::size_t>(t)] = 31 * t + 5;
    std::copy_n(std::vector<std::int64_t>{7, 4, 1}.begin(), 3, w.gate.tid2eid.begin() + (31 * t + 5) * 3);
  }
  const Mat x = test::random_bf16_matrix(12, c.dim, 6, 1, 1.0);
  const MoeOutput o = Moe(kOfficial, c, 0, w).forward(x, tok);
  EXPECT_EQ(o.gate.index(0, 0), 7);  // top-k order is the table's
  EXPECT_EQ(o.gate.weights(0, 0), o.gate.weights(0, 2));
  const Mat want = combine(kOfficial, c, w, x, o.gate, /*ascending=*/true, /*shared_last=*/true);
  const Mat topk_order = combine(kOfficial, c, w, x, o.gate, false, true);
  const Mat shared_first = combine(kOfficial, c, w, x, o.gate, true, false);
  EXPECT_TRUE(bit_equal(o.out, want));
  EXPECT_FALSE(bit_equal(want, topk_order));  // the data can tell the orders apart
  EXPECT_FALSE(bit_equal(want, shared_first));
  for (Eigen::Index i = 0; i < o.out.size(); ++i) EXPECT_EQ(o.out.data()[i], round_bf16(o.out.data()[i]));
  // Not C1 either: the exactly rounded sum of the terms differs somewhere too.
  const Mat shared = expert_forward(kOfficial, c, w.shared, x, nullptr);
  int c1_differs = 0;
  for (Eigen::Index t = 0; t < 12; ++t) {
    std::vector<Mat> ye;
    for (std::int64_t j = 0; j < 3; ++j) {
      Vec rw(1);
      rw(0) = o.gate.weights(t, j);
      ye.push_back(expert_forward(kOfficial, c, w.experts[static_cast<std::size_t>(o.gate.index(t, j))],
                                  x.middleRows(t, 1), &rw));
    }
    for (std::int64_t i = 0; i < c.dim; ++i) {
      const std::vector<double> terms{ye[0](0, i), ye[1](0, i), ye[2](0, i), shared(t, i)};
      if (round_bf16(exact_sum_to_fp32(terms)) != o.out(t, i)) ++c1_differs;
    }
  }
  EXPECT_GT(c1_differs, 0);
}

TEST(Moe, ScoreRoutedLayerMatchesTheCombineInBothModes) {
  const ModelConfig c = builtin_config("tiny");
  const MoeWeights w = MoeWeights::synthetic(c, 4, 3);
  const Mat x = test::random_bf16_matrix(9, c.dim, 2, 2, 1.0);
  std::vector<std::int64_t> tok(9, 1);
  for (const Precision& p : {kExact, kOfficial}) {
    const MoeOutput o = Moe(p, c, 4, w).forward(x, tok);
    EXPECT_TRUE(bit_equal(o.out, combine(p, c, w, x, o.gate, true, true)));
    EXPECT_EQ(o.gate.decisions.redecided, 0);
  }
}

TEST(Moe, OfficialIsBitIdenticalAcrossThreadsRunsAndBatches) {
  const ModelConfig c = builtin_config("tiny");
  const Moe moe(kOfficial, c, 3, MoeWeights::synthetic(c, 3, 8));
  const Mat x = test::random_bf16_matrix(10, c.dim, 5, 3, 1.0);
  std::vector<std::int64_t> tok(10);
  for (std::int64_t t = 0; t < 10; ++t) tok[static_cast<std::size_t>(t)] = 100 + t;
  set_gemm_threads(1);
  const MoeOutput a = moe.forward(x, tok);
  set_gemm_threads(2);
  const MoeOutput b = moe.forward(x, tok);
  set_gemm_threads(0);
  const MoeOutput again = moe.forward(x, tok);
  EXPECT_TRUE(bit_equal(a.out, b.out));
  EXPECT_TRUE(bit_equal(a.out, again.out));
  EXPECT_EQ(a.gate.indices, b.gate.indices);
  // tokens 0–3 and 4–9 as separate calls: the same bits (every step is row-wise or C1)
  const MoeOutput lo = moe.forward(x.topRows(4), std::vector<std::int64_t>(tok.begin(), tok.begin() + 4));
  const MoeOutput hi = moe.forward(x.bottomRows(6), std::vector<std::int64_t>(tok.begin() + 4, tok.end()));
  EXPECT_TRUE(bit_equal(lo.out, a.out.topRows(4)));
  EXPECT_TRUE(bit_equal(hi.out, a.out.bottomRows(6)));
}

TEST(Moe, SyntheticWeightsFollowTheConfigDtypes) {
  ModelConfig c = builtin_config("tiny");
  for (const char* dt : {"fp4", "fp8", "bf16"}) {
    c.expert_dtype = dt;
    const MoeWeights w = MoeWeights::synthetic(c, 3, 1);
    const WeightKind want = std::string(dt) == "fp4"   ? WeightKind::kFP4
                            : std::string(dt) == "fp8" ? WeightKind::kFP8
                                                       : WeightKind::kBF16;
    ASSERT_EQ(static_cast<std::int64_t>(w.experts.size()), c.n_routed_experts);
    for (const ExpertWeights& e : w.experts) {
      EXPECT_EQ(e.w1.kind, want);
      EXPECT_EQ(e.w2.kind, want);
      EXPECT_EQ(e.w3.kind, want);
    }
    EXPECT_EQ(w.shared.w1.kind, WeightKind::kFP8);
    EXPECT_EQ(w.gate.weight.kind, WeightKind::kBF16);
    EXPECT_EQ(w.gate.bias.size(), c.n_routed_experts);
  }
  c.dtype = "bf16";
  EXPECT_EQ(MoeWeights::synthetic(c, 0, 1).shared.w2.kind, WeightKind::kBF16);
  // deterministic in the seed, different across seeds and experts
  const MoeWeights a = MoeWeights::synthetic(c, 3, 1), b = MoeWeights::synthetic(c, 3, 1);
  EXPECT_TRUE(bit_equal(a.experts[2].w1.values(), b.experts[2].w1.values()));
  EXPECT_FALSE(bit_equal(a.experts[2].w1.values(), a.experts[3].w1.values()));
  EXPECT_FALSE(bit_equal(a.experts[2].w1.values(), MoeWeights::synthetic(c, 3, 2).experts[2].w1.values()));
  EXPECT_FALSE(bit_equal(a.experts[2].w1.values(), MoeWeights::synthetic(c, 4, 1).experts[2].w1.values()));
}

using testing_support::expect_invalid;

TEST(Moe, BadInputNamesTheField) {
  const ModelConfig c = builtin_config("tiny");
  const MoeWeights w = MoeWeights::synthetic(c, 0, 1);
  MoeWeights fewer = w;
  fewer.experts.pop_back();
  expect_invalid([&] { Moe(kExact, c, 0, fewer); }, "experts");
  MoeWeights bad_shape = w;
  bad_shape.experts[3].w2 = LinearWeight::bf16_from(Mat::Zero(c.dim, c.moe_inter_dim + 1));
  expect_invalid([&] { Moe(kExact, c, 0, bad_shape); }, "experts[3].w2");
  MoeWeights bad_shared = w;
  bad_shared.shared.w1 = LinearWeight::bf16_from(Mat::Zero(c.moe_inter_dim, c.dim - 1));
  expect_invalid([&] { Moe(kExact, c, 0, bad_shared); }, "shared.w1");
  MoeWeights dup = w;
  dup.gate.tid2eid[1] = dup.gate.tid2eid[0];
  expect_invalid([&] { Moe(kExact, c, 0, dup); }, "tid2eid");
  const Moe moe(kOfficial, c, 0, w);
  const Mat x = test::random_bf16_matrix(2, c.dim, 1, 1, 1.0);
  expect_invalid([&] { moe.forward(x, {3, c.vocab_size + 5}); }, "token_ids");
  expect_invalid([&] { moe.forward(x, {3}); }, "token_ids");
}

}  // namespace
}  // namespace dsv4
