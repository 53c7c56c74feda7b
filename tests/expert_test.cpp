// One MoE expert, SwiGLU with clamping (spec 03 §3.2; expert.hpp): the clamp bounds (u to
// [−λ, λ], g only above), the routing weight before the bf16 cast and the down projection, the
// weight storage forms (bf16, FP8, FP4), and bad input. Expected values are worked out by hand.
#include "dsv4/model/expert.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/indexer.hpp"
#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/formats.hpp"
#include "support/expect_errors.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

const Precision kExact(Mode::kExact);
const Precision kOfficial(Mode::kOfficial);

// A hand expert on tiny (d = 256, d_e = 128): x = e₀, W1[:, 0] = g, W3[:, 0] = u (so the linears
// give g and u exactly: one non-zero product each), W2 = [I 0]ᵀ (so y_i = bf16(h_i) for i < 128:
// one non-zero product, then the bf16 output cast — a no-op on a bf16 h).
struct HandExpert {
  ModelConfig c = builtin_config("tiny");
  ExpertWeights w;
  Mat x = Mat::Zero(1, 256);
};
HandExpert hand_expert(const std::vector<double>& g, const std::vector<double>& u) {
  HandExpert h;
  Mat w1 = Mat::Zero(128, 256), w3 = Mat::Zero(128, 256), w2 = Mat::Zero(256, 128);
  for (std::size_t i = 0; i < g.size(); ++i) {
    w1(static_cast<Eigen::Index>(i), 0) = g[i];
    w3(static_cast<Eigen::Index>(i), 0) = u[i];
  }
  for (Eigen::Index i = 0; i < 128; ++i) w2(i, i) = 1.0;
  h.w.w1 = LinearWeight::bf16_from(w1);
  h.w.w3 = LinearWeight::bf16_from(w3);
  h.w.w2 = LinearWeight::bf16_from(w2);
  h.x(0, 0) = 1.0;
  return h;
}

double silu_exact(double g) { return g / (1.0 + std::exp(-g)); }

TEST(Expert, ClampBoundsByHand) {
  // (g, u) → h: (12, 3): g capped to 10 → silu(10)·3; (−12, 3): g is not clamped below →
  // silu(−12)·3 ≈ −2.2e−4; (1, −15): u clamped to −10 → silu(1)·(−10); (1, 15) → silu(1)·10;
  // (2, −4): untouched → silu(2)·(−4).
  const std::vector<double> g{12, -12, 1, 1, 2}, u{3, 3, -15, 15, -4};
  const HandExpert h = hand_expert(g, u);
  const std::vector<double> g_used{10, -12, 1, 1, 2}, u_used{3, 3, -10, 10, -4};
  for (const Precision& p : {kExact, kOfficial}) {
    const Mat y = expert_forward(p, h.c, h.w, h.x, nullptr);
    for (std::size_t i = 0; i < g.size(); ++i) {
      const auto r = static_cast<Eigen::Index>(i);
      if (p.official()) {
        // C2 silu in fp32, one fp32 product, then bf16
        const double want = round_bf16(static_cast<float>(silu_c2(static_cast<float>(g_used[i])) * u_used[i]));
        EXPECT_EQ(y(0, r), want) << i;
      } else {
        // exact: silu and the product in double (a few ulp of libm exp; 1e−14 relative is ample)
        const double want = silu_exact(g_used[i]) * u_used[i];
        EXPECT_NEAR(y(0, r), want, 1e-14 * std::abs(want)) << i;
      }
      // the unclamped value is far away wherever a clamp applied
      if (g[i] != g_used[i] || u[i] != u_used[i]) {
        EXPECT_GT(std::abs(y(0, r) - silu_exact(g[i]) * u[i]), 0.5) << i;
      }
    }
    EXPECT_EQ(y(0, 200), 0.0);  // rows of W2 beyond d_e are zero
  }
  // swiglu_limit = 0 disables the clamp: (12, 3) → silu(12)·3.
  HandExpert off = hand_expert(g, u);
  off.c.swiglu_limit = 0.0;
  const Mat y = expert_forward(kExact, off.c, off.w, off.x, nullptr);
  EXPECT_NEAR(y(0, 0), silu_exact(12) * 3, 1e-13);
  EXPECT_NEAR(y(0, 2), silu_exact(1) * -15, 1e-13);
}

TEST(Expert, RoutingWeightBeforeTheBf16CastAndTheDownProjection) {
  // Official: y = bf16(fl32(w · fl32(silu(g)·u))). Applying w after the down projection instead
  // gives bf16(fl32(w · bf16(h))). Among u = 1 + j/64 (g = 3, w = 0.7) the two differ for some j
  // (w·h is rounded once to bf16 vs twice); the expert must give the first.
  std::vector<double> g(128, 3.0), u(128);
  for (int j = 0; j < 128; ++j) u[static_cast<std::size_t>(j)] = 1.0 + j / 64.0;
  const HandExpert h = hand_expert(g, u);
  Vec w(1);
  w(0) = 0.7;
  const double wf = static_cast<float>(0.7);
  const Mat y = expert_forward(kOfficial, h.c, h.w, h.x, &w);
  int differ = 0;
  for (int j = 0; j < 128; ++j) {
    const float hj = silu_c2(3.0f) * static_cast<float>(u[static_cast<std::size_t>(j)]);
    const double before = round_bf16(static_cast<float>(wf * hj));
    const double after = round_bf16(static_cast<float>(wf * round_bf16(hj)));
    EXPECT_EQ(y(0, j), before) << j;
    if (before != after) ++differ;
  }
  EXPECT_GT(differ, 0);  // the test can tell the two orders apart
  // and the weight is applied at all: without it the output is h itself
  const Mat y1 = expert_forward(kOfficial, h.c, h.w, h.x, nullptr);
  EXPECT_EQ(y1(0, 0), round_bf16(silu_c2(3.0f) * 1.0f));
}

TEST(Expert, ExactModeIgnoresTheStorageForm) {
  // FP8 (e4m3 × 2^k) and FP4 (e2m1 × 2^k) values are bf16 values, so the same exact weights in
  // bf16 form give the same exact-mode output bit for bit (exact mode never quantises activations).
  const ModelConfig c = builtin_config("tiny");
  const Mat x = test::random_bf16_matrix(5, c.dim, 4, 1, 1.0);
  for (const char* kind : {"fp8", "fp4"}) {
    const bool fp4 = std::string(kind) == "fp4";
    const auto make = [&](const char* name, std::int64_t n, std::int64_t k) {
      const double sd = 1.0 / std::sqrt(static_cast<double>(k));
      return fp4 ? synthetic_fp4_weight(3, name, n, k, sd) : synthetic_fp8_weight(3, name, n, k, sd);
    };
    ExpertWeights q{make("w1", 128, 256), make("w2", 256, 128), make("w3", 128, 256)};
    ExpertWeights b{LinearWeight::bf16_from(q.w1.values()), LinearWeight::bf16_from(q.w2.values()),
                    LinearWeight::bf16_from(q.w3.values())};
    ASSERT_EQ(b.w1.values(), q.w1.values());  // the widening is exact
    Vec rw(5);
    rw << 0.5, 1.25, 0.75, 2.0, 0.1;
    const Mat yq = expert_forward(kExact, c, q, x, &rw), yb = expert_forward(kExact, c, b, x, &rw);
    EXPECT_EQ((yq - yb).cwiseAbs().maxCoeff(), 0.0) << kind;
    // official mode runs the quantised GEMMs (FP8 activations): the results are bf16 values, rows
    // independent of each other (row 2 alone gives the same bits), and differ from the bf16 form.
    const Mat oq = expert_forward(kOfficial, c, q, x, &rw);
    for (Eigen::Index i = 0; i < oq.size(); ++i) EXPECT_EQ(oq.data()[i], round_bf16(oq.data()[i]));
    Vec one(1);
    one(0) = rw(2);
    const Mat row2 = expert_forward(kOfficial, c, q, x.middleRows(2, 1), &one);
    EXPECT_EQ((row2 - oq.middleRows(2, 1)).cwiseAbs().maxCoeff(), 0.0);
    EXPECT_GT((oq - expert_forward(kOfficial, c, b, x, &rw)).cwiseAbs().maxCoeff(), 0.0);
  }
}

TEST(Expert, FlashSliceShapesFp4) {
  // The released routed-expert shapes (flash-slice: d = 4096, d_e = 2048, FP4): exact mode equals
  // the bf16 form of the same values bit for bit; official output rows are independent.
  const ModelConfig c = builtin_config("flash-slice");
  const double sd = 1.0 / std::sqrt(4096.0), se = 1.0 / std::sqrt(2048.0);
  const ExpertWeights q{synthetic_fp4_weight(8, "w1", 2048, 4096, sd), synthetic_fp4_weight(8, "w2", 4096, 2048, se),
                        synthetic_fp4_weight(8, "w3", 2048, 4096, sd)};
  const ExpertWeights b{LinearWeight::bf16_from(q.w1.values()), LinearWeight::bf16_from(q.w2.values()),
                        LinearWeight::bf16_from(q.w3.values())};
  const Mat x = test::random_bf16_matrix(2, c.dim, 4, 2, 1.0);
  Vec rw(2);
  rw << 0.3, 0.2;
  EXPECT_EQ((expert_forward(kExact, c, q, x, &rw) - expert_forward(kExact, c, b, x, &rw)).cwiseAbs().maxCoeff(), 0.0);
  const Mat o = expert_forward(kOfficial, c, q, x, &rw);
  Vec one(1);
  one(0) = rw(1);
  EXPECT_EQ((expert_forward(kOfficial, c, q, x.middleRows(1, 1), &one) - o.middleRows(1, 1)).cwiseAbs().maxCoeff(),
            0.0);
}

using testing_support::expect_invalid;

TEST(Expert, BadInputNamesTheField) {
  const HandExpert h = hand_expert({1}, {1});
  Vec w2(2);
  w2 << 1, 1;
  expect_invalid([&] { expert_forward(kExact, h.c, h.w, h.x, &w2); }, "route_weight");
  expect_invalid([&] { expert_forward(kExact, h.c, h.w, Mat::Zero(1, 255), nullptr); }, "x");
  ExpertWeights bad = h.w;
  bad.w1 = LinearWeight::bf16_from(Mat::Zero(127, 256));
  expect_invalid([&] { expert_forward(kExact, h.c, bad, h.x, nullptr); }, "w1");
  bad = h.w;
  bad.w2 = LinearWeight::bf16_from(Mat::Zero(128, 256));
  expect_invalid([&] { expert_forward(kExact, h.c, bad, h.x, nullptr); }, "w2");
  bad = h.w;
  bad.w3 = LinearWeight::fp32_from(Mat::Zero(128, 256));
  expect_invalid([&] { expert_forward(kExact, h.c, bad, h.x, nullptr); }, "w3");
}

}  // namespace
}  // namespace dsv4
