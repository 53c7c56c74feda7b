// C1 (spec 01 §1.11): exact sums rounded once. Truth comes from int64 arithmetic and the
// hardware's correctly rounded int64 → float conversion, independent of the implementation.
#include "dsv4/numerics/exact_sum.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {
namespace {

TEST(ExactSum, CatastrophicCancellationIsExact) {
  const std::vector<double> t{0x1.0p100, 3.0, -0x1.0p100};
  EXPECT_EQ(exact_sum_to_fp32(t), 3.0f);
  EXPECT_EQ(exact_sum_to_double(t), 3.0);
}

TEST(ExactSum, TinyTermDecidesAMidpoint) {
  // 2^24 + 1 is the midpoint between the fp32 neighbours 2^24 and 2^24 + 2.
  const double mid = 16777217.0;
  EXPECT_EQ(exact_sum_to_fp32(std::vector<double>{mid}), 16777216.0f);  // tie → even
  EXPECT_EQ(exact_sum_to_fp32(std::vector<double>{mid, 0x1.0p-60}), 16777218.0f);
  EXPECT_EQ(exact_sum_to_fp32(std::vector<double>{mid, -0x1.0p-60}), 16777216.0f);
  // The same with the tiny term hidden under a large cancelling pair: a plain double sum loses it.
  const std::vector<double> hidden{mid, 0x1.0p80, 0x1.0p-60, -0x1.0p80};
  double naive = 0.0;
  for (double v : hidden) naive += v;
  EXPECT_NE(static_cast<float>(naive), 16777218.0f) << "the test must defeat a naive double sum";
  EXPECT_EQ(exact_sum_to_fp32(hidden), 16777218.0f);
}

TEST(ExactSum, MatchesIntegerTruthOnRandomTerms) {
  // Terms k_i · 2^-20 with |k_i| < 2^40: the exact sum of ≤ 64 terms is an int64 multiple of
  // 2^-20, and (float)int64 is a correctly rounded conversion.
  const CounterRng rng(7, 1);
  std::uint64_t idx = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    const int n = 1 + static_cast<int>(rng.words(idx++)[0] % 64);
    std::vector<double> terms;
    std::int64_t total = 0;
    for (int i = 0; i < n; ++i) {
      const auto w = rng.words(idx++);
      std::int64_t k =
          static_cast<std::int64_t>((static_cast<std::uint64_t>(w[0]) << 8) ^ w[1]) % (std::int64_t{1} << 40);
      if (w[2] & 1) k = -k;
      total += k;
      terms.push_back(std::ldexp(static_cast<double>(k), -20));
    }
    const float truth = std::ldexp(static_cast<float>(total), -20);
    ASSERT_EQ(exact_sum_to_fp32(terms), truth) << "trial " << trial;
  }
}

// Truth over the whole double range (subnormals to 2^1023, cancellation, ties): the exact sum as
// a Boost.Multiprecision integer N · 2^-1074, rounded here bit by bit — independent of the
// implementation's base-2^32 digits.
double rounded_truth(const std::vector<double>& terms, int precision, int min_exp) {
  BigInt n = 0;
  for (const double t : terms) {
    int e = 0;
    const double fr = std::frexp(t, &e);
    auto m = static_cast<std::int64_t>(std::ldexp(fr, 53));  // t = m · 2^(e − 53)
    int shift = e - 53 + 1074;
    if (shift < 0) {
      m /= std::int64_t{1} << -shift;
      shift = 0;
    }
    n += BigInt(m) << shift;
  }
  if (n == 0) return 0.0;
  const bool negative = n < 0;
  const BigInt a = negative ? BigInt(-n) : n;
  const int msb = static_cast<int>(boost::multiprecision::msb(a));
  const int quantum = std::max(msb - 1074, min_exp) - (precision - 1);
  const int shift = quantum + 1074;
  BigInt q = a >> shift;
  const BigInt rem = a - (q << shift);
  if (shift > 0) {
    const BigInt half = BigInt(1) << (shift - 1);
    if (rem > half || (rem == half && (q & 1) != 0)) q += 1;
  }
  const double v = std::ldexp(static_cast<double>(q), quantum);
  return negative ? -v : v;
}

TEST(ExactSum, MatchesBigIntTruthOverTheWholeRange) {
  const CounterRng rng(21, 3);
  std::uint64_t idx = 0;
  std::int64_t fallbacks_seen = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const int n = 1 + static_cast<int>(rng.words(idx++)[0] % 40);
    // exponent spread: narrow (ties and midpoints), wide, or the subnormal / huge extremes
    const auto kind = rng.words(idx++)[0] % 4;
    std::vector<double> terms;
    for (int i = 0; i < n; ++i) {
      const auto w = rng.words(idx++);
      const double mant = static_cast<double>(w[0] % (1u << 24)) / (1u << 12) + 1.0;  // short mantissas tie often
      int e = 0;
      if (kind == 0) e = static_cast<int>(w[1] % 8) - 4;
      if (kind == 1) e = static_cast<int>(w[1] % 400) - 200;
      if (kind == 2) e = -1080 + static_cast<int>(w[1] % 40);
      if (kind == 3) e = 960 + static_cast<int>(w[1] % 50);
      double t = std::ldexp(w[2] % 3 == 0 ? std::ldexp(static_cast<double>(w[3]), -32) + 1.0 : mant, e);
      if (!std::isfinite(t)) t = std::ldexp(1.0, 1000);
      if (w[1] & 0x100) t = -t;
      terms.push_back(t);
      if (i > 0 && (w[1] & 0x200)) terms.push_back(-terms[static_cast<std::size_t>(i - 1)]);  // cancellation
    }
    const auto before = exact_sum_stats();
    const float f = exact_sum_to_fp32(terms);
    fallbacks_seen += static_cast<std::int64_t>(exact_sum_stats().fallbacks - before.fallbacks);
    const double truth32 = rounded_truth(terms, 24, -126);
    const float expect32 = std::fabs(truth32) >= 0x1.0p128 ? std::copysign(INFINITY, static_cast<float>(truth32))
                                                           : static_cast<float>(truth32);
    ASSERT_EQ(std::bit_cast<std::uint32_t>(f), std::bit_cast<std::uint32_t>(expect32)) << "trial " << trial;
    const double d = exact_sum_to_double(terms);
    ASSERT_EQ(std::bit_cast<std::uint64_t>(d), std::bit_cast<std::uint64_t>(rounded_truth(terms, 53, -1022)))
        << "trial " << trial;
  }
  EXPECT_GT(fallbacks_seen, 50) << "the exact path must be exercised, not only the fast one";
}

TEST(ExactSum, OrderIndependentBits) {
  const CounterRng rng(11, 2);
  std::vector<double> terms;
  for (std::uint64_t i = 0; i < 4096; ++i) terms.push_back(std::ldexp(rng.normal(i), static_cast<int>(i % 60) - 30));
  const float ref = exact_sum_to_fp32(terms);
  std::mt19937 g(3);
  for (int r = 0; r < 10; ++r) {
    std::shuffle(terms.begin(), terms.end(), g);
    ASSERT_EQ(exact_sum_to_fp32(terms), ref);
  }
}

TEST(ExactSum, FallbackIsCountedWhenTheBoundCannotDecide) {
  const auto before = exact_sum_stats();
  (void)exact_sum_to_fp32(std::vector<double>{16777217.0, 0x1.0p80, -0x1.0p80});
  const auto after = exact_sum_stats();
  EXPECT_EQ(after.fallbacks, before.fallbacks + 1);
}

TEST(ExactSum, OverflowRoundsToInfinityAndSubnormalsAreKept) {
  EXPECT_TRUE(std::isinf(exact_sum_to_fp32(std::vector<double>{0x1.0p127, 0x1.0p127})));
  const float sub = exact_sum_to_fp32(std::vector<double>{0x1.0p-149, 0x1.0p-149, 0x1.0p-149});
  EXPECT_EQ(sub, 0x1.8p-148f);                                          // 3·2^-149 is representable
  EXPECT_EQ(exact_sum_to_fp32(std::vector<double>{0x1.0p-150}), 0.0f);  // tie to even (0)
  EXPECT_EQ(exact_sum_to_fp32(std::vector<double>{0x1.0p-150, 0x1.0p-200}), 0x1.0p-149f);
}

TEST(ExactSum, DeterminedRoundingIsConservative) {
  float out = 0.0f;
  EXPECT_TRUE(fp32_rounding_determined(1.0, 0x1.0p-30, &out));
  EXPECT_EQ(out, 1.0f);
  EXPECT_FALSE(fp32_rounding_determined(16777217.0, 0x1.0p-40, &out));  // straddles a midpoint
}

}  // namespace
}  // namespace dsv4
