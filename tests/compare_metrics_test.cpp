// oracle/compare metrics (metrics.hpp, ulp.hpp): hand-derived ULP distances, DeepGEMM's cosine
// diff on cases with known values, special values, the off-grid check, and the fast kernel
// (every width, every thread count) against a plain scalar evaluation of the same definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <vector>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/ulp.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4::compare {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<MetricKernel> kernels() {
  std::vector<MetricKernel> k{MetricKernel::kPortable};
  if (metric_kernel_supported(MetricKernel::kAvx2)) k.push_back(MetricKernel::kAvx2);
  if (metric_kernel_supported(MetricKernel::kAvx512)) k.push_back(MetricKernel::kAvx512);
  return k;
}

double bf16(std::uint16_t bits) { return bf16_to_float(bits); }

// ---- ULP grids and distances, derived by hand ----

TEST(Ulp, GridsOfTheFormats) {
  const UlpGrid b = ulp_grid(DType::kBF16);
  EXPECT_EQ(b.mantissa_bits, 7);
  EXPECT_EQ(b.min_exponent, -126);
  EXPECT_EQ(b.max_exponent, 127);
  EXPECT_EQ(b.max_finite_ordinal, 0x7F7Fu);
  EXPECT_EQ(ulp_grid(DType::kF16).max_finite_ordinal, 0x7BFFu);
  EXPECT_EQ(ulp_grid(DType::kE4M3).max_finite_ordinal, 0x7Eu);  // 448
  EXPECT_EQ(ulp_grid(DType::kE4M3).max_exponent, 8);
  EXPECT_FALSE(ulp_grid(DType::kE4M3).has_infinity);
  EXPECT_EQ(ulp_grid(DType::kE5M2).max_finite_ordinal, 0x7Bu);
  EXPECT_EQ(ulp_grid(DType::kE2M1x2).max_finite_ordinal, 7u);  // 6.0
  EXPECT_EQ(ulp_grid(DType::kF32).max_finite_ordinal, 0x7F7FFFFFu);
  EXPECT_THROW(ulp_grid(DType::kI32), std::invalid_argument);
  EXPECT_THROW(ulp_grid(DType::kE8M0), std::invalid_argument);
  // ulp(1) = 2^-7 in bf16, 2^-23 in fp32, 2^-3 in e4m3; the subnormal spacing at 0.
  EXPECT_EQ(ulp_at(b, 1.0), 0x1.0p-7);
  EXPECT_EQ(ulp_at(b, 1.99), 0x1.0p-7);
  EXPECT_EQ(ulp_at(b, -2.0), 0x1.0p-6);
  EXPECT_EQ(ulp_at(b, 0.0), 0x1.0p-133);
  EXPECT_EQ(ulp_at(ulp_grid(DType::kF32), 1.0), 0x1.0p-23);
  EXPECT_EQ(ulp_at(ulp_grid(DType::kE4M3), 1.0), 0.125);
  EXPECT_EQ(ulp_at(ulp_grid(DType::kE4M3), 1000.0), 32.0);  // the top binade [256, 448]
}

TEST(Ulp, Bf16NeighboursAreOneUlpApart) {
  const UlpGrid g = ulp_grid(DType::kBF16);
  // 1.0 = 0x3F80; its neighbours 0x3F81 = 1 + 2^-7 and 0x3F7F = 1 − 2^-8.
  EXPECT_EQ(ulp_distance(g, bf16(0x3F81), 1.0), 1u);
  EXPECT_EQ(ulp_distance(g, bf16(0x3F7F), 1.0), 1u);
  EXPECT_EQ(ulp_distance(g, bf16(0x3F82), 1.0), 2u);
  EXPECT_EQ(ulp_distance(g, bf16(0x3F84), 1.0), 4u);
  EXPECT_EQ(ulp_distance(g, 1.0, 1.0), 0u);
  // Across zero: ±smallest subnormal are 2 apart, ±0 are 0 apart.
  EXPECT_EQ(ulp_distance(g, bf16(0x8001), bf16(0x0001)), 2u);
  EXPECT_EQ(ulp_distance(g, -0.0, 0.0), 0u);
  // The reference is rounded first (RNE): 1 + 2^-8 is the midpoint of 1 and 1 + 2^-7 and rounds
  // to the even 1.0; 1 + 3·2^-8 is the midpoint of 1 + 2^-7 and 1 + 2^-6 and rounds to 1 + 2^-6.
  EXPECT_EQ(ulp_distance(g, 1.0, 1.0 + 0x1.0p-8), 0u);
  EXPECT_EQ(ulp_distance(g, 1.0 + 0x1.0p-7, 1.0 + 0x1.0p-8), 1u);
  EXPECT_EQ(ulp_distance(g, 1.0 + 0x1.0p-6, 1.0 + 3 * 0x1.0p-8), 0u);
  // Just above the midpoint rounds up.
  EXPECT_EQ(ulp_distance(g, 1.0 + 0x1.0p-7, 1.0 + 0x1.0p-8 + 0x1.0p-40), 0u);
  // Overflow: beyond the largest finite value the reference rounds to +inf, one step past it.
  EXPECT_EQ(ulp_distance(g, bf16(0x7F7F), 1e39), 1u);
  // e4m3fn saturates: 1000 rounds to 448.
  EXPECT_EQ(ulp_distance(ulp_grid(DType::kE4M3), 448.0, 1000.0), 0u);
  EXPECT_EQ(ulp_distance(ulp_grid(DType::kE4M3), 416.0, 1000.0), 1u);
  EXPECT_THROW(ulp_ordinal(g, kNaN), std::invalid_argument);
}

// on_grid(bf16) takes a bit test (fp32 with the low 16 bits zero); it must agree with the format's
// own definition, decode(encode(x)) == x, on every bf16 pattern, on each one's fp32 neighbours and
// on doubles between them — subnormals and the largest finite values included.
TEST(Ulp, Bf16OnGridAgreesWithTheFormatDefinition) {
  const UlpGrid g = ulp_grid(DType::kBF16);
  const auto by_definition = [](double x) {
    if (!std::isfinite(x)) return false;
    const double v = decode_minifloat(kFormatBF16, encode_minifloat(kFormatBF16, x, Overflow::kToSpecial));
    return std::isfinite(v) && v == x;
  };
  std::int64_t on = 0;
  for (std::uint32_t p = 0; p < 0x10000u; ++p) {
    const float f = bf16_to_float(static_cast<std::uint16_t>(p));
    if (!std::isfinite(f)) continue;
    const double x = f;
    for (const double y :
         {x, static_cast<double>(std::nextafter(f, INFINITY)), static_cast<double>(std::nextafter(f, -INFINITY)),
          std::nextafter(x, INFINITY), std::nextafter(x, -INFINITY)}) {
      ASSERT_EQ(on_grid(g, y), by_definition(y)) << "pattern " << p << " value " << y;
    }
    on += on_grid(g, x);
  }
  EXPECT_EQ(on, 65536 - 2 * 128);  // every finite pattern (exponent all ones: ±inf and NaNs)
}

// stored_ordinal reads an ordinal off the stored bits; it must equal ulp_ordinal of the decoded
// value for every bf16 pattern, for fp32 / fp64 patterns spread over every exponent (both signs,
// zeros, subnormals, the largest finite values, infinities), and say nullopt for every NaN.
TEST(Ulp, StoredOrdinalEqualsTheOrdinalOfTheDecodedValue) {
  const auto check = [](DType d, const void* bits, double value) {
    const auto* p = static_cast<const std::byte*>(bits);
    const std::optional<std::int64_t> o = stored_ordinal(d, p);
    if (std::isnan(value)) {
      EXPECT_FALSE(o.has_value()) << dtype_name(d);
      return;
    }
    ASSERT_TRUE(o.has_value()) << dtype_name(d) << " " << value;
    EXPECT_EQ(*o, ulp_ordinal(ulp_grid(d), value)) << dtype_name(d) << " " << value;
  };
  std::int64_t nans = 0;
  for (std::uint32_t p = 0; p < 0x10000u; ++p) {
    const auto b = static_cast<std::uint16_t>(p);
    check(DType::kBF16, &b, bf16_to_float(b));
    nans += std::isnan(bf16_to_float(b)) ? 1 : 0;
  }
  EXPECT_EQ(nans, 2 * 127);
  for (std::uint32_t hi = 0; hi < 0x200u; ++hi) {  // sign and exponent fields, fraction patterns
    for (const std::uint32_t frac : {0u, 1u, 0x400000u, 0x7FFFFFu, 0x123457u}) {
      const std::uint32_t b = (hi << 23) | frac;
      float f = 0;
      std::memcpy(&f, &b, sizeof f);
      check(DType::kF32, &b, f);
    }
  }
  for (std::uint64_t hi = 0; hi < 0x1000u; ++hi) {
    for (const std::uint64_t frac : {0ull, 1ull, 0x8000000000000ull, 0xFFFFFFFFFFFFFull}) {
      const std::uint64_t b = (hi << 52) | frac;
      double x = 0;
      std::memcpy(&x, &b, sizeof x);
      check(DType::kF64, &b, x);
    }
  }
  const std::int64_t i = 0;
  EXPECT_THROW(stored_ordinal(DType::kI64, reinterpret_cast<const std::byte*>(&i)), std::invalid_argument);
}

TEST(Ulp, BucketsAndLabels) {
  const std::uint64_t d[] = {0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 1u << 31, (1u << 31) + 1, ~0ull};
  const int b[] = {0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 32, 33, 33};
  for (std::size_t i = 0; i < std::size(d); ++i) EXPECT_EQ(ulp_bucket(d[i]), b[i]) << d[i];
  EXPECT_EQ(ulp_bucket_label(0), "0");
  EXPECT_EQ(ulp_bucket_label(3), "3-4");
  EXPECT_EQ(ulp_bucket_label(4), "5-8");
  EXPECT_EQ(ulp_bucket_label(12), "1025-2048");
  EXPECT_EQ(ulp_bucket_label(13), "(2^11,2^12]");
  EXPECT_EQ(ulp_bucket_label(33), ">2^31");
}

// ---- metrics on hand-derivable cases ----

TensorMetrics metrics_f64(const std::vector<double>& c, const std::vector<double>& r, DType grid = DType::kF64,
                          MetricOptions o = {}) {
  return compute_metrics(std::span<const double>(c), grid, std::span<const double>(r), o);
}

TEST(Metrics, CosineDiffOfKnownPairs) {
  std::vector<double> x(1000), neg(1000), twice(1000), zero(1000, 0.0);
  for (int i = 0; i < 1000; ++i) {
    x[i] = std::sin(0.37 * i) + 0.01 * i;
    neg[i] = -x[i];
    twice[i] = 2 * x[i];
  }
  // x vs −x: Σ(2x)² / (2Σx²) = 2 exactly (scalings by powers of two of one exact sum).
  EXPECT_EQ(metrics_f64(neg, x).cosine_diff, 2.0);
  EXPECT_EQ(metrics_f64(x, x).cosine_diff, 0.0);
  // x vs 2x: 1 − 2·2S/(S + 4S) = 1/5 (one rounding of S / 5S).
  EXPECT_DOUBLE_EQ(metrics_f64(twice, x).cosine_diff, 0.2);
  EXPECT_EQ(metrics_f64(zero, zero).cosine_diff, 0.0);  // spec 07 §7.5: 0 for two all-zero tensors
  EXPECT_EQ(metrics_f64(zero, x).cosine_diff, 1.0);
  EXPECT_EQ(metrics_f64(x, zero).cosine_diff, 1.0);
}

TEST(Metrics, CosineDiffAgreesWithDeepGemmFormulaInLongDouble) {
  const CounterRng rng(5, 1);
  const int n = 5000;
  std::vector<double> r(n), c(n);
  for (int i = 0; i < n; ++i) {
    r[i] = rng.normal(static_cast<std::uint64_t>(i));
    c[i] = r[i] * (1 + 1e-3 * rng.normal(static_cast<std::uint64_t>(i + n)));
  }
  long double xy = 0, xx = 0, yy = 0;
  for (int i = 0; i < n; ++i) {
    xy += static_cast<long double>(c[i]) * r[i];
    xx += static_cast<long double>(c[i]) * c[i];
    yy += static_cast<long double>(r[i]) * r[i];
  }
  const double truth = static_cast<double>(1 - 2 * xy / (xx + yy));
  // The long-double formula itself cancels: its error is ≈ n·2^-64 relative to 1 ≈ 3e-16, far
  // below the 1e-6-sized value; ours has relative error ≤ 1e-12 (README §Accuracy).
  EXPECT_NEAR(metrics_f64(c, r).cosine_diff, truth, 1e-9 * truth);
}

TEST(Metrics, MaxAbsRelRmsAndIndices) {
  const std::vector<double> r{1.0, -2.0, 0.0, 4.0, 8.0};
  const std::vector<double> c{1.0, -2.5, 0.001, 4.5, 8.0};
  MetricOptions o;
  o.rel_floor = 0.01;
  const TensorMetrics m = metrics_f64(c, r, DType::kF64, o);
  EXPECT_EQ(m.count, 5);
  EXPECT_EQ(m.compared, 5);
  EXPECT_EQ(m.max_abs, 0.5);
  EXPECT_EQ(m.max_abs_index, 1);  // the first of the two 0.5 errors
  EXPECT_EQ(m.max_abs_candidate, -2.5);
  EXPECT_EQ(m.max_abs_reference, -2.0);
  // rel: 0.25 at 1, 0.001/max(0, 0.01) = 0.1 at 2, 0.125 at 3.
  EXPECT_EQ(m.max_rel, 0.25);
  EXPECT_EQ(m.max_rel_index, 1);
  EXPECT_EQ(m.rel_floor, 0.01);
  EXPECT_DOUBLE_EQ(m.rms, std::sqrt((0.25 + 0.000001 + 0.25) / 5));
  // Bias: −0.5 at r = −2 moves away from zero (+0.5), +0.5 at r = 4 away (+0.5), r = 0 counts 0.
  EXPECT_EQ(m.bias_sum, 1.0);
  EXPECT_EQ(m.ref_max_abs, 8.0);
}

TEST(Metrics, UlpHistogramInBf16) {
  // References on the bf16 grid around 1; candidates 0, 1, 2, 3, 5 and 9 ulps away.
  const int steps[] = {0, 1, 2, 3, 5, 9, -1};
  std::vector<std::uint16_t> cand;
  std::vector<double> ref;
  for (int s : steps) {
    cand.push_back(static_cast<std::uint16_t>(0x3F90 + s));
    ref.push_back(bf16(0x3F90));
  }
  const TensorMetrics m = compute_metrics(CandidateData{DType::kBF16, cand.data(), 7}, ref);
  EXPECT_EQ(m.ulp_hist[0], 1);
  EXPECT_EQ(m.ulp_hist[1], 2);  // +1 and −1
  EXPECT_EQ(m.ulp_hist[2], 1);
  EXPECT_EQ(m.ulp_hist[3], 1);  // 3
  EXPECT_EQ(m.ulp_hist[4], 1);  // 5
  EXPECT_EQ(m.ulp_hist[5], 1);  // 9
  EXPECT_EQ(m.max_ulp, 9u);
  EXPECT_EQ(m.max_ulp_index, 5);
  EXPECT_EQ(m.ulp_max, 0x1.0p-7);
  EXPECT_EQ(m.ulp_dtype, DType::kBF16);
}

TEST(Metrics, NanOrInfWhereTheReferenceIsFiniteIsCounted) {
  const std::vector<double> r{1.0, 2.0, 3.0, -kInf, -kInf, kNaN, 7.0};
  const std::vector<double> c{1.0, kNaN, kInf, -kInf, 5.0, kNaN, 7.5};
  const TensorMetrics m = metrics_f64(c, r);
  EXPECT_EQ(m.compared, 2);  // elements 0 and 6
  EXPECT_EQ(m.cand_nan, 2);
  EXPECT_EQ(m.cand_inf, 2);
  EXPECT_EQ(m.nonfinite_where_ref_finite, 2);
  EXPECT_EQ(m.first_nonfinite_where_ref_finite, 1);
  EXPECT_EQ(m.ref_nonfinite, 3);
  EXPECT_EQ(m.special_mismatch, 1);  // −inf masked reference, candidate 5.0
  EXPECT_EQ(m.first_special_mismatch, 4);
  EXPECT_EQ(m.max_abs, 0.5);  // excluded elements do not count
  EXPECT_EQ(m.max_abs_index, 6);
}

TEST(Metrics, OffGridCandidatesAreCounted) {
  // A float32 dump declared bf16: 1 + 2^-10 is not a bf16 value.
  const std::vector<float> c{1.0f, 1.0f + 0x1.0p-10f, 2.0f, 3.0f + 0x1.0p-20f};
  const std::vector<double> r{1.0, 1.0, 2.0, 3.0};
  MetricOptions o;
  o.ulp_dtype = DType::kBF16;
  const TensorMetrics m = compute_metrics(CandidateData{DType::kF32, c.data(), 4}, r, o);
  EXPECT_EQ(m.off_grid, 2);
  EXPECT_EQ(m.first_off_grid, 1);
  EXPECT_EQ(m.storage, DType::kF32);
  EXPECT_EQ(m.ulp_dtype, DType::kBF16);
}

TEST(Metrics, HugeAndTinyMagnitudesAreScaledNotOverflowed) {
  for (const double s : {0x1.0p900, 0x1.0p-900}) {
    std::vector<double> r{3 * s, -4 * s, 5 * s}, c{3 * s, -4 * s, 6 * s};
    const TensorMetrics m = metrics_f64(c, r);
    EXPECT_DOUBLE_EQ(m.rms, s * std::sqrt(1.0 / 3.0)) << s;
    EXPECT_DOUBLE_EQ(m.cosine_diff, 1.0 / (50.0 + 61.0)) << s;
    EXPECT_DOUBLE_EQ(m.ref_rms, s * std::sqrt(50.0 / 3.0)) << s;
  }
}

TEST(Metrics, EmptyAndAllMaskedTensors) {
  const std::vector<double> none;
  const TensorMetrics e = metrics_f64(none, none);
  EXPECT_EQ(e.count, 0);
  EXPECT_EQ(e.compared, 0);
  EXPECT_EQ(e.cosine_diff, 0.0);
  EXPECT_EQ(e.max_abs_index, -1);
  const std::vector<double> masks(5, -kInf);
  const TensorMetrics m = metrics_f64(masks, masks, DType::kBF16);
  EXPECT_EQ(m.compared, 0);
  EXPECT_EQ(m.ref_nonfinite, 5);
  EXPECT_EQ(m.special_mismatch, 0);
  EXPECT_EQ(m.ulp_max, 0.0);
  for (const std::int64_t h : m.ulp_hist) EXPECT_EQ(h, 0);
}

TEST(Metrics, BadInputIsRefused) {
  std::vector<double> r(3, 1.0), c(2, 1.0);
  EXPECT_THROW(metrics_f64(c, r), std::invalid_argument);
  c.resize(3);
  MetricOptions o;
  o.rel_floor = 0.0;
  EXPECT_THROW(metrics_f64(c, r, DType::kF64, o), std::invalid_argument);
  o.rel_floor = kNaN;
  EXPECT_THROW(metrics_f64(c, r, DType::kF64, o), std::invalid_argument);
  EXPECT_THROW(metrics_f64(c, r, DType::kI32), std::invalid_argument);
  std::vector<std::int32_t> ints(3);
  EXPECT_THROW(compute_metrics(CandidateData{DType::kI32, ints.data(), 3}, r), std::invalid_argument);
  EXPECT_THROW(compute_metrics(CandidateData{DType::kF32, nullptr, 3}, r), std::invalid_argument);
}

// ---- the kernel against a plain scalar evaluation ----

struct Scalar {
  std::int64_t compared = 0, off_grid = 0, nonfinite = 0;
  double max_abs = 0, max_rel = 0, ref_max = 0;
  std::int64_t max_abs_index = -1, max_rel_index = -1;
  std::uint64_t max_ulp = 0;
  long double err2 = 0, c2 = 0, r2 = 0, bias = 0, usum = 0;
  UlpHistogram hist{};
};

Scalar scalar_metrics(const std::vector<double>& c, const std::vector<double>& r, DType grid_dtype, double rel_floor) {
  const UlpGrid g = ulp_grid(grid_dtype);
  Scalar s;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (!std::isfinite(c[i]) || !std::isfinite(r[i])) {
      ++s.nonfinite;
      continue;
    }
    ++s.compared;
    const double d = c[i] - r[i];
    if (std::fabs(d) > s.max_abs) {
      s.max_abs = std::fabs(d);
      s.max_abs_index = static_cast<std::int64_t>(i);
    }
    const double rel = std::fabs(d) / std::max(std::fabs(r[i]), rel_floor);
    if (rel > s.max_rel) {
      s.max_rel = rel;
      s.max_rel_index = static_cast<std::int64_t>(i);
    }
    s.ref_max = std::max(s.ref_max, std::fabs(r[i]));
    const std::uint64_t u = ulp_distance(g, c[i], r[i]);
    s.max_ulp = std::max(s.max_ulp, u);
    ++s.hist[static_cast<std::size_t>(ulp_bucket(u))];
    if (!on_grid(g, c[i])) ++s.off_grid;
    s.err2 += static_cast<long double>(d) * d;
    s.c2 += static_cast<long double>(c[i]) * c[i];
    s.r2 += static_cast<long double>(r[i]) * r[i];
    if (r[i] != 0) s.bias += r[i] > 0 ? d : -d;
    s.usum += ulp_at(g, r[i]);
  }
  return s;
}

// Random references over many binades (including the bf16/fp16/fp8 subnormal and overflow
// ranges, zeros, signed zeros, exact ties), candidates on the grid near them or off it.
void random_pair(std::uint64_t seed, std::size_t n, DType grid_dtype, bool on_grid_only, std::vector<double>& c,
                 std::vector<double>& r) {
  const CounterRng rng(seed, 3);
  const UlpGrid g = ulp_grid(grid_dtype);
  c.resize(n);
  r.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto w = rng.words(i);
    const int e = static_cast<int>(w[0] % 64) - 40 + (grid_dtype == DType::kBF16 ? 0 : 0);
    double x = std::ldexp(rng.uniform(i) - 0.5, e);
    if (w[1] % 50 == 0) x = 0.0;
    if (w[1] % 50 == 1) x = -0.0;
    if (w[1] % 50 == 2) x = std::ldexp(1.0, g.min_exponent - g.mantissa_bits) * (w[2] % 7);  // subnormal range
    if (w[1] % 50 == 3) x = std::ldexp(1.0, g.max_exponent + 1) * (w[2] % 2 ? 1 : -1);       // overflows the grid
    if (w[1] % 50 == 4) x = 1.0 + std::ldexp(1.0, -g.mantissa_bits - 1);                     // a tie
    r[i] = x;
    // Candidate: the reference rounded to the grid and moved by a few ulps, or (off the grid) by a
    // tiny relative amount.
    const std::int64_t o = ulp_ordinal(g, x) + static_cast<std::int64_t>(w[3] % 7) - 3;
    const auto clamp = static_cast<std::int64_t>(g.max_finite_ordinal);
    const std::int64_t oc = std::max(-clamp, std::min(clamp, o));
    double v;
    if (grid_dtype == DType::kF64) {
      v = x * (1 + 1e-12 * (static_cast<double>(w[3] % 7) - 3));
    } else {
      // Decode the ordinal: search by encoding (the grids here have ≤ 2^32 values; use formats).
      const std::uint64_t mag = static_cast<std::uint64_t>(oc < 0 ? -oc : oc);
      double m;
      if (grid_dtype == DType::kF32) {
        m = float_from_bits(static_cast<std::uint32_t>(mag));
      } else {
        const MinifloatFormat& f = grid_dtype == DType::kBF16   ? kFormatBF16
                                   : grid_dtype == DType::kF16  ? kFormatFP16
                                   : grid_dtype == DType::kE4M3 ? kFormatE4M3
                                                                : kFormatE5M2;
        m = decode_minifloat(f, static_cast<std::uint32_t>(mag));
      }
      v = oc < 0 ? -m : m;
    }
    if (!on_grid_only && w[2] % 11 == 0) v = v * (1 + 0x1.0p-40) + 0x1.0p-1060;
    c[i] = v;
  }
}

void expect_matches_scalar(const TensorMetrics& m, const Scalar& s, const char* what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(m.compared, s.compared);
  EXPECT_EQ(m.max_abs, s.max_abs);
  EXPECT_EQ(m.max_abs_index, s.max_abs_index);
  EXPECT_EQ(m.max_rel, s.max_rel);
  EXPECT_EQ(m.max_rel_index, s.max_rel_index);
  EXPECT_EQ(m.max_ulp, s.max_ulp);
  EXPECT_EQ(m.ref_max_abs, s.ref_max);
  EXPECT_EQ(m.off_grid, s.off_grid);
  for (int b = 0; b < kUlpBuckets; ++b) EXPECT_EQ(m.ulp_hist[static_cast<std::size_t>(b)], s.hist[b]) << b;
  // README §Accuracy: sums of non-negative terms within 1e-12 relative (the long-double sums
  // here carry ≈ n·2^-64 ≈ 1e-15).
  auto near = [](double a, long double b) {
    return std::fabs(a - static_cast<double>(b)) <= 1e-12 * std::fabs(static_cast<double>(b));
  };
  EXPECT_TRUE(near(m.sum_sq_err, s.err2)) << m.sum_sq_err << " vs " << static_cast<double>(s.err2);
  EXPECT_TRUE(near(m.sum_sq_cand, s.c2));
  EXPECT_TRUE(near(m.sum_sq_ref, s.r2));
  EXPECT_TRUE(near(m.ulp_sum, s.usum));
  // The bias sum has mixed signs: its error is relative to Σ|d| ≤ sqrt(n Σd²).
  EXPECT_LE(std::fabs(m.bias_sum - static_cast<double>(s.bias)),
            1e-12 * std::sqrt(static_cast<double>(m.compared) * m.sum_sq_err) + 1e-300);
}

TEST(MetricsKernel, MatchesScalarDefinitionsForEveryGridAndKernel) {
  const DType grids[] = {DType::kBF16, DType::kF16, DType::kE4M3, DType::kE5M2, DType::kF32, DType::kF64};
  std::uint64_t seed = 1;
  for (const DType gd : grids) {
    for (const bool on : {true, false}) {
      std::vector<double> c, r;
      random_pair(seed++, 20000 + 13, gd, on, c, r);
      const Scalar s = scalar_metrics(c, r, gd, 1e-3);
      for (const MetricKernel k : kernels()) {
        MetricOptions o;
        o.kernel = k;
        o.rel_floor = 1e-3;
        o.threads = 1;
        const TensorMetrics m = metrics_f64(c, r, gd, o);
        expect_matches_scalar(
            m, s, (std::string(dtype_name(gd)) + (on ? " on-grid " : " off-grid ") + metric_kernel_name(k)).c_str());
      }
    }
  }
}

// Every kernel, width, thread count and candidate storage computes the same metrics: the sums
// (sum_sq_err to the bit), the maxima and where they are, the ulp statistics and the grid checks.
void expect_same_metrics(const TensorMetrics& m, const TensorMetrics& ref) {
  EXPECT_EQ(std::memcmp(&m.sum_sq_err, &ref.sum_sq_err, sizeof(double)), 0);
  EXPECT_EQ(m.sum_sq_cand, ref.sum_sq_cand);
  EXPECT_EQ(m.sum_sq_ref, ref.sum_sq_ref);
  EXPECT_EQ(m.bias_sum, ref.bias_sum);
  EXPECT_EQ(m.ulp_sum, ref.ulp_sum);
  EXPECT_EQ(m.ulp_rms, ref.ulp_rms);
  EXPECT_EQ(m.cosine_diff, ref.cosine_diff);
  EXPECT_EQ(m.max_abs, ref.max_abs);
  EXPECT_EQ(m.max_abs_index, ref.max_abs_index);
  EXPECT_EQ(m.max_rel, ref.max_rel);
  EXPECT_EQ(m.max_ulp, ref.max_ulp);
  EXPECT_EQ(m.ulp_hist, ref.ulp_hist);
  EXPECT_EQ(m.off_grid, ref.off_grid);
  EXPECT_EQ(m.first_off_grid, ref.first_off_grid);
}

TEST(MetricsKernel, NativeStoragesMatchTheirDoubleForm) {
  // bf16 / fp32 / fp16 / e4m3 / e5m2 storage (ordinal from the bits or decoded) gives the same
  // metrics as the same values widened to double with the same ULP grid.
  const std::size_t n = 70000 + 5;  // more than one 65,536-element chunk, with a tail
  for (const DType d : {DType::kBF16, DType::kF32, DType::kF16, DType::kE4M3, DType::kE5M2}) {
    std::vector<double> c, r;
    random_pair(77, n, d, true, c, r);
    std::vector<unsigned char> raw(n * (d == DType::kF32 ? 4 : (d == DType::kBF16 || d == DType::kF16) ? 2 : 1));
    for (std::size_t i = 0; i < n; ++i) {
      if (d == DType::kF32) {
        const float f = static_cast<float>(c[i]);
        std::memcpy(&raw[4 * i], &f, 4);
      } else if (d == DType::kBF16 || d == DType::kF16) {
        const std::uint16_t b = d == DType::kBF16 ? double_to_bf16(c[i]) : double_to_fp16(c[i]);
        std::memcpy(&raw[2 * i], &b, 2);
      } else {
        raw[i] = d == DType::kE4M3 ? double_to_e4m3(c[i]) : double_to_e5m2(c[i]);
      }
    }
    const TensorMetrics wide = metrics_f64(c, r, d);
    for (const MetricKernel k : kernels()) {
      MetricOptions o;
      o.kernel = k;
      const TensorMetrics m = compute_metrics(CandidateData{d, raw.data(), static_cast<std::int64_t>(n)}, r, o);
      SCOPED_TRACE(std::string(dtype_name(d)) + " " + metric_kernel_name(k));
      expect_same_metrics(m, wide);
      EXPECT_EQ(m.off_grid, 0);
    }
  }
}

TEST(MetricsKernel, SameBitsForEveryKernelAndThreadCount) {
  const std::size_t n = 5 * 65536 + 1234;
  std::vector<double> c, r;
  random_pair(9, n, DType::kBF16, false, c, r);
  c[777] = kNaN;
  r[70000] = -kInf;
  c[70000] = -kInf;
  MetricOptions base;
  base.kernel = MetricKernel::kPortable;
  base.threads = 1;
  const TensorMetrics ref = metrics_f64(c, r, DType::kBF16, base);
  for (const MetricKernel k : kernels()) {
    for (const int t : {1, 2, 3, 7}) {
      MetricOptions o;
      o.kernel = k;
      o.threads = t;
      const TensorMetrics m = metrics_f64(c, r, DType::kBF16, o);
      SCOPED_TRACE(std::string(metric_kernel_name(k)) + " threads " + std::to_string(t));
      expect_same_metrics(m, ref);
      EXPECT_EQ(m.nonfinite_where_ref_finite, 1);
      EXPECT_EQ(m.ref_nonfinite, 1);
      EXPECT_EQ(m.special_mismatch, 0);
    }
  }
}

}  // namespace
}  // namespace dsv4::compare
