// Number formats (spec 01 §1.1, §1.2) against values derived independently of formats.cpp:
// closed-form decoders written from the spec 01 §1.1 table, the spec's stated rounding cases,
// and double-rounding traps that a double→float→format path gets wrong.
#include "dsv4/numerics/formats.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace dsv4 {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- hand formulas from the spec 01 §1.1 table (NaN for NaN patterns) ----
double table_fp16(std::uint32_t b) {
  const double s = (b & 0x8000u) ? -1.0 : 1.0;
  const int e = static_cast<int>((b >> 10) & 0x1Fu);
  const double m = b & 0x3FFu;
  if (e == 31) return m == 0 ? s * kInf : NAN;
  if (e == 0) return s * std::pow(2.0, -14) * (m / 1024.0);
  return s * std::pow(2.0, e - 15) * (1.0 + m / 1024.0);
}
double table_bf16(std::uint32_t b) {
  const double s = (b & 0x8000u) ? -1.0 : 1.0;
  const int e = static_cast<int>((b >> 7) & 0xFFu);
  const double m = b & 0x7Fu;
  if (e == 255) return m == 0 ? s * kInf : NAN;
  if (e == 0) return s * std::pow(2.0, -126) * (m / 128.0);
  return s * std::pow(2.0, e - 127) * (1.0 + m / 128.0);
}
double table_e4m3(std::uint32_t b) {
  const double s = (b & 0x80u) ? -1.0 : 1.0;
  const int e = static_cast<int>((b >> 3) & 0xFu);
  const double m = b & 0x7u;
  if (e == 15 && m == 7) return NAN;  // only NaN, no infinities
  if (e == 0) return s * std::pow(2.0, -6) * (m / 8.0);
  return s * std::pow(2.0, e - 7) * (1.0 + m / 8.0);
}
double table_e5m2(std::uint32_t b) {  // IEEE-style, bias 15 (as fp16 with 2 mantissa bits)
  const double s = (b & 0x80u) ? -1.0 : 1.0;
  const int e = static_cast<int>((b >> 2) & 0x1Fu);
  const double m = b & 0x3u;
  if (e == 31) return m == 0 ? s * kInf : NAN;
  if (e == 0) return s * std::pow(2.0, -14) * (m / 4.0);
  return s * std::pow(2.0, e - 15) * (1.0 + m / 4.0);
}
double table_e8m0(std::uint32_t b) { return b == 255 ? NAN : std::pow(2.0, static_cast<int>(b) - 127); }
double table_e2m1(std::uint32_t b) {  // spec 01 §1.1 code table
  constexpr double kMag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return ((b & 8u) ? -1.0 : 1.0) * kMag[b & 7u];
}

bool same(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

void check_all_patterns(const MinifloatFormat& f, std::uint32_t count, double (*table)(std::uint32_t)) {
  int nans = 0;
  for (std::uint32_t p = 0; p < count; ++p) {
    const double want = table(p);
    ASSERT_TRUE(same(decode_minifloat(f, p), want)) << f.name << " pattern 0x" << std::hex << p;
    if (std::isnan(want)) {
      ++nans;
      continue;
    }
    // Every non-NaN pattern is the RNE encoding of its own value (both overflow rules).
    EXPECT_EQ(encode_minifloat(f, want, Overflow::kToSpecial), p) << f.name << " 0x" << std::hex << p;
    if (!std::isinf(want)) {
      EXPECT_EQ(encode_minifloat(f, want, Overflow::kSaturateFinite), p) << f.name;
    }
  }
  // The canonical NaN is a NaN pattern of the format.
  if (f.has_nan) {
    EXPECT_TRUE(std::isnan(table(f.canonical_nan))) << f.name;
  }
  EXPECT_EQ(nans > 0, f.has_nan) << f.name;
}

TEST(Formats, DecodeEveryPatternFromSpecTable) {
  check_all_patterns(kFormatBF16, 1u << 16, table_bf16);
  check_all_patterns(kFormatFP16, 1u << 16, table_fp16);
  check_all_patterns(kFormatE4M3, 256, table_e4m3);
  check_all_patterns(kFormatE5M2, 256, table_e5m2);
  check_all_patterns(kFormatE8M0, 256, table_e8m0);
  check_all_patterns(kFormatE2M1, 16, table_e2m1);
  // bf16 → fp32 appends 16 zero bits (spec 01 §1.2).
  for (std::uint32_t p = 0; p < (1u << 16); ++p) {
    const float want = float_from_bits(p << 16);
    const float got = bf16_to_float(static_cast<std::uint16_t>(p));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got));
    } else {
      EXPECT_EQ(float_bits(got), p << 16);
    }
  }
}

TEST(Formats, RangeLimitsFromSpecTable) {
  EXPECT_EQ(max_finite(kFormatBF16), (2.0 - std::pow(2.0, -7)) * std::pow(2.0, 127));
  EXPECT_EQ(max_finite(kFormatFP16), 65504.0);
  EXPECT_EQ(max_finite(kFormatE4M3), 448.0);
  EXPECT_EQ(max_finite(kFormatE5M2), 57344.0);
  EXPECT_EQ(max_finite(kFormatE8M0), std::pow(2.0, 127));
  EXPECT_EQ(max_finite(kFormatE2M1), 6.0);
  EXPECT_EQ(min_positive(kFormatBF16), std::pow(2.0, -133));
  EXPECT_EQ(min_positive(kFormatFP16), std::pow(2.0, -24));
  EXPECT_EQ(min_positive(kFormatE4M3), std::pow(2.0, -9));
  EXPECT_EQ(min_positive(kFormatE5M2), std::pow(2.0, -16));
  EXPECT_EQ(min_positive(kFormatE8M0), std::pow(2.0, -127));
  EXPECT_EQ(min_positive(kFormatE2M1), 0.5);
}

// spec 01 §1.2, fp32 → E4M3 consequences of RNE with subnormals.
TEST(Formats, E4M3SpecRoundingCases) {
  const double t = std::pow(2.0, -10);
  EXPECT_EQ(float_to_e4m3(static_cast<float>(0.75 * t)), 0x00);
  EXPECT_EQ(float_to_e4m3(static_cast<float>(-0.75 * t)), 0x80);  // sign kept
  EXPECT_EQ(float_to_e4m3(std::nextafter(static_cast<float>(t), 0.0f)), 0x00);
  EXPECT_EQ(float_to_e4m3(static_cast<float>(t)), 0x00);  // tie between 0 and 2^-9 → 0 (even)
  EXPECT_EQ(float_to_e4m3(static_cast<float>(-t)), 0x80);
  EXPECT_EQ(float_to_e4m3(std::nextafter(static_cast<float>(t), 1.0f)), 0x01);  // just above → 2^-9
  EXPECT_EQ(float_to_e4m3(static_cast<float>(3 * t)), 0x02);                    // tie 2^-9 / 2·2^-9 → even (2)
  // Tie between the largest subnormal 0.875·2^-6 (0x07) and 2^-6 (0x08) goes to 2^-6.
  const float tie = static_cast<float>(0.9375 * std::pow(2.0, -6));
  EXPECT_EQ(float_to_e4m3(tie), 0x08);
  EXPECT_EQ(float_to_e4m3(std::nextafter(tie, 0.0f)), 0x07);
  // Top of the range: 464 is the tie between 448 (0x7E) and the missing 480.
  EXPECT_EQ(float_to_e4m3(464.0f, Overflow::kSaturateFinite), 0x7E);
  EXPECT_EQ(float_to_e4m3(464.0f, Overflow::kToSpecial), 0x7E);
  const float above = std::nextafter(464.0f, 1000.0f);
  EXPECT_EQ(float_to_e4m3(above, Overflow::kSaturateFinite), 0x7E);  // official kernels: satfinite
  EXPECT_EQ(float_to_e4m3(above, Overflow::kToSpecial), 0x7F);       // PyTorch .to(): NaN
  EXPECT_EQ(float_to_e4m3(-500.0f, Overflow::kSaturateFinite), 0xFE);
  EXPECT_EQ(float_to_e4m3(-500.0f, Overflow::kToSpecial), 0xFF);
  EXPECT_EQ(float_to_e4m3(480.0f, Overflow::kToSpecial), 0x7F);
  EXPECT_EQ(float_to_e4m3(INFINITY, Overflow::kSaturateFinite), 0x7E);
  EXPECT_EQ(float_to_e4m3(INFINITY, Overflow::kToSpecial), 0x7F);
  EXPECT_EQ(float_to_e4m3(NAN), 0x7F);
}

// spec 01 §1.2, fp32 → E2M1 midpoints.
TEST(Formats, E2M1SpecMidpoints) {
  struct Case {
    float in;
    std::uint8_t code;
  };
  constexpr Case kCases[] = {{0.25f, 0x0}, {0.75f, 0x2},  {1.25f, 0x2},    {1.75f, 0x4},  {2.5f, 0x4},
                             {3.5f, 0x6},  {5.0f, 0x6},   {-0.25f, 0x8},   {-0.75f, 0xA}, {-5.0f, 0xE},
                             {7.0f, 0x7},  {-1e30f, 0xF}, {INFINITY, 0x7}, {NAN, 0x7}};
  for (const Case& c : kCases) EXPECT_EQ(float_to_e2m1(c.in), c.code) << c.in;
  EXPECT_EQ(e2m1_to_float(0x8), 0.0f);
  EXPECT_TRUE(std::signbit(e2m1_to_float(0x8)));
}

TEST(Formats, BF16OverflowAndTies) {
  EXPECT_EQ(float_to_bf16(float_from_bits(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX → +inf
  EXPECT_EQ(float_to_bf16(float_from_bits(0xFF7FFFFFu)), 0xFF80);
  EXPECT_EQ(float_to_bf16(float_from_bits(0x7F7F8000u)), 0x7F80);  // tie with odd 0x7F7F → up → inf
  EXPECT_EQ(float_to_bf16(float_from_bits(0x7F7F7FFFu)), 0x7F7F);
  EXPECT_EQ(float_to_bf16(float_from_bits(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(float_to_bf16(float_from_bits(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(double_to_bf16(1e300), 0x7F80);
  EXPECT_EQ(double_to_bf16(-1e300), 0xFF80);
  EXPECT_EQ(float_to_bf16(NAN), kFormatBF16.canonical_nan);
  EXPECT_EQ(float_to_bf16(float_from_bits(0x00000001u)), 0x0000);  // 2^-149 → +0
  EXPECT_EQ(float_to_bf16(float_from_bits(0x80000001u)), 0x8000);  // → -0
  // The spec's bit recipe (add 0x7FFF + bit16, keep the upper half) on a few finite patterns.
  for (std::uint32_t b : {0x3F800001u, 0x3F80FFFFu, 0x40490FDBu, 0xC2F6E979u, 0x00012345u, 0x7F7F7FFFu}) {
    const std::uint32_t want = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
    EXPECT_EQ(float_to_bf16(float_from_bits(b)), want) << std::hex << b;
  }
}

TEST(Formats, E8M0PowersOfTwoExactInEveryMode) {
  for (int e = -127; e <= 127; ++e) {
    const double x = std::ldexp(1.0, e);
    const auto want = static_cast<std::uint8_t>(e + 127);
    for (auto r : {E8M0Rounding::kTowardZero, E8M0Rounding::kTowardPositiveInfinity, E8M0Rounding::kNearestEven}) {
      EXPECT_EQ(encode_e8m0(x, r, Overflow::kSaturateFinite), want) << e;
    }
  }
  EXPECT_EQ(encode_e8m0(3.0, E8M0Rounding::kTowardZero, Overflow::kSaturateFinite), 128);
  EXPECT_EQ(encode_e8m0(3.0, E8M0Rounding::kTowardPositiveInfinity, Overflow::kSaturateFinite), 129);
  EXPECT_EQ(encode_e8m0(1.4, E8M0Rounding::kNearestEven, Overflow::kSaturateFinite), 127);
  EXPECT_EQ(encode_e8m0(1e39, E8M0Rounding::kTowardPositiveInfinity, Overflow::kSaturateFinite), 0xFE);
  EXPECT_EQ(encode_e8m0(1e39, E8M0Rounding::kTowardPositiveInfinity, Overflow::kToSpecial), 0xFF);
}

// Double rounding: x lies just above a tie of the target format, by less than half a float
// ulp, so fl32(x) IS the tie and the float path rounds it to even (down), while the single
// rounding of x must go up. Both results are asserted, so a double encoder that narrowed to
// float first would fail.
struct Trap {
  const char* name;
  double tie;           // a float-representable midpoint whose even neighbour is below it
  std::uint32_t below;  // pattern of the lower (even) neighbour
  std::uint32_t above;  // pattern of the upper (odd) neighbour
  std::uint32_t sign;   // the format's sign bit
  std::uint32_t (*from_double)(double);
  std::uint32_t (*from_float)(float);
};
std::uint32_t bf16_d(double x) { return double_to_bf16(x); }
std::uint32_t bf16_f(float x) { return float_to_bf16(x); }
std::uint32_t fp16_d(double x) { return double_to_fp16(x); }
std::uint32_t fp16_f(float x) { return float_to_fp16(x); }
std::uint32_t e4m3_d(double x) { return double_to_e4m3(x); }
std::uint32_t e4m3_f(float x) { return float_to_e4m3(x); }
std::uint32_t e5m2_d(double x) { return double_to_e5m2(x); }
std::uint32_t e5m2_f(float x) { return float_to_e5m2(x); }
std::uint32_t e2m1_d(double x) { return double_to_e2m1(x); }
std::uint32_t e2m1_f(float x) { return float_to_e2m1(x); }

TEST(Formats, DoubleEncoderRoundsOnce) {
  const Trap kTraps[] = {
      {"bf16 1+2^-8", 1.0 + 0x1p-8, 0x3F80, 0x3F81, 0x8000, bf16_d, bf16_f},
      {"bf16 subnormal 2^-134", 0x1p-134, 0x0000, 0x0001, 0x8000, bf16_d, bf16_f},
      {"fp16 1+2^-11", 1.0 + 0x1p-11, 0x3C00, 0x3C01, 0x8000, fp16_d, fp16_f},
      {"e4m3 1+2^-4", 1.0625, 0x38, 0x39, 0x80, e4m3_d, e4m3_f},
      {"e4m3 subnormal 2^-10", 0x1p-10, 0x00, 0x01, 0x80, e4m3_d, e4m3_f},
      {"e5m2 1.125", 1.125, 0x3C, 0x3D, 0x80, e5m2_d, e5m2_f},
      {"e2m1 2.5", 2.5, 0x4, 0x5, 0x8, e2m1_d, e2m1_f},
      {"e2m1 0.25", 0.25, 0x0, 0x1, 0x8, e2m1_d, e2m1_f},
  };
  for (const Trap& t : kTraps) {
    const float tie_f = static_cast<float>(t.tie);
    ASSERT_EQ(static_cast<double>(tie_f), t.tie) << t.name;
    // A quarter of the float ulp above the tie: fl32(x) == tie.
    const double ulp = static_cast<double>(std::nextafter(tie_f, INFINITY)) - t.tie;
    const double x = t.tie + ulp / 4;
    ASSERT_EQ(static_cast<float>(x), tie_f) << t.name;
    EXPECT_EQ(t.from_double(x), t.above) << t.name;                     // one rounding: just above the tie → up
    EXPECT_EQ(t.from_float(static_cast<float>(x)), t.below) << t.name;  // two roundings: → even
    EXPECT_NE(t.from_double(x), t.from_float(static_cast<float>(x))) << t.name;
    EXPECT_EQ(t.from_double(t.tie), t.below) << t.name;  // the tie itself → even
    // The mirror image below zero.
    EXPECT_EQ(t.from_double(-x), t.sign | t.above) << t.name;
  }
  // fp16 overflow threshold 65520 = 65504 + 16: the tie rounds to even, which is +inf (0x7BFF is
  // odd); just below it a double path must stay finite while the float path reaches the tie.
  const double below_tie = 65520.0 - 0x1p-12;  // within half a float ulp (2^-9 at 65520)
  ASSERT_EQ(static_cast<float>(below_tie), 65520.0f);
  EXPECT_EQ(double_to_fp16(below_tie), 0x7BFF);
  EXPECT_EQ(float_to_fp16(static_cast<float>(below_tie)), 0x7C00);
}

TEST(Formats, NamedNaNs) {
  EXPECT_EQ(double_to_fp16(NAN), 0x7FFF);
  EXPECT_EQ(double_to_fp16(-NAN), 0x7FFF);
  EXPECT_EQ(double_to_e5m2(NAN), 0x7F);
  EXPECT_EQ(double_to_e4m3(-NAN), 0x7F);
  EXPECT_EQ(encode_e8m0(NAN, E8M0Rounding::kTowardZero, Overflow::kSaturateFinite), 0xFF);
  EXPECT_EQ(double_to_e2m1(NAN), 0x7);
  EXPECT_EQ(double_to_e5m2(1e6, Overflow::kToSpecial), 0x7C);
  EXPECT_EQ(double_to_e5m2(-1e6, Overflow::kSaturateFinite), 0xFB);
}

// double_to_bf16 / bf16_to_float have bit-level fast paths: they must equal the one general
// rounding routine everywhere. Every bf16 pattern is decoded both ways; around every pattern the
// values it takes, the exact midpoints to its neighbour (ties, both parities), one double ulp on
// either side of them, and seeded random doubles over the whole range (subnormal to overflow,
// NaN and infinities) are encoded both ways.
TEST(Formats, BF16FastPathsEqualTheGeneralRoutine) {
  const auto general = [](double x) {
    return static_cast<std::uint16_t>(encode_minifloat(kFormatBF16, x, Overflow::kToSpecial));
  };
  const auto same_float = [](float a, float b) {
    return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b) || (std::isnan(a) && std::isnan(b));
  };
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const auto p = static_cast<std::uint16_t>(b);
    ASSERT_TRUE(same_float(bf16_to_float(p), static_cast<float>(decode_minifloat(kFormatBF16, p)))) << b;
    const double v = decode_minifloat(kFormatBF16, p);
    if (!std::isfinite(v)) continue;
    const double next = decode_minifloat(kFormatBF16, static_cast<std::uint16_t>(b + 1));
    std::vector<double> probes{v};
    if (std::isfinite(next) && (b & 0x7FFFu) != 0x7FFFu && std::fabs(next) > std::fabs(v)) {
      const double mid = v + (next - v) / 2;  // exact in double
      probes.insert(probes.end(), {mid, std::nextafter(mid, 0.0), std::nextafter(mid, 2 * mid)});
    }
    for (const double x : probes) ASSERT_EQ(double_to_bf16(x), general(x)) << std::hexfloat << x;
  }
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 2'000'000; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const double x = std::bit_cast<double>(state);  // every exponent, NaN and inf included
    ASSERT_EQ(double_to_bf16(x), general(x)) << std::hexfloat << x;
    const double y =
        std::ldexp(static_cast<double>(state >> 11), -53) * std::ldexp(1.0, static_cast<int>(state % 280) - 140);
    ASSERT_EQ(double_to_bf16(y), general(y)) << std::hexfloat << y;
  }
}

}  // namespace
}  // namespace dsv4
