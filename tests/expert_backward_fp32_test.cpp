// The official-style expert weight gradients (spec 06 §6.14; ref/train expert_backward_fp32.hpp):
// bit-identical for 1, 2 and 4 threads and over reruns, equal to a naive transcription of the
// documented rule (rows = the routed set in ascending token position, partitions of C routed rows,
// fmaf per element, the pairwise tree), within a derived fp32 bound of the exact backward's dW1, dW3,
// dW2 (spec 06 §6.12) when the per-row coefficients are the exact ones rounded to fp32, and a
// mutated row order gives other bits (the equality can fail).
#include "dsv4/train/expert_backward_fp32.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/train/expert_backward.hpp"
#include "support/fp32_rule_port.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

// The shared §6.14 test pieces (fp32_rule_port.hpp) and the random matrices (random_matrix.hpp).
using namespace test;

constexpr std::int64_t kD = 8, kDe = 6;
constexpr double kLimit = 1.5;  // some gates and ups are clamped: their dg, du are exactly 0

struct Case {
  std::int64_t tokens = 0, rows = 0;
  std::vector<std::int64_t> routed;  // strictly ascending
  Mat x, dy;                         // [T, d] bf16
  Mat xr, dyr;                       // the routed rows, gathered
  Vec weight;                        // [R] routing weights
  Mat w1, w3, w2;                    // bf16 weights
  Mat h, dg, du;                     // exact per-row coefficients [R, de]
  std::vector<float> xf, dyf, hf, dgf, duf;
};

// About 60 % of T tokens routed; the coefficients by the exact backward's own operations (the same
// deterministic double GEMMs and clamped_swiglu_backward), so the exact dW below is Σ of these terms.
Case make_case(std::int64_t tokens, std::uint64_t seed) {
  Case c;
  c.tokens = tokens;
  const CounterRng rng(seed, 9);
  for (std::int64_t t = 0; t < tokens; ++t)
    if (rng.uniform(static_cast<std::uint64_t>(t)) < 0.6) c.routed.push_back(t);
  c.rows = static_cast<std::int64_t>(c.routed.size());
  c.x = test::random_bf16_matrix(tokens, kD, seed, 1, 1.0);
  c.dy = test::random_bf16_matrix(tokens, kD, seed, 2, 0.01);
  c.w1 = test::random_bf16_matrix(kDe, kD, seed, 3, 0.5);
  c.w3 = test::random_bf16_matrix(kDe, kD, seed, 4, 0.5);
  c.w2 = test::random_bf16_matrix(kD, kDe, seed, 5, 0.5);
  c.xr = Mat(c.rows, kD);
  c.dyr = Mat(c.rows, kD);
  c.weight = Vec(c.rows);
  for (std::int64_t r = 0; r < c.rows; ++r) {
    c.xr.row(r) = c.x.row(c.routed[static_cast<std::size_t>(r)]);
    c.dyr.row(r) = c.dy.row(c.routed[static_cast<std::size_t>(r)]);
    c.weight(r) = 0.1 + 0.9 * rng.uniform(static_cast<std::uint64_t>(tokens + r));
  }
  const Precision exact(Mode::kExact);
  const Mat g = exact.matmul_nt(c.xr, c.w1), u = exact.matmul_nt(c.xr, c.w3), dh = exact.matmul_nn(c.dyr, c.w2);
  c.h = Mat(c.rows, kDe);
  c.dg = Mat(c.rows, kDe);
  c.du = Mat(c.rows, kDe);
  for (std::int64_t r = 0; r < c.rows; ++r) {
    for (std::int64_t j = 0; j < kDe; ++j) {
      c.h(r, j) = clamped_swiglu_exact(g(r, j), u(r, j), &c.weight(r), kLimit);
      const SwigluElementGrads e = clamped_swiglu_backward(g(r, j), u(r, j), c.weight(r), kLimit, dh(r, j));
      c.dg(r, j) = e.dg;
      c.du(r, j) = e.du;
    }
  }
  c.xf = to_floats(c.x);
  c.dyf = to_floats(c.dy);
  c.hf = to_floats(c.h);
  c.dgf = to_floats(c.dg);
  c.duf = to_floats(c.du);
  return c;
}

ExpertDweightsFp32 run(const Case& c, std::int64_t chunk) {
  return expert_dweights_fp32(c.xf, c.dyf, c.tokens, kD, c.routed, c.hf, c.dgf, c.duf, kDe, PartitionRule{chunk});
}

enum class Mutation { kNone, kDescending, kPartitionByPosition };

// The rule written plainly for out[a, b] = Σ_r left[r, a] · right[t_r, b] (left per routed row,
// right per token): partitions of C routed rows, each element's fmaf sequence over its rows
// ascending, then the tree in its recursive statement. The mutations: rows descending within each
// partition; partitions of C token positions instead of C routed rows (a misreading of the rule).
std::vector<float> naive(const Case& c, const std::vector<float>& left, std::int64_t na, bool left_per_token,
                         const std::vector<float>& right, std::int64_t nb, bool right_per_token, std::int64_t chunk,
                         Mutation mutation = Mutation::kNone) {
  const bool by_position = mutation == Mutation::kPartitionByPosition;
  const std::int64_t p_count = ((by_position ? c.tokens : c.rows) + chunk - 1) / chunk;
  std::vector<std::vector<float>> buf(static_cast<std::size_t>(p_count), std::vector<float>(na * nb, 0.0f));
  for (std::int64_t p = 0; p < (by_position ? 1 : p_count); ++p) {
    const std::int64_t r0 = by_position ? 0 : p * chunk, r1 = by_position ? c.rows : std::min(c.rows, r0 + chunk);
    for (std::int64_t i = 0; i < r1 - r0; ++i) {
      const std::int64_t r = mutation == Mutation::kDescending ? r1 - 1 - i : r0 + i;
      const std::int64_t t = c.routed[static_cast<std::size_t>(r)], q = by_position ? t / chunk : p;
      const std::int64_t lr = left_per_token ? t : r, rr = right_per_token ? t : r;
      for (std::int64_t a = 0; a < na; ++a)
        for (std::int64_t b = 0; b < nb; ++b) {
          float& acc = buf[static_cast<std::size_t>(q)][a * nb + b];
          acc = std::fma(left[lr * na + a], right[rr * nb + b], acc);
        }
    }
  }
  std::vector<float> out(na * nb, 0.0f);
  if (p_count == 0) return out;
  for (std::size_t e = 0; e < out.size(); ++e) out[e] = tree(buf, e, 0, static_cast<std::size_t>(p_count));
  return out;
}

ExpertDweightsFp32 naive_all(const Case& c, std::int64_t chunk, Mutation mutation = Mutation::kNone) {
  return {naive(c, c.dgf, kDe, false, c.xf, kD, true, chunk, mutation),
          naive(c, c.duf, kDe, false, c.xf, kD, true, chunk, mutation),
          naive(c, c.dyf, kD, true, c.hf, kDe, false, chunk, mutation)};
}

const std::pair<std::int64_t, std::int64_t> kCases[] = {{0, 4}, {1, 128}, {9, 2}, {70, 3}, {500, 16}, {500, 128}};

TEST(ExpertDweightsFp32, EqualsNaiveRuleForAnyThreadCount) {
  ThreadGuard guard;
  for (const auto& [tokens, chunk] : kCases) {
    const Case c = make_case(tokens, 7);
    const ExpertDweightsFp32 want = naive_all(c, chunk);
    for (int threads : {1, 2, 4}) {
      set_gemm_threads(threads);
      for (int rerun = 0; rerun < 3; ++rerun) {
        const ExpertDweightsFp32 got = run(c, chunk);
        EXPECT_TRUE(same_bits(got.dw1, want.dw1)) << "T " << tokens << " C " << chunk << " threads " << threads;
        EXPECT_TRUE(same_bits(got.dw3, want.dw3)) << "T " << tokens << " C " << chunk << " threads " << threads;
        EXPECT_TRUE(same_bits(got.dw2, want.dw2)) << "T " << tokens << " C " << chunk << " threads " << threads;
      }
    }
  }
}

// The equality can fail: rows descending within each partition, or partitions of C token positions
// instead of C routed rows, give other bits (on the larger cases, for each of the three gradients),
// and so does another partition constant.
TEST(ExpertDweightsFp32, MutatedOrderGivesOtherBits) {
  for (const auto& [tokens, chunk] : {std::pair<std::int64_t, std::int64_t>{500, 16}, {500, 128}}) {
    const Case c = make_case(tokens, 7);
    const ExpertDweightsFp32 got = run(c, chunk);
    for (Mutation m : {Mutation::kDescending, Mutation::kPartitionByPosition}) {
      const ExpertDweightsFp32 mutated = naive_all(c, chunk, m);
      const int k = static_cast<int>(m);
      EXPECT_FALSE(same_bits(got.dw1, mutated.dw1)) << "T " << tokens << " C " << chunk << " mutation " << k;
      EXPECT_FALSE(same_bits(got.dw3, mutated.dw3)) << "T " << tokens << " C " << chunk << " mutation " << k;
      EXPECT_FALSE(same_bits(got.dw2, mutated.dw2)) << "T " << tokens << " C " << chunk << " mutation " << k;
    }
    EXPECT_FALSE(same_bits(got.dw1, run(c, chunk + 1).dw1)) << "T " << tokens << " C " << chunk;
  }
}

// Bound, per element of out = Σ_r coef_r · v_r (coef the fp32-rounded per-row coefficient dg, du or
// h; v the bf16 x or dy, exact in fp32): |fl32(coef) − coef| ≤ u₃₂|coef| + 2⁻¹⁴⁹; each computed term
// passes through ≤ c + D roundings, c = min(C, R) (one fmaf per routed row of its partition) and D
// the tree depth (spec 06 §6.14's bound), so |out_fp32 − Σ t| ≤ Σ(u₃₂|coef| + 2⁻¹⁴⁹)|v| +
// γ₃₂(c + D)·Σ|t̂|; the exact backward's double GEMM of the same double coefficients is within
// γ₆₄(R)·Σ|t| of Σ t; the double sums of the bound are within γ₆₄(R) of themselves.
void expect_within_bound(const std::vector<float>& got, const Mat& exact, const Mat& coef,
                         const std::vector<float>& coef_f, const Mat& v, bool coef_first, std::int64_t chunk,
                         std::int64_t rows, const std::string& what) {
  const std::int64_t nc = coef.cols(), nv = v.cols();
  const double c = static_cast<double>(std::min(chunk, rows));
  const double depth = static_cast<double>(PartitionRule{chunk}.tree_depth(rows));
  const double g64 = gamma(static_cast<double>(rows), kU64);
  double worst = 0.0;
  for (std::int64_t a = 0; a < nc; ++a) {
    for (std::int64_t b = 0; b < nv; ++b) {
      double err_coef = 0.0, abs_hat = 0.0, abs_t = 0.0;
      for (std::int64_t r = 0; r < rows; ++r) {
        const double k = coef(r, a), vv = std::abs(v(r, b));
        err_coef += (kU32 * std::abs(k) + kMinSub32) * vv;
        abs_hat += std::abs(static_cast<double>(coef_f[static_cast<std::size_t>(r * nc + a)])) * vv;
        abs_t += std::abs(k) * vv;
      }
      const double bound = (err_coef + gamma(c + depth, kU32) * abs_hat + g64 * abs_t) * (1.0 + g64);
      // dW1, dW3 [de, d] are (coef index, v index); dW2 [d, de] is (v index, coef index)
      const std::size_t i = static_cast<std::size_t>(coef_first ? a * nv + b : b * nc + a);
      const double want = coef_first ? exact(a, b) : exact(b, a);
      const double err = std::abs(static_cast<double>(got[i]) - want);
      EXPECT_LE(err, bound) << what << " element " << a << "," << b;
      if (bound > 0) worst = std::max(worst, err / bound);
    }
  }
  ::testing::Test::RecordProperty("worst_fraction_of_bound_" + what, std::to_string(worst));
}

TEST(ExpertDweightsFp32, WithinDerivedBoundOfExact) {
  for (const auto& [tokens, chunk] : {std::pair<std::int64_t, std::int64_t>{70, 3}, {500, 16}, {500, 128}}) {
    const Case c = make_case(tokens, 9);
    const ExpertDweightsFp32 got = run(c, chunk);
    const ExpertGrads exact = expert_backward(c.xr, &c.weight, c.w1, c.w3, c.w2, kLimit, c.dyr);
    const std::string tag = "T" + std::to_string(tokens) + "_C" + std::to_string(chunk);
    expect_within_bound(got.dw1, exact.dw1, c.dg, c.dgf, c.xr, true, chunk, c.rows, "dw1_" + tag);
    expect_within_bound(got.dw3, exact.dw3, c.du, c.duf, c.xr, true, chunk, c.rows, "dw3_" + tag);
    expect_within_bound(got.dw2, exact.dw2, c.h, c.hf, c.dyr, false, chunk, c.rows, "dw2_" + tag);
  }
}

TEST(ExpertDweightsFp32, RefusesBadInput) {
  Case c = make_case(20, 1);
  ASSERT_GE(c.rows, 3);
  EXPECT_THROW((void)expert_dweights_fp32(c.xf, c.dyf, c.tokens + 1, kD, c.routed, c.hf, c.dgf, c.duf, kDe),
               std::invalid_argument);  // x of the wrong size
  const std::vector<float> short_h(c.hf.begin(), c.hf.end() - 1);
  EXPECT_THROW((void)expert_dweights_fp32(c.xf, c.dyf, c.tokens, kD, c.routed, short_h, c.dgf, c.duf, kDe),
               std::invalid_argument);
  std::vector<std::int64_t> bad = c.routed;
  std::swap(bad[0], bad[1]);  // not ascending
  EXPECT_THROW((void)expert_dweights_fp32(c.xf, c.dyf, c.tokens, kD, bad, c.hf, c.dgf, c.duf, kDe),
               std::invalid_argument);
  bad = c.routed;
  bad[1] = bad[0];  // a token twice
  EXPECT_THROW((void)expert_dweights_fp32(c.xf, c.dyf, c.tokens, kD, bad, c.hf, c.dgf, c.duf, kDe),
               std::invalid_argument);
  bad = c.routed;
  bad.back() = c.tokens;  // outside [0, T)
  EXPECT_THROW((void)expert_dweights_fp32(c.xf, c.dyf, c.tokens, kD, bad, c.hf, c.dgf, c.duf, kDe),
               std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
