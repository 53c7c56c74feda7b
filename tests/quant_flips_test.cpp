// oracle/compare near-tie rounding flips of a simulated-quantised output (quant_flips.hpp; issue
// 15): an engineered one-quantum flip whose exact pre-quantisation value lies within the yardstick
// of the rounding boundary PASSes the local verdict (and FAILs it without the rule); a one-quantum
// flip far from the boundary and a two-quantum flip FAIL; a block scale flip at a near-tie of the
// amax passes (FP4; FP8's scale flips stay below the size checks' floor), one far from the
// power-of-two step or with an element beyond one step fails; FP4 element flips alike; bad input.
// The direction test (quant_direction_test): a faithful engine's decisions differ from the
// official's in both directions and pass; an e4m3 cast toward zero passes the size checks with the
// near-tie rule but fails the direction test; n differences all toward zero fail one test at
// alpha 1e-4 from n = 15 on; the exact binomial tail.
#include "dsv4/compare/quant_flips.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/tolerance.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant_margin.hpp"

namespace dsv4::compare {
namespace {

// One row of 128 values: dims [0, 64) quantised (FP8, one block of 64, like the window KV's nope
// dims), dims [64, 128) plain bf16 (like its RoPE dims).
constexpr std::int64_t kCols = 128, kQuant = 64;
const QuantisedLayout kLayout{kCols, kQuant, 64, BlockQuant::kFp8Ue8m0};

double bf16(double x) { return static_cast<double>(bf16_to_float(double_to_bf16(x))); }
double ulp_bf16(double x) { return std::ldexp(1.0, std::ilogb(x) - 7); }

// The quantised dims of `pre` through the exact quantiser (block_quant_exact_inplace).
std::vector<double> quantised(std::vector<double> pre, const QuantisedLayout& l = kLayout) {
  for (std::size_t r = 0; r * static_cast<std::size_t>(l.cols) < pre.size(); ++r) {
    std::span<double> q(pre.data() + r * static_cast<std::size_t>(l.cols), static_cast<std::size_t>(l.quantised_cols));
    block_quant_exact_inplace(q, l.quantised_cols, l.block, l.kind);
  }
  return pre;
}

// The block's exact pre-quantisation values: element j at code c_j = 1 + j/8 (e4m3 codes in [1, 9))
// plus a quarter quantum, scale 2^0 (amax < 448): every element a quarter quantum from its code and
// from the rounding boundary — bf16 values, so the official reference (bf16 of x) decides alike.
// Element 0 is the one the tests move. The plain dims carry values off the bf16 grid.
struct Scenario {
  std::vector<double> exact_pre, official_pre;
  Scenario() : exact_pre(kCols), official_pre(kCols) {
    for (std::int64_t j = 0; j < kQuant; ++j) {
      const double code =
          decode_minifloat(kFormatE4M3, encode_minifloat(kFormatE4M3, 1.0 + j / 8.0, Overflow::kSaturateFinite));
      exact_pre[static_cast<std::size_t>(j)] = code + 0.25 * quantum(code);
    }
    for (std::int64_t j = kQuant; j < kCols; ++j) exact_pre[static_cast<std::size_t>(j)] = 0.3 + 0.01 * j / 3.0;
  }
  // The e4m3 grid spacing above a code of magnitude ≥ 1 at scale 1.
  static double quantum(double code) { return std::ldexp(1.0, std::ilogb(code) - 3); }
  void finish() {
    for (std::size_t i = 0; i < official_pre.size(); ++i) official_pre[i] = bf16(exact_pre[i]);
  }
};

struct Outcome {
  QuantFlips flips;
  bool pass = false;          // with the rule
  bool pass_without = false;  // the size checks on the candidate's own values
  std::string reason;
};

// The local verdict as diff computes it: exact and official outputs from the pre-quantisation
// values, the yardstick E_pre from the official's pre-quantisation error, the rule, then the size
// checks of judge_tensor against the official's output error.
Outcome judge(const Scenario& s, const std::vector<double>& candidate, const QuantisedLayout& l = kLayout) {
  const std::vector<double> exact = quantised(s.exact_pre, l), official = quantised(s.official_pre, l);
  const double e_pre = quantised_max_abs_error(s.official_pre, s.exact_pre, l);
  Outcome o;
  o.flips = accept_quant_flips(candidate, exact, s.exact_pre, e_pre, DType::kBF16, l);
  MetricOptions mo;
  mo.ulp_dtype = DType::kBF16;
  const ReferenceError off = reference_error(compute_metrics(official, DType::kBF16, exact, mo));
  const TensorVerdict v = judge_tensor(compute_metrics(o.flips.judged, DType::kBF16, exact, mo), off);
  o.pass = v.verdict == Verdict::kPass;
  o.reason = v.reason;
  o.pass_without = judge_tensor(compute_metrics(candidate, DType::kBF16, exact, mo), off).verdict == Verdict::kPass;
  return o;
}

// Element 0 moved to δ above the rounding boundary between codes 1 and 1.125 (exact code 1.125).
Scenario near_boundary(double delta_ulps) {
  Scenario s;
  s.exact_pre[0] = 1.0625 + delta_ulps * ulp_bf16(1.0625);
  s.finish();
  return s;
}

// The official engine's output: every value through bf16 then the quantiser.
std::vector<double> official_engine(const Scenario& s) { return quantised(s.official_pre); }

// The verdict on the official engine's output of near_boundary(delta_ulps) with element 0's code
// replaced by `code`.
Outcome judge_code(double delta_ulps, double code) {
  const Scenario s = near_boundary(delta_ulps);
  std::vector<double> c = official_engine(s);
  c[0] = code;
  return judge(s, c);
}

TEST(QuantFlips, OfficialValuesNeedNothing) {
  Scenario s;
  s.finish();
  const Outcome o = judge(s, official_engine(s));
  EXPECT_TRUE(o.pass) << o.reason;
  EXPECT_EQ(o.flips.accepted(), 0);
  EXPECT_EQ(o.flips.quantised, kQuant);
}

TEST(QuantFlips, NearBoundaryFlipOfOneQuantumPasses) {
  // x_e = 1.0625 + 0.75 ulp: exact code 1.125, official bf16(x) = 1.0625 + 1 ulp → also 1.125; the
  // candidate's code 1 is one quantum (0.125) off, the boundary 0.75 ulp from x_e, τ = 2 × 0.25 ulp + 1 ulp.
  const Scenario s = near_boundary(0.75);
  std::vector<double> c = official_engine(s);
  ASSERT_EQ(c[0], 1.125);
  c[0] = 1.0;
  const Outcome o = judge(s, c);
  EXPECT_TRUE(o.pass) << o.reason;
  EXPECT_FALSE(o.pass_without) << "the flip alone must fail the size checks, or this test proves nothing";
  EXPECT_EQ(o.flips.element_flips, 1);
  EXPECT_EQ(o.flips.scale_flips, 0);
  EXPECT_DOUBLE_EQ(o.flips.largest_accepted, 0.125);
  EXPECT_NEAR(o.flips.smallest_slack, 1.5 * ulp_bf16(1.0625) - 0.75 * ulp_bf16(1.0625), 1e-12);
  EXPECT_EQ(o.flips.summary(BlockQuant::kFp8Ue8m0)
                .rfind("1 FP8 rounding flip at a near-tie accepted (1 element one quantum off", 0),
            0u)
      << o.flips.summary(BlockQuant::kFp8Ue8m0);
  EXPECT_EQ(o.flips.judged[0], 1.125);
}

TEST(QuantFlips, OneQuantumFlipFarFromTheBoundaryFails) {
  // x_e = 1.0625 + 4 ulp (a quarter quantum above the boundary, beyond τ = 1 ulp + 2 E_pre).
  const Outcome o = judge_code(4.0, 1.0);
  EXPECT_FALSE(o.pass) << o.reason;
  EXPECT_EQ(o.flips.accepted(), 0);
  // Just past τ: 1.5 ulp (E_pre is then 0.5 ulp, τ = 2 ulp) still passes, 2.5 ulp does not.
  for (const double d : {1.5, 2.5}) EXPECT_EQ(judge_code(d, 1.0).pass, d < 2.0) << "delta " << d << " ulp";
}

TEST(QuantFlips, TwoQuantumFlipFails) {
  // Near the boundary, but the candidate's code 0.9375 is two grid steps below the exact 1.125
  // (1.0, then 0.9375: the spacing is 0.0625 below 1).
  const Outcome o = judge_code(0.75, 0.9375);
  EXPECT_FALSE(o.pass) << o.reason;
  EXPECT_EQ(o.flips.accepted(), 0);
  const Outcome up = judge_code(0.75, 1.375);  // two steps up (1.25, 1.375)
  EXPECT_FALSE(up.pass);
  EXPECT_EQ(up.flips.accepted(), 0);
}

TEST(QuantFlips, FlipAwayFromTheNearBoundaryIsRejected) {
  // The exact code 1.125 is near its lower boundary; one step UP to 1.25 crosses the far one.
  const Outcome o = judge_code(0.75, 1.25);
  EXPECT_FALSE(o.pass) << o.reason;
  EXPECT_EQ(o.flips.accepted(), 0);
}

TEST(QuantFlips, OffGridAndPlainDimsAreNotAccepted) {
  const Scenario s = near_boundary(0.75);
  std::vector<double> c = official_engine(s);
  c[0] = 1.0625;  // between the two codes: no code at this scale (the size checks judge it)
  EXPECT_EQ(judge(s, c).flips.accepted(), 0);
  c = official_engine(s);
  c[kQuant] += 0.125;  // a plain (unquantised) dim: the rule does not apply
  EXPECT_EQ(judge(s, c).flips.accepted(), 0);
  EXPECT_FALSE(judge(s, c).pass);
}

// FP4 (e2m1 codes 0, 0.5, 1, 1.5, 2, 3, 4, 6; block 32): one block of 32 values, each a quarter
// step from its code; element 31 is the amax, `below_ulps` bf16 ulps under the scale step
// 6 · 2^0 (exact scale 1).
const QuantisedLayout kFp4{32, 32, 32, BlockQuant::kFp4};

Scenario fp4_block(double below_ulps) {
  Scenario s;
  const std::vector<double> v{0.625, 1.125, 1.625, 2.25, 3.25, 4.5, 0.375, 1.375};
  s.exact_pre.assign(32, 0.0);
  for (std::size_t j = 0; j < 31; ++j) s.exact_pre[j] = (j % 3 == 2 ? -1.0 : 1.0) * v[j % v.size()];
  s.exact_pre[31] = 6.0 - below_ulps * ulp_bf16(6.0);
  s.official_pre.resize(32);
  s.finish();
  return s;
}

std::vector<double> fp4_at_scale_two(const Scenario& s) {
  std::vector<double> c(s.exact_pre.size());
  for (std::size_t j = 0; j < c.size(); ++j)
    c[j] = 2.0 * decode_minifloat(kFormatE2M1,
                                  encode_minifloat(kFormatE2M1, s.exact_pre[j] / 2.0, Overflow::kSaturateFinite));
  return c;
}

TEST(QuantFlips, ScaleFlipAtANearTieOfTheAmaxPasses) {
  // amax = 6 − 0.75 ulp (ulp 1/32): τ(amax) = 2 × E_pre + 1 ulp = 1.5 ulp reaches the step at 6, so
  // an engine whose amax landed above it quantised the block at scale 2.
  const Scenario s = fp4_block(0.75);
  const Outcome o = judge(s, fp4_at_scale_two(s), kFp4);
  EXPECT_TRUE(o.pass) << o.reason;
  EXPECT_FALSE(o.pass_without) << "the scale flip alone must fail the size checks, or this test proves nothing";
  EXPECT_EQ(o.flips.scale_flips, 1);
  EXPECT_GT(o.flips.scale_flip_elements, 1);
  EXPECT_EQ(o.flips.element_flips, 0);
  EXPECT_NE(o.flips.summary(BlockQuant::kFp4)
                .find("FP4 rounding flips at a near-tie accepted (0 elements one quantum off, 1 block scale"),
            std::string::npos)
      << o.flips.summary(BlockQuant::kFp4);
}

TEST(QuantFlips, ScaleFlipFarFromTheStepFails) {
  // amax = 6 − 8 ulp = 5.75: τ does not reach the step.
  const Scenario s = fp4_block(8.0);
  const Outcome o = judge(s, fp4_at_scale_two(s), kFp4);
  EXPECT_FALSE(o.pass) << o.reason;
  EXPECT_EQ(o.flips.scale_flips, 0);
}

TEST(QuantFlips, ScaleFlipWithAnElementBeyondOneStepFails) {
  // Near the step, but one element two codes off at the flipped scale: the block does not fit it.
  const Scenario s = fp4_block(0.75);
  std::vector<double> c = fp4_at_scale_two(s);
  ASSERT_EQ(c[0], 1.0);  // 0.625 at scale 2
  c[0] = 3.0;            // codes at scale 2: 1, 2, 3
  const Outcome o = judge(s, c, kFp4);
  EXPECT_EQ(o.flips.scale_flips, 0);
  EXPECT_FALSE(o.pass) << o.reason;
}

TEST(QuantFlips, Fp8ScaleFlipMovesOnlyValuesBelowTheFloor) {
  // FP8's grid has 4 significant bits at every power-of-two scale until the subnormals: a scale
  // flip changes only elements below amax · 2^−13, by far less than a bf16 ulp of the amax — the
  // size checks' floor passes it without the rule, which accepts it all the same.
  Scenario s;
  for (std::size_t j = 1; j <= 8; ++j) s.exact_pre[j] = (static_cast<double>(j) + 0.25) * 0x1.0p-9;
  s.exact_pre[63] = 448.0 - 0.75 * ulp_bf16(448.0);
  s.finish();
  std::vector<double> c = official_engine(s);
  for (std::int64_t j = 0; j < kQuant; ++j) {
    const double v = s.exact_pre[static_cast<std::size_t>(j)] / 2.0;
    c[static_cast<std::size_t>(j)] =
        2.0 * decode_minifloat(kFormatE4M3, encode_minifloat(kFormatE4M3, v, Overflow::kSaturateFinite));
  }
  ASSERT_NE(c, official_engine(s));
  const Outcome o = judge(s, c);
  EXPECT_TRUE(o.pass_without) << o.reason;
  EXPECT_TRUE(o.pass) << o.reason;
  // τ of an element far below the amax spans its subnormal codes: the block fits the exact scale,
  // its differences counted as element flips.
  EXPECT_GT(o.flips.accepted(), 0);
}

TEST(QuantFlips, Fp4NearBoundaryFlipPassesAndFarOneFails) {
  // Element 0 at 2.5 + δ: the boundary of codes 2 and 3 (exact code 3); the candidate says 2.
  for (const double delta_ulps : {0.75, 16.0}) {
    Scenario s = fp4_block(8.0);
    s.exact_pre[0] = 2.5 + delta_ulps * ulp_bf16(2.5);
    s.finish();
    std::vector<double> c = quantised(s.official_pre, kFp4);
    ASSERT_EQ(c[0], 3.0);
    c[0] = 2.0;
    const Outcome o = judge(s, c, kFp4);
    EXPECT_EQ(o.pass, delta_ulps < 1.0) << o.reason;
    EXPECT_EQ(o.flips.element_flips, delta_ulps < 1.0 ? 1 : 0);
  }
}

// ---- the direction test ----

// Rows of 128: dims [0, 64) one FP8 block at scale 1 (element 0 = 300, the amax, in (224, 448]),
// the others pseudo-random magnitudes in [64, 128) (one binade: e4m3 quantum 8) with pseudo-random
// signs; the official engine's pre-quantisation values are those plus an error of up to ±3.5 (the
// KV's FP8 linear, in miniature: a few tenths of a quantum, so its yardstick τ ≈ 2 × 3.7 + ½ covers
// every element's boundary), rounded to bf16; then quantised (RNE). Dims [64, 128) plain.
constexpr int kRows = 64;
struct DirectionScenario {
  std::vector<double> exact_pre, official_pre, exact, official;
  DirectionScenario() : exact_pre(kRows * kCols), official_pre(kRows * kCols) {
    std::uint64_t h = 12345;
    const auto next = [&h] {
      h = h * 6364136223846793005ULL + 1442695040888963407ULL;
      return static_cast<double>(h >> 11) * 0x1.0p-53;
    };
    for (std::size_t i = 0; i < exact_pre.size(); ++i) {
      const std::int64_t j = static_cast<std::int64_t>(i) % kCols;
      const double mag = j == 0 ? 300.0 : j < kQuant ? 64.0 + 64.0 * next() : 0.3 + next();
      exact_pre[i] = next() < 0.5 ? -mag : mag;
      const double err = j == 0 || j >= kQuant ? 0.0 : 3.5 * (2.0 * next() - 1.0);
      official_pre[i] = bf16(exact_pre[i] + err);
    }
    exact = quantised(exact_pre);
    official = quantised(official_pre);
  }
};

// The e4m3 code of x at scale 1 cast toward zero (an RNE code above |x| moved one step down).
double e4m3_toward_zero(double x) {
  const std::uint32_t c = encode_minifloat(kFormatE4M3, x, Overflow::kSaturateFinite);
  const double r = decode_minifloat(kFormatE4M3, c);
  return std::abs(r) > std::abs(x) ? decode_minifloat(kFormatE4M3, c - 1) : r;  // sign-magnitude codes
}

TEST(QuantDirection, FaithfulEngineDiffersInBothDirectionsAndPasses) {
  const DirectionScenario s;
  // A faithful engine: one pre-quantisation value in four one bf16 ulp up or down (its own
  // rounding noise, symmetric), then RNE.
  std::vector<double> pre = s.official_pre;
  for (std::size_t i = 0; i < pre.size(); ++i) {
    const std::uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ULL;
    if ((h >> 62) == 0) pre[i] += ((h >> 61) & 1 ? 1.0 : -1.0) * ulp_bf16(std::abs(pre[i]));
  }
  const std::vector<double> c = quantised(pre);
  const QuantDirections d = quant_directions(c, s.official, kLayout);
  EXPECT_GT(d.toward_zero, 10);
  EXPECT_GT(d.away_from_zero, 10);
  const StructureStat t = quant_direction_test(c, s.official, s.exact, kLayout, 2.0);
  ASSERT_TRUE(t.ran) << t.not_run;
  EXPECT_EQ(t.kind, StructureKind::kQuantDirection);
  EXPECT_GT(t.p, 1e-2) << describe(t);
  // The exact recomputation itself (an engine more exact than the official) passes too.
  EXPECT_GT(quant_direction_test(s.exact, s.official, s.exact, kLayout, 2.0).p, 1e-2);
  EXPECT_FALSE(quant_direction_test(s.official, s.official, s.exact, kLayout, 2.0).ran);
}

TEST(QuantDirection, CastTowardZeroPassesTheSizeChecksButFailsTheDirectionTest) {
  const DirectionScenario s;
  std::vector<double> c = s.official;
  for (std::size_t i = 0; i < c.size(); ++i)
    if (static_cast<std::int64_t>(i) % kCols < kQuant) c[i] = e4m3_toward_zero(s.official_pre[i]);
  // The near-tie rule's yardstick is wide here (τ ≈ 7.9 against half a quantum, 4, plus the
  // official's error): every one-step difference is accepted and the size checks pass.
  const double e_pre = quantised_max_abs_error(s.official_pre, s.exact_pre, kLayout);
  const QuantFlips f = accept_quant_flips(c, s.exact, s.exact_pre, e_pre, DType::kBF16, kLayout);
  MetricOptions mo;
  mo.ulp_dtype = DType::kBF16;
  const ReferenceError off = reference_error(compute_metrics(s.official, DType::kBF16, s.exact, mo));
  const TensorVerdict v = judge_tensor(compute_metrics(f.judged, DType::kBF16, s.exact, mo), off);
  EXPECT_GT(f.element_flips, 1000);
  EXPECT_EQ(v.verdict, Verdict::kPass) << v.reason;
  // … and every decision that differs from the official's is nearer zero.
  const QuantDirections d = quant_directions(c, s.official, kLayout);
  EXPECT_GT(d.toward_zero, 1000);
  EXPECT_EQ(d.away_from_zero, 0);
  const StructureStat t = quant_direction_test(c, s.official, s.exact, kLayout, 2.0);
  ASSERT_TRUE(t.ran);
  EXPECT_LT(t.p, 1e-100) << describe(t);
  EXPECT_EQ(t.estimate, static_cast<double>(d.toward_zero));
}

// n elements of one row moved one code toward zero from the official's, nothing else: one test at
// alpha 1e-4 (as if it were the family's only one) rejects from n = 15 on (2 · 2^−15 = 6.1e-5;
// n = 14: 1.2e-4). Balanced moves (n toward, n away) never reject.
TEST(QuantDirection, AllTowardZeroFailsFromFifteenDifferences) {
  const DirectionScenario s;
  const QuantisedLayout one_row = kLayout;
  const std::vector<double> official(s.official.begin(), s.official.begin() + kCols);
  const std::vector<double> exact(s.exact.begin(), s.exact.begin() + kCols);
  const auto moved = [&](int toward, int away) {
    std::vector<double> c = official;
    for (int j = 1; j <= toward + away; ++j) {
      const auto code = encode_minifloat(kFormatE4M3, official[static_cast<std::size_t>(j)], Overflow::kSaturateFinite);
      c[static_cast<std::size_t>(j)] = decode_minifloat(kFormatE4M3, j <= toward ? code - 1 : code + 1);
    }
    return quant_direction_test(c, official, exact, one_row, 2.0);
  };
  for (int n = 1; n <= 30; ++n) {
    const StructureStat t = moved(n, 0);
    EXPECT_EQ(t.p < 1e-4, n >= 15) << n << ": " << describe(t);
    EXPECT_GT(moved(n, n).p, 0.5) << n;
  }
}

TEST(QuantDirection, BinomialUpperTail) {
  EXPECT_NEAR(binomial_upper_tail(10, 8, 0.5), 56.0 / 1024.0, 1e-15);
  EXPECT_NEAR(binomial_upper_tail(10, 3, 0.5), 968.0 / 1024.0, 1e-15);  // the lower branch
  EXPECT_NEAR(binomial_upper_tail(10, 10, 0.25), std::pow(0.25, 10), 1e-20);
  // P(X ≥ n/2) = ½ + P(X = n/2)/2, P(X = 5000) = 0.00797865 (n = 10^4)
  EXPECT_NEAR(binomial_upper_tail(10000, 5000, 0.5), 0.5 + 0.5 * 0.00797865, 1e-8);
  EXPECT_NEAR(binomial_upper_tail(100, 100, 0.5), std::ldexp(1.0, -100), 1e-40);
  EXPECT_EQ(binomial_upper_tail(5, 0, 0.3), 1.0);
  EXPECT_EQ(binomial_upper_tail(5, 6, 0.3), 0.0);
  EXPECT_LT(binomial_upper_tail(20000, 20000, 0.5), 1e-300);
  EXPECT_THROW(binomial_upper_tail(5, 2, 1.5), std::invalid_argument);
}

TEST(QuantFlips, BadInputThrows) {
  const std::vector<double> v(128, 1.0), w(127, 1.0);
  EXPECT_THROW(accept_quant_flips(v, w, v, 0.0, DType::kBF16, kLayout), std::invalid_argument);
  EXPECT_THROW(accept_quant_flips(v, v, v, -1.0, DType::kBF16, kLayout), std::invalid_argument);
  EXPECT_THROW(accept_quant_flips(v, v, v, 0.0, DType::kBF16, QuantisedLayout{128, 60, 64, BlockQuant::kFp8Ue8m0}),
               std::invalid_argument);
  EXPECT_THROW(accept_quant_flips(v, v, v, 0.0, DType::kBF16, QuantisedLayout{96, 64, 64, BlockQuant::kFp8Ue8m0}),
               std::invalid_argument);
  EXPECT_THROW(quant_flip_tolerance(std::nan(""), 1.0, DType::kBF16), std::invalid_argument);
  EXPECT_THROW(quant_direction_test(v, w, v, kLayout, 2.0), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4::compare
