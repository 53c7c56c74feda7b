// The official-style mHC parameter gradients (spec 06 §6.14; ref/train mhc_backward_fp32.hpp):
// bit-identical for 1, 2 and 4 threads and over reruns, equal to a naive transcription of the
// documented rule (partitions of C tokens, fmaf per element over the tokens ascending — and for
// hc_*_scale over each token's mixes of the group ascending — then the pairwise tree), within a
// derived fp32 bound of the exact backward's dfn, dbase, dscale (hc_pre_backward, hc_head_backward;
// spec 06 §6.12) when the per-token coefficients are the exact ones rounded to fp32, and a mutated
// token order gives other bits (the equality can fail).
#include "dsv4/train/mhc_backward_fp32.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/train/hc_head_backward.hpp"
#include "dsv4/train/hc_pre_backward.hpp"
#include "support/fp32_rule_port.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

// The shared §6.14 test pieces (fp32_rule_port.hpp) and the random matrices (random_matrix.hpp).
using namespace test;

constexpr std::int64_t kN = 4, kD = 8, kLen = kN * kD, kIters = 20;
constexpr double kHcEps = 1e-6, kNormEps = 1e-6;

// One backward's inputs and its exact gradients: hc_pre (three scales, count (2+n)n) or hc_head
// (one scale, count n).
struct Case {
  bool head = false;
  std::int64_t tokens = 0, count = 0, scales = 0;
  Mat x;              // [T, n·d] bf16 (an engine's state)
  MhcParamRows rows;  // the exact per-token coefficients
  Mat dfn;            // exact, [count, n·d]
  Vec dbase, dscale;  // exact
  std::vector<float> xf, muf, daf, grf;
};

Case make_case(bool head, std::int64_t tokens, std::uint64_t seed) {
  Case c;
  c.head = head;
  c.tokens = tokens;
  c.count = head ? kN : (2 + kN) * kN;
  c.scales = head ? 1 : 3;
  c.x = test::random_bf16_matrix(tokens, kLen, seed, 1, 1.0);
  const Mat fn = test::random_normal_matrix(c.count, kLen, seed, 2, 0.2);
  const Vec base = test::random_normal_matrix(c.count, 1, seed, 3, 0.5).col(0);
  const Mat dy = test::random_bf16_matrix(tokens, kD, seed, 4, 0.01);
  if (head) {
    const HcHeadGrads g = hc_head_backward(c.x, kN, fn, base, 0.7, kHcEps, kNormEps, dy);
    c.rows = g.rows;
    c.dfn = g.dfn;
    c.dbase = g.dbase;
    c.dscale = Vec::Constant(1, g.dscale);
  } else {
    Vec scale(3);
    scale << 0.6, 0.9, 1.3;
    const Mat dpost = test::random_normal_matrix(tokens, kN, seed, 5, 0.01);
    const Mat dcomb = test::random_normal_matrix(tokens, kN * kN, seed, 6, 0.01);
    const HcPreGrads g = hc_pre_backward(c.x, kN, fn, base, scale, kIters, kHcEps, kNormEps, dy, dpost, dcomb,
                                         Mat::Zero(tokens, c.count));
    c.rows = g.rows;
    c.dfn = g.dfn;
    c.dbase = g.dbase;
    c.dscale = g.dscale;
  }
  c.xf = to_floats(c.x);
  c.muf = to_floats(c.rows.mixes);
  c.daf = to_floats(c.rows.da);
  c.grf = to_floats(c.rows.gr);
  return c;
}

MhcParamGradsFp32 run(const Case& c, std::int64_t chunk) {
  return mhc_dparams_fp32(c.xf, c.tokens, kN, kD, c.muf, c.daf, c.grf, c.count, c.scales, PartitionRule{chunk});
}

// The rule written plainly: partitions of C tokens, `add_token(t, buffer)` adds token t's terms to
// a partition's buffer (tokens ascending, or descending within each partition: the mutation), then
// the tree in its recursive statement.
std::vector<float> naive(std::int64_t tokens, std::int64_t size, std::int64_t chunk, bool descending,
                         const std::function<void(std::int64_t, std::vector<float>&)>& add_token) {
  const std::int64_t p_count = (tokens + chunk - 1) / chunk;
  std::vector<std::vector<float>> buf(static_cast<std::size_t>(p_count), std::vector<float>(size, 0.0f));
  for (std::int64_t p = 0; p < p_count; ++p) {
    const std::int64_t t0 = p * chunk, t1 = std::min(tokens, t0 + chunk);
    for (std::int64_t i = 0; i < t1 - t0; ++i) add_token(descending ? t1 - 1 - i : t0 + i, buf[p]);
  }
  std::vector<float> out(size, 0.0f);
  if (p_count == 0) return out;
  for (std::size_t e = 0; e < out.size(); ++e) out[e] = tree(buf, e, 0, static_cast<std::size_t>(p_count));
  return out;
}

// The group of mix m (spec 04 §4.3): hc_pre's pre, post and res mixes; hc_head's one scale.
std::int64_t group(const Case& c, std::int64_t m) {
  if (c.head) return 0;
  if (m < kN) return 0;
  return m < 2 * kN ? 1 : 2;
}

MhcParamGradsFp32 naive_all(const Case& c, std::int64_t chunk, bool descending = false) {
  const std::int64_t K = c.count;
  MhcParamGradsFp32 out;
  out.dfn = naive(c.tokens, K * kLen, chunk, descending, [&](std::int64_t t, std::vector<float>& b) {
    for (std::int64_t m = 0; m < K; ++m)
      for (std::int64_t i = 0; i < kLen; ++i)
        b[m * kLen + i] = std::fma(c.grf[t * K + m], c.xf[t * kLen + i], b[m * kLen + i]);
  });
  out.dbase = naive(c.tokens, K, chunk, descending, [&](std::int64_t t, std::vector<float>& b) {
    for (std::int64_t m = 0; m < K; ++m) b[m] = std::fma(c.daf[t * K + m], 1.0f, b[m]);
  });
  out.dscale = naive(c.tokens, c.scales, chunk, descending, [&](std::int64_t t, std::vector<float>& b) {
    for (std::int64_t m = 0; m < K; ++m) b[group(c, m)] = std::fma(c.muf[t * K + m], c.daf[t * K + m], b[group(c, m)]);
  });
  return out;
}

const std::pair<std::int64_t, std::int64_t> kCases[] = {{0, 4}, {1, 128}, {9, 2}, {70, 3}, {300, 16}, {300, 128}};

TEST(MhcDparamsFp32, EqualsNaiveRuleForAnyThreadCount) {
  ThreadGuard guard;
  for (const bool head : {false, true}) {
    for (const auto& [tokens, chunk] : kCases) {
      const Case c = make_case(head, tokens, 7);
      const MhcParamGradsFp32 want = naive_all(c, chunk);
      for (int threads : {1, 2, 4}) {
        set_gemm_threads(threads);
        for (int rerun = 0; rerun < 2; ++rerun) {
          const MhcParamGradsFp32 got = run(c, chunk);
          const std::string at = (head ? "hc_head" : "hc_pre") + std::string(" T ") + std::to_string(tokens) + " C " +
                                 std::to_string(chunk) + " threads " + std::to_string(threads);
          EXPECT_TRUE(same_bits(got.dfn, want.dfn)) << at;
          EXPECT_TRUE(same_bits(got.dbase, want.dbase)) << at;
          EXPECT_TRUE(same_bits(got.dscale, want.dscale)) << at;
        }
      }
    }
  }
}

// The equality can fail: tokens descending within each partition give other bits, and so does
// another partition constant (on the larger cases, for each of the three gradients).
TEST(MhcDparamsFp32, MutatedOrderGivesOtherBits) {
  for (const bool head : {false, true}) {
    for (const auto& [tokens, chunk] : {std::pair<std::int64_t, std::int64_t>{300, 16}, {300, 128}}) {
      const Case c = make_case(head, tokens, 7);
      const MhcParamGradsFp32 got = run(c, chunk), mutated = naive_all(c, chunk, /*descending=*/true),
                              other_c = run(c, chunk + 1);
      const std::string at = (head ? "hc_head" : "hc_pre") + std::string(" C ") + std::to_string(chunk);
      EXPECT_FALSE(same_bits(got.dfn, mutated.dfn)) << at;
      EXPECT_FALSE(same_bits(got.dbase, mutated.dbase)) << at;
      EXPECT_FALSE(same_bits(got.dscale, mutated.dscale)) << at;
      EXPECT_FALSE(same_bits(got.dfn, other_c.dfn)) << at;
    }
  }
}

// Bound, per element e of out = Σ_terms a·b (spec 06 §6.14's bound with the coefficients' own
// rounding): each operand that is an fp32-rounded coefficient errs by ≤ u₃₂|v| + 2⁻¹⁴⁹, so
// |fl(a)fl(b) − ab| ≤ err_a|b| + |a|err_b + err_a err_b; each computed term passes through ≤ c + D
// roundings (c = the fmaf an element takes in one partition: min(C, T) times its terms per token; D
// the tree depth), so |out − Σ ab| ≤ Σ|fl(a)fl(b) − ab| + γ₃₂(c + D)·Σ|fl(a)fl(b)|; the exact
// backward's double sums are within γ₆₄(T·terms)·Σ|ab| of Σ ab.
struct Term {
  double a, b;
  bool a_rounded, b_rounded;
};
void expect_within_bound(const std::vector<float>& got, const std::vector<double>& exact, std::int64_t chunk,
                         std::int64_t tokens, std::int64_t terms_per_token,
                         const std::function<std::vector<Term>(std::size_t)>& terms_of, const std::string& what) {
  const double c = static_cast<double>(std::min(chunk, tokens) * terms_per_token);
  const double depth = static_cast<double>(PartitionRule{chunk}.tree_depth(tokens));
  const double g64 = gamma(static_cast<double>(tokens * terms_per_token), kU64);
  double worst = 0.0;
  ASSERT_EQ(got.size(), exact.size()) << what;
  for (std::size_t e = 0; e < got.size(); ++e) {
    double err_coef = 0.0, abs_hat = 0.0, abs_t = 0.0;
    for (const Term& t : terms_of(e)) {
      const double ea = t.a_rounded ? kU32 * std::abs(t.a) + kMinSub32 : 0.0;
      const double eb = t.b_rounded ? kU32 * std::abs(t.b) + kMinSub32 : 0.0;
      err_coef += ea * std::abs(t.b) + std::abs(t.a) * eb + ea * eb;
      abs_hat += (std::abs(t.a) + ea) * (std::abs(t.b) + eb);
      abs_t += std::abs(t.a * t.b);
    }
    const double bound = (err_coef + gamma(c + depth, kU32) * abs_hat + g64 * abs_t) * (1.0 + g64);
    const double err = std::abs(static_cast<double>(got[e]) - exact[e]);
    EXPECT_LE(err, bound) << what << " element " << e;
    if (bound > 0) worst = std::max(worst, err / bound);
  }
  ::testing::Test::RecordProperty("worst_fraction_of_bound_" + what, std::to_string(worst));
}

std::vector<double> flat(const Mat& m) { return {m.data(), m.data() + m.size()}; }

TEST(MhcDparamsFp32, WithinDerivedBoundOfExact) {
  for (const bool head : {false, true}) {
    for (const auto& [tokens, chunk] : {std::pair<std::int64_t, std::int64_t>{70, 3}, {300, 16}, {300, 128}}) {
      const Case c = make_case(head, tokens, 9);
      const MhcParamGradsFp32 got = run(c, chunk);
      const std::string tag = (head ? "hc_head_T" : "hc_pre_T") + std::to_string(tokens) + "_C" + std::to_string(chunk);
      const MhcParamRows& r = c.rows;
      const auto T = static_cast<Eigen::Index>(tokens);
      expect_within_bound(
          got.dfn, flat(c.dfn), chunk, tokens, 1,
          [&](std::size_t e) {
            const auto m = static_cast<Eigen::Index>(e) / kLen, i = static_cast<Eigen::Index>(e) % kLen;
            std::vector<Term> ts;
            for (Eigen::Index t = 0; t < T; ++t) ts.push_back({r.gr(t, m), c.x(t, i), true, false});
            return ts;
          },
          "dfn_" + tag);
      expect_within_bound(
          got.dbase, flat(Mat(c.dbase)), chunk, tokens, 1,
          [&](std::size_t e) {
            std::vector<Term> ts;
            for (Eigen::Index t = 0; t < T; ++t)
              ts.push_back({r.da(t, static_cast<Eigen::Index>(e)), 1.0, true, false});
            return ts;
          },
          "dbase_" + tag);
      const std::int64_t per_group = head ? kN : kN * kN;  // the most mixes one scale takes per token
      expect_within_bound(
          got.dscale, flat(Mat(c.dscale)), chunk, tokens, per_group,
          [&](std::size_t e) {
            std::vector<Term> ts;
            for (Eigen::Index t = 0; t < T; ++t)
              for (std::int64_t m = 0; m < c.count; ++m)
                if (group(c, m) == static_cast<std::int64_t>(e)) ts.push_back({r.mixes(t, m), r.da(t, m), true, true});
            return ts;
          },
          "dscale_" + tag);
    }
  }
}

TEST(MhcDparamsFp32, RefusesBadInput) {
  const Case c = make_case(false, 10, 1);
  const auto call = [&](std::int64_t tokens, std::int64_t count, std::int64_t scales, std::size_t drop_x) {
    const std::vector<float> x(c.xf.begin(), c.xf.end() - static_cast<std::ptrdiff_t>(drop_x));
    return mhc_dparams_fp32(x, tokens, kN, kD, c.muf, c.daf, c.grf, count, scales);
  };
  EXPECT_NO_THROW((void)call(10, c.count, 3, 0));
  EXPECT_THROW((void)call(11, c.count, 3, 0), std::invalid_argument);  // T does not match
  EXPECT_THROW((void)call(10, c.count, 3, 1), std::invalid_argument);  // x one short
  EXPECT_THROW((void)call(10, c.count, 1, 0), std::invalid_argument);  // hc_pre's count with one scale
  EXPECT_THROW((void)call(10, c.count, 2, 0), std::invalid_argument);  // no such mHC site
}

}  // namespace
}  // namespace dsv4
