// The QAT quantisers and weight dequantisers (spec 01 §1.3–§1.5, §1.7–§1.9). Expected values are
// worked out by hand (comments) or by an independent exact computation in double / integers.
#include "dsv4/numerics/quant.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant_margin.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {
namespace {

// Every finite e4m3fn value, from decoding all 256 patterns (independent of the encoder).
const std::set<double>& e4m3_values() {
  static const std::set<double> values = [] {
    std::set<double> v;
    for (int b = 0; b < 256; ++b) {
      const double d = e4m3_to_float(static_cast<std::uint8_t>(b));
      if (!std::isnan(d)) v.insert(d);
    }
    return v;
  }();
  return values;
}

// Random bf16 values with exponents in [lo, hi] (and some zeros), as floats.
std::vector<float> random_bf16(std::mt19937& rng, std::size_t n, int lo, int hi) {
  std::uniform_int_distribution<int> e(lo, hi), m(0, 127), sign(0, 1), zero(0, 19);
  std::vector<float> out(n);
  for (float& x : out) {
    if (zero(rng) == 0) {
      x = 0.0f;
      continue;
    }
    const double v = std::ldexp(1.0 + m(rng) / 128.0, e(rng));
    x = static_cast<float>(sign(rng) != 0 ? -v : v);
  }
  return out;
}

// Smallest k with 448·2^k ≥ a, computed exactly in double (a > 0 finite): ⌈log2(a/448)⌉.
int exact_ceil_log2_over(double a, double max) {
  int k = std::ilogb(a) - 10;
  while (std::ldexp(max, k) < a) ++k;
  while (std::ldexp(max, k - 1) >= a) --k;
  return k;
}

// ---- §1.3 helpers ----

TEST(QuantScale, Log2CeilAndPow2) {
  EXPECT_EQ(log2_ceil_fp32(1.0f), 0);
  EXPECT_EQ(log2_ceil_fp32(1.5f), 1);
  EXPECT_EQ(log2_ceil_fp32(0.5f), -1);
  EXPECT_EQ(log2_ceil_fp32(0.75f), 0);
  EXPECT_EQ(log2_ceil_fp32(0x1.0p-126f), -126);
  EXPECT_EQ(log2_ceil_fp32(0x1.0p-140f), -126);  // subnormal: the bit formula's value
  EXPECT_EQ(log2_ceil_fp32(0x1.fffffep127f), 128);
  EXPECT_EQ(pow2_fp32(0), 1.0f);
  EXPECT_EQ(pow2_fp32(-126), 0x1.0p-126f);
  EXPECT_EQ(pow2_fp32(127), 0x1.0p127f);
  EXPECT_EQ(pow2_fp32(-22), 0x1.0p-22f);
  EXPECT_EQ(float_bits(pow2_fp32(-127)), 0x00000000u);  // the kernel's bit trick just outside 2^n
  EXPECT_EQ(float_bits(pow2_fp32(128)), 0x7F800000u);
  EXPECT_EQ(float_bits(pow2_fp32(129)), 0x80000000u);
  EXPECT_THROW(pow2_fp32(-128), std::domain_error);
  EXPECT_THROW(pow2_fp32(130), std::domain_error);
  EXPECT_EQ(log2_ceil_fp32(0.0f), -127);
  EXPECT_EQ(log2_ceil_fp32(std::numeric_limits<float>::infinity()), 128);
  EXPECT_EQ(log2_ceil_fp32(std::numeric_limits<float>::quiet_NaN()), 129);
}

TEST(QuantScale, Constants) {
  EXPECT_EQ(float_bits(kInvFp8Max), 0x3B124925u);
  EXPECT_EQ(kInvFp8Max, static_cast<float>(1.0 / 448.0));  // the kernel's double 1/448 rounded
  EXPECT_EQ(kInvFp4Max, static_cast<float>(1.0 / 6.0));
  EXPECT_EQ(kActQuantAmaxFloor, static_cast<float>(1e-4));
  EXPECT_EQ(kFp4AmaxFloor, static_cast<float>(std::ldexp(6.0, -126)));
}

// spec 01 §1.3: for every positive finite bf16 amax, fast_round_scale(a, fl32(1/448)) equals the
// exact 2^⌈log2(a/448)⌉ (wherever that is ≥ 2^-126, i.e. a normal fp32 scale), and — with the
// act_quant clamp at fl32(1e-4) — a/s ∈ (224, 448]. Same for fp4: 2^⌈log2(a/6)⌉, a/s ∈ (3, 6].
TEST(QuantScale, RoundScaleExhaustiveOverBf16) {
  int checked = 0;
  for (std::uint32_t p = 1; p < 0x7F80u; ++p) {
    const float a = bf16_to_float(static_cast<std::uint16_t>(p));
    const int k8 = exact_ceil_log2_over(a, 448.0);
    if (k8 >= -126) {
      ASSERT_EQ(round_scale(a, kInvFp8Max), static_cast<float>(std::ldexp(1.0, k8))) << "bf16 pattern " << p;
      ++checked;
    }
    const int k4 = exact_ceil_log2_over(a, 6.0);
    if (k4 >= -126) {
      ASSERT_EQ(round_scale(a, kInvFp4Max), static_cast<float>(std::ldexp(1.0, k4))) << p;
    }

    const float clamped = std::max(a, kActQuantAmaxFloor);
    const float s = round_scale(clamped, kInvFp8Max);
    const double ratio = static_cast<double>(clamped) / s;
    ASSERT_GT(ratio, 224.0) << p;
    ASSERT_LE(ratio, 448.0) << p;
    const float clamped4 = std::max(a, kFp4AmaxFloor);
    const double ratio4 = static_cast<double>(clamped4) / round_scale(clamped4, kInvFp4Max);
    ASSERT_GT(ratio4, 3.0) << p;
    ASSERT_LE(ratio4, 6.0) << p;
  }
  EXPECT_GT(checked, 30000);
}

// ---- §1.4 act_quant ----

// amax clamped to fl32(1e-4): fl32(1e-4)·fl32(1/448) ≈ 1.87·2^-23 → scale 2^-22.
TEST(ActQuant, AmaxClampGivesScale2PowMinus22) {
  std::vector<float> zeros(64, 0.0f);
  const Fp8Blocks q = act_quant(zeros, 64, 64, ScaleFormat::kUE8M0);
  ASSERT_EQ(q.scales.size(), 1u);
  EXPECT_EQ(q.scales[0], 0x1.0p-22f);
  for (std::uint8_t c : q.values) EXPECT_EQ(c, 0x00);

  // 1e-5 / 2^-22 = 41.943… → e4m3 grid in [32, 64) has step 4: 40 (code 0b0'1100'010 = 0x62).
  std::vector<float> small(64, 1e-5f);
  const Fp8Blocks qs = act_quant(small, 64, 64, ScaleFormat::kUE8M0);
  EXPECT_EQ(qs.scales[0], 0x1.0p-22f);
  EXPECT_EQ(qs.values[0], 0x62);
  // fp32 scale: the clamp value times fl32(1/448), one fp32 rounding.
  const Fp8Blocks qf = act_quant(small, 64, 64, ScaleFormat::kFP32);
  const float expect = kActQuantAmaxFloor * kInvFp8Max;
  EXPECT_EQ(qf.scales[0], expect);
}

// A hand-worked block (ue8m0, block 8): amax 100 → 100/448 = 0.223 → s = 2^-2, a/s = 400.
TEST(ActQuant, HandComputedBlock) {
  const std::vector<float> x = {100.0f, -3.0f, 0.01f, 1e-6f, -1e-6f, 0x1.0p-12f, 3 * 0x1.0p-12f, 0.0006f};
  const Fp8Blocks q = act_quant(x, 8, 8, ScaleFormat::kUE8M0);
  ASSERT_EQ(q.scales.size(), 1u);
  EXPECT_EQ(q.scales[0], 0.25f);
  // 400: tie between 384 (mantissa 4) and 416 (mantissa 5) → 384 = code 0b0'1111'100 = 0x7C.
  EXPECT_EQ(q.values[0], 0x7C);
  // -12 = -1.5·2^3 → 0b1'1010'100 = 0xD4.
  EXPECT_EQ(q.values[1], 0xD4);
  // 0.04 in [2^-5, 2^-4), step 2^-8: 10.24 steps → 10·2^-8.
  EXPECT_EQ(e4m3_to_float(q.values[2]), 10 * 0x1.0p-8f);
  // 4e-6 < 2^-10 → +0; −4e-6 → −0 (sign kept).
  EXPECT_EQ(q.values[3], 0x00);
  EXPECT_EQ(q.values[4], 0x80);
  // 2^-12/2^-2 = 2^-10: tie between 0 and 2^-9 → 0 (even).
  EXPECT_EQ(q.values[5], 0x00);
  // 3·2^-10 = 1.5·2^-9: tie between 1·2^-9 and 2·2^-9 → 2·2^-9 (code 0x02).
  EXPECT_EQ(q.values[6], 0x02);
  // 0.0024 / 2^-9 = 1.2288 → 1·2^-9 (code 0x01).
  EXPECT_EQ(q.values[7], 0x01);

  std::vector<float> y = x;
  act_quant_inplace(y, 8, 8, ScaleFormat::kUE8M0);
  const std::vector<float> expect = {96.0f, -3.0f, 10 * 0x1.0p-10f, 0.0f, -0.0f, 0.0f, 0x1.0p-10f, 0x1.0p-11f};
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(y[i], expect[i]) << i;
    EXPECT_EQ(std::signbit(y[i]), std::signbit(expect[i])) << i;
  }
}

// spec 01 §1.4 step 2: the fp32 scale is fl32(a × fl32(1/448)), not fl32(a / 448). Find a bf16
// amax where the two differ and check which one act_quant uses.
TEST(ActQuant, Fp32ScaleMultipliesByRoundedReciprocal) {
  float found = 0.0f;
  for (std::uint32_t p = 0x3F80; p < 0x4400 && found == 0.0f; ++p) {
    const float a = bf16_to_float(static_cast<std::uint16_t>(p));
    const float mul = a * kInvFp8Max;
    const float div = a / 448.0f;
    if (mul != div) found = a;
  }
  ASSERT_NE(found, 0.0f) << "no bf16 value in [1, 512) separates a*fl32(1/448) from a/448";
  std::vector<float> x(128, 0.0f);
  x[17] = -found;
  const Fp8Blocks q = act_quant(x, 128, 128, ScaleFormat::kFP32);
  const float mul = found * kInvFp8Max;
  const float div = found / 448.0f;
  EXPECT_EQ(q.scales[0], mul);
  EXPECT_NE(q.scales[0], div);
}

// Each (row, block) depends only on its own elements.
TEST(ActQuant, RowsAndBlocksAreIndependent) {
  std::mt19937 rng(1);
  for (const ScaleFormat fmt : {ScaleFormat::kFP32, ScaleFormat::kUE8M0}) {
    for (const int block : {64, 128}) {
      const std::int64_t cols = 4 * block;
      const std::vector<float> x = random_bf16(rng, static_cast<std::size_t>(5 * cols), -30, 20);
      const Fp8Blocks all = act_quant(x, cols, block, fmt);
      for (std::int64_t r = 0; r < 5; ++r) {
        const std::span<const float> row(x.data() + r * cols, static_cast<std::size_t>(cols));
        const Fp8Blocks one = act_quant(row, cols, block, fmt);
        for (std::int64_t c = 0; c < cols; ++c) {
          ASSERT_EQ(one.values[static_cast<std::size_t>(c)], all.values[static_cast<std::size_t>(r * cols + c)]);
        }
        for (std::int64_t b = 0; b < 4; ++b) {
          ASSERT_EQ(one.scales[static_cast<std::size_t>(b)], all.scales[static_cast<std::size_t>(r * 4 + b)]);
          // A block quantised alone (as a row of one block) gives the same result.
          const Fp8Blocks blk = act_quant(
              row.subspan(static_cast<std::size_t>(b * block), static_cast<std::size_t>(block)), block, block, fmt);
          ASSERT_EQ(blk.scales[0], one.scales[static_cast<std::size_t>(b)]);
          for (int j = 0; j < block; ++j) {
            ASSERT_EQ(blk.values[static_cast<std::size_t>(j)], one.values[static_cast<std::size_t>(b * block + j)]);
          }
        }
      }
    }
  }
}

// In-place output values are bf16 values and equal bf16(fl32(fp32(q) × s)) of the out-of-place form,
// bit for bit (signed zeros included).
TEST(ActQuant, InplaceIsBf16AndEqualsOutOfPlaceDequant) {
  std::mt19937 rng(2);
  for (const ScaleFormat fmt : {ScaleFormat::kFP32, ScaleFormat::kUE8M0}) {
    for (const int block : {64, 128}) {
      const std::int64_t cols = 3 * block;
      const std::vector<float> x = random_bf16(rng, static_cast<std::size_t>(7 * cols), -40, 40);
      const Fp8Blocks q = act_quant(x, cols, block, fmt);
      std::vector<float> y = x;
      act_quant_inplace(y, cols, block, fmt);
      for (std::size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(float_bits(round_bf16(y[i])), float_bits(y[i])) << i;
        const float s = q.scales[i / static_cast<std::size_t>(block)];
        const float prod = e4m3_to_float(q.values[i]) * s;
        ASSERT_EQ(float_bits(round_bf16(prod)), float_bits(y[i])) << i;
        if (fmt == ScaleFormat::kUE8M0) {
          ASSERT_EQ(static_cast<double>(y[i]), static_cast<double>(e4m3_to_float(q.values[i])) * s);  // exact
        }
      }
    }
  }
}

// The quant-dequant operator is idempotent, but the (codes, scales) pair is not for ue8m0 scales:
// a = 228 gives s = 1 and q_max = e4m3(228) = 224; requantising 224 gives s' = 1/2, q' = 448.
TEST(ActQuant, Ue8m0ScaleCanHalveOnRequantisationWhileValuesStay) {
  std::vector<float> x(64, 0.0f);
  x[0] = 228.0f;
  x[1] = 17.0f;  // 17 → e4m3 grid in [16, 32) step 2: 16 (tie 17 → even mantissa 0)
  const Fp8Blocks q1 = act_quant(x, 64, 64, ScaleFormat::kUE8M0);
  EXPECT_EQ(q1.scales[0], 1.0f);
  EXPECT_EQ(e4m3_to_float(q1.values[0]), 224.0f);
  EXPECT_EQ(e4m3_to_float(q1.values[1]), 16.0f);
  std::vector<float> y = x;
  act_quant_inplace(y, 64, 64, ScaleFormat::kUE8M0);
  const Fp8Blocks q2 = act_quant(y, 64, 64, ScaleFormat::kUE8M0);
  EXPECT_EQ(q2.scales[0], 0.5f);
  EXPECT_EQ(e4m3_to_float(q2.values[0]), 448.0f);
  std::vector<float> z = y;
  act_quant_inplace(z, 64, 64, ScaleFormat::kUE8M0);
  EXPECT_EQ(z, y);
}

// The in-place form overflows at the top of the bf16 range, as the kernel does: bf16 max
// 0x7F7F = 255·2^120 → s = 2^120, 255 → e4m3 256, fl32(256·2^120) = 2^128 → +inf (and bf16(inf)).
// Likewise fp4: 3.5·2^126 → s = 2^126, 3.5 → 4, 4·2^126 → +inf. The (codes, scales) form is finite.
TEST(ActQuant, InplaceOverflowsAtTopOfBf16Range) {
  std::vector<float> x(64, 0.0f);
  x[0] = bf16_to_float(0x7F7F);
  x[1] = -1.0e38f;
  const Fp8Blocks q = act_quant(x, 64, 64, ScaleFormat::kUE8M0);
  EXPECT_EQ(q.scales[0], 0x1.0p120f);
  EXPECT_EQ(e4m3_to_float(q.values[0]), 256.0f);
  std::vector<float> y = x;
  act_quant_inplace(y, 64, 64, ScaleFormat::kUE8M0);
  EXPECT_EQ(y[0], std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isfinite(y[1]));
  std::vector<float> z(32, 0.0f);
  z[0] = 3.5f * 0x1.0p126f;
  fp4_act_quant_inplace(z, 32);
  EXPECT_EQ(z[0], std::numeric_limits<float>::infinity());
}

TEST(ActQuant, ArgumentValidation) {
  std::vector<float> x(256, 1.0f);
  EXPECT_THROW(act_quant(x, 100, 64, ScaleFormat::kUE8M0), std::invalid_argument);  // cols % block
  EXPECT_THROW(act_quant(x, 192, 64, ScaleFormat::kUE8M0), std::invalid_argument);  // size % cols
  EXPECT_THROW(act_quant(x, 0, 64, ScaleFormat::kUE8M0), std::invalid_argument);
  EXPECT_THROW(act_quant(x, 128, 0, ScaleFormat::kUE8M0), std::invalid_argument);
  EXPECT_THROW(act_quant_inplace(x, 96, 64, ScaleFormat::kFP32), std::invalid_argument);
  try {
    act_quant(x, 100, 64, ScaleFormat::kUE8M0);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of the block size 64"), std::string::npos) << e.what();
  }
  std::vector<float> empty;
  EXPECT_EQ(act_quant(empty, 128, 128, ScaleFormat::kFP32).rows, 0);
}

// The margin quantisers (quant_margin.hpp) check their rows and blocks as the quantisers do.
TEST(QuantMargin, ArgumentValidation) {
  const std::vector<float> x(256, 1.0f);
  std::vector<double> xd(256, 1.0);
  for (const BlockQuant kind : {BlockQuant::kFp8Ue8m0, BlockQuant::kFp4}) {
    EXPECT_THROW(block_quant_margin_fp32(x, 100, 64, kind), std::invalid_argument);  // cols % block
    EXPECT_THROW(block_quant_margin_fp32(x, 192, 64, kind), std::invalid_argument);  // size % cols
    EXPECT_THROW(block_quant_margin_fp32(x, 0, 64, kind), std::invalid_argument);
    EXPECT_THROW(block_quant_margin_fp32(x, 128, 0, kind), std::invalid_argument);
    EXPECT_THROW(block_quant_exact_inplace(xd, 100, 64, kind), std::invalid_argument);
    EXPECT_THROW(block_quant_exact_inplace(xd, 192, 64, kind), std::invalid_argument);
    EXPECT_THROW(block_quant_exact_inplace(xd, 0, 64, kind), std::invalid_argument);
    EXPECT_THROW(block_quant_exact_inplace(xd, 128, 0, kind), std::invalid_argument);
    EXPECT_NO_THROW(block_quant_margin_fp32(x, 128, 64, kind));
    EXPECT_NO_THROW(block_quant_exact_inplace(xd, 128, 64, kind));
  }
  try {
    block_quant_margin_fp32(x, 100, 64, BlockQuant::kFp4);
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(
        std::string(e.what()).find("block_quant_margin_fp32: row length 100 is not a multiple of the block size 64"),
        std::string::npos)
        << e.what();
  }
}

// ---- §1.5 fp4_act_quant ----

// amax 6 → fl32(6 × fl32(1/6)) = 1 → s = 1; the §1.2 midpoint table.
TEST(Fp4ActQuant, MidpointsAndPacking) {
  std::vector<float> x(32, 0.0f);
  const std::vector<float> head = {6.0f, 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, -0.25f, -6.0f, -2.5f, 0.5f};
  std::copy(head.begin(), head.end(), x.begin());
  //                                      6  .25  .75 1.25 1.75 2.5 3.5  5  -.25  -6 -2.5  .5
  const std::vector<std::uint8_t> codes = {7, 0, 2, 2, 4, 4, 6, 6, 8, 15, 12, 1};
  const Fp4Blocks q = fp4_act_quant(x, 32);
  ASSERT_EQ(q.scales.size(), 1u);
  EXPECT_EQ(q.scales[0], 127);  // 2^0
  ASSERT_EQ(q.packed.size(), 16u);
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const std::uint8_t byte = q.packed[i / 2];
    const std::uint8_t code = static_cast<std::uint8_t>(i % 2 == 0 ? byte & 0xF : byte >> 4);
    EXPECT_EQ(code, codes[i]) << "element " << i;
  }
  EXPECT_EQ(q.packed[0], 0x07);  // element 0 (code 7) low nibble, element 1 (code 0) high nibble
  EXPECT_EQ(q.packed[1], 0x22);
  EXPECT_EQ(q.packed[4], 0xF8);  // element 8 (−0 → 8) low, element 9 (−6 → 15) high

  std::vector<float> y = x;
  fp4_act_quant_inplace(y, 32);
  const std::vector<float> expect = {6, 0, 1, 1, 2, 2, 4, 4, -0.0f, -6, -2, 0.5f};
  for (std::size_t i = 0; i < expect.size(); ++i) {
    EXPECT_EQ(y[i], expect[i]) << i;
    EXPECT_EQ(std::signbit(y[i]), std::signbit(expect[i])) << i;
  }
}

TEST(Fp4ActQuant, ScalesAndClamp) {
  // zeros: a = 6·2^-126 → s = 2^-126 (e8m0 byte 1).
  std::vector<float> zeros(32, 0.0f);
  EXPECT_EQ(fp4_act_quant(zeros, 32).scales[0], 1);
  // a = 3 → 3·fl32(1/6) rounds to 0.5 → s = 1/2 (a/s = 6); a = 3.25 → s = 1 (a/s = 3.25 → 3).
  std::vector<float> x(64, 0.0f);
  x[0] = 3.0f;
  x[32] = 3.25f;
  x[33] = 0.24f;  // 0.24 < s/4 → 0
  x[34] = 0.26f;  // → 0.5
  const Fp4Blocks q = fp4_act_quant(x, 64);
  EXPECT_EQ(q.scales[0], 126);
  EXPECT_EQ(q.scales[1], 127);
  fp4_act_quant_inplace(x, 64);
  EXPECT_EQ(x[0], 3.0f);
  EXPECT_EQ(x[32], 3.0f);
  EXPECT_EQ(x[33], 0.0f);
  EXPECT_EQ(x[34], 0.5f);
  // a = 12 → s = 2: 1.0 → 0.5 (code 1) → 1.0; 0.49 → 0.245 → 0.
  std::vector<float> z(32, 0.0f);
  z[0] = 12.0f;
  z[1] = 1.0f;
  z[2] = 0.49f;
  fp4_act_quant_inplace(z, 32);
  EXPECT_EQ(z[0], 12.0f);
  EXPECT_EQ(z[1], 1.0f);
  EXPECT_EQ(z[2], 0.0f);
  EXPECT_THROW(fp4_act_quant(zeros, 16), std::invalid_argument);
  EXPECT_THROW(fp4_act_quant_inplace(zeros, 48), std::invalid_argument);
}

TEST(Fp4ActQuant, InplaceEqualsOutOfPlace) {
  std::mt19937 rng(3);
  const std::vector<float> x = random_bf16(rng, 32 * 4 * 9, -60, 60);
  const Fp4Blocks q = fp4_act_quant(x, 128);
  std::vector<float> y = x;
  fp4_act_quant_inplace(y, 128);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::uint8_t byte = q.packed[i / 2];
    const std::uint8_t code = static_cast<std::uint8_t>(i % 2 == 0 ? byte & 0xF : byte >> 4);
    const double v = static_cast<double>(e2m1_to_float(code)) * e8m0_to_float(q.scales[i / 32]);
    ASSERT_EQ(static_cast<double>(y[i]), v) << i;
    ASSERT_EQ(std::signbit(y[i]), std::signbit(v)) << i;
  }
}

// ---- weight dequantisation ----

TEST(WeightDequant, Fp8TilesWithPartialEdges) {
  const std::int64_t n = 130, k = 200;  // tiles: rows [0,128) [128,130), cols [0,128) [128,200)
  Tensor w(DType::kE4M3, {n, k});
  Tensor s(DType::kE8M0, {2, 2});
  auto wv = w.values<std::uint8_t>();
  for (std::size_t i = 0; i < wv.size(); ++i) {
    const auto b = static_cast<std::uint8_t>((i * 37) % 256);
    wv[i] = (b & 0x7F) == 0x7F ? std::uint8_t{0x3A} : b;  // every code but the NaNs
  }
  auto sv = s.values<std::uint8_t>();
  sv[0] = 127;  // 2^0
  sv[1] = 130;  // 2^3
  sv[2] = 120;  // 2^-7
  sv[3] = 1;    // 2^-126
  const Tensor out = dequant_fp8_weight(w, s);
  ASSERT_EQ(out.shape(), (std::vector<std::int64_t>{n, k}));
  const auto ov = out.values<float>();
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t c = 0; c < k; ++c) {
      const int tile = static_cast<int>((r >= 128 ? 2 : 0) + (c >= 128 ? 1 : 0));
      const int exps[4] = {0, 3, -7, -126};
      const double expect =
          static_cast<double>(e4m3_to_float(wv[static_cast<std::size_t>(r * k + c)])) * std::ldexp(1.0, exps[tile]);
      ASSERT_EQ(static_cast<double>(ov[static_cast<std::size_t>(r * k + c)]), expect) << r << "," << c;
    }
  }
  // e4m3 0x01 (2^-9) × 2^-126 = 2^-135: an fp32 subnormal, still exact.
  wv[static_cast<std::size_t>(129 * k + 199)] = 0x01;
  EXPECT_EQ(dequant_fp8_weight(w, s).values<float>()[static_cast<std::size_t>(129 * k + 199)], 0x1.0p-135f);

  EXPECT_THROW(dequant_fp8_weight(w, Tensor(DType::kE8M0, {1, 2})), std::invalid_argument);
  EXPECT_THROW(dequant_fp8_weight(w, Tensor(DType::kF32, {2, 2})), std::invalid_argument);
  EXPECT_THROW(dequant_fp8_weight(Tensor(DType::kBF16, {n, k}), s), std::invalid_argument);
  EXPECT_THROW(dequant_fp8_weight(Tensor(DType::kE4M3, {2, n, k}), s), std::invalid_argument);
}

TEST(WeightDequant, Fp4PackingLowNibbleIsEvenElement) {
  Tensor w(DType::kE2M1x2, {2, 64});
  Tensor s(DType::kE8M0, {2, 2});
  auto wv = w.values<std::uint8_t>();
  ASSERT_EQ(wv.size(), 64u);
  wv[0] = 0x2F;   // element 0 = code 0xF (−6), element 1 = code 2 (1.0)
  wv[16] = 0x71;  // row 0, elements 32 (code 1: 0.5), 33 (code 7: 6)
  wv[32] = 0x9B;  // row 1, elements 0 (code 0xB: −1.5), 1 (code 9: −0.5)
  auto sv = s.values<std::uint8_t>();
  sv[0] = 128;  // row 0, block 0: 2
  sv[1] = 125;  // row 0, block 1: 1/4
  sv[2] = 127;
  sv[3] = 127;
  const Tensor out = dequant_fp4_weight(w, s);
  const auto ov = out.values<float>();
  EXPECT_EQ(ov[0], -12.0f);
  EXPECT_EQ(ov[1], 2.0f);
  EXPECT_EQ(ov[2], 0.0f);
  EXPECT_EQ(ov[32], 0.125f);
  EXPECT_EQ(ov[33], 1.5f);
  EXPECT_EQ(ov[64], -1.5f);
  EXPECT_EQ(ov[65], -0.5f);
  EXPECT_THROW(dequant_fp4_weight(w, Tensor(DType::kE8M0, {2, 1})), std::invalid_argument);
  EXPECT_THROW(dequant_fp4_weight(Tensor(DType::kE2M1x2, {2, 48}), Tensor(DType::kE8M0, {2, 1})),
               std::invalid_argument);
  EXPECT_THROW(dequant_fp4_weight(Tensor(DType::kE4M3, {2, 64}), s), std::invalid_argument);
}

// ---- §1.9 FP4 → FP8 re-quantisation ----

void set_code(Tensor& w, std::int64_t r, std::int64_t c, std::uint8_t code) {
  auto wv = w.values<std::uint8_t>();
  std::uint8_t& byte = wv[static_cast<std::size_t>((r * w.dim(1) + c) / 2)];
  if (c % 2 == 0) {
    byte = static_cast<std::uint8_t>((byte & 0xF0) | code);
  } else {
    byte = static_cast<std::uint8_t>((byte & 0x0F) | (code << 4));
  }
}

// Exhaustive over every e2m1 code × every offset k = e − e_max ∈ [−20, 0]: the FP8 value is exact
// iff w·2^(k+6) is an e4m3 value; that holds for all codes iff k ≥ −14, i.e. the tile condition
// max/min scale ≤ 2^14 is exactly the threshold. Checked both against the decoded e4m3 set and
// through requantize_fp4_to_fp8 on a whole 128×128 tile per k.
TEST(Fp4ToFp8, ExhaustiveLosslessIffRatioAtMost2Pow14) {
  const std::set<double>& grid = e4m3_values();
  for (int k = -20; k <= 0; ++k) {
    bool all_exact = true;
    std::set<int> lossy_codes;
    for (int code = 0; code < 16; ++code) {
      const double w = e2m1_to_float(static_cast<std::uint8_t>(code));
      const bool exact = grid.count(w * std::ldexp(1.0, k + 6)) != 0;
      if (!exact) {
        all_exact = false;
        lossy_codes.insert(code);
      }
    }
    EXPECT_EQ(all_exact, k >= -kFp4ToFp8MaxScaleRatioLog2) << "k = " << k;

    // One tile: block (row 0, block 0) has scale 2^0 = e_max, every other block 2^k; every row
    // holds the 16 codes cyclically.
    Tensor w(DType::kE2M1x2, {128, 128});
    Tensor s(DType::kE8M0, {128, 4});
    for (std::int64_t r = 0; r < 128; ++r) {
      for (std::int64_t c = 0; c < 128; ++c) set_code(w, r, c, static_cast<std::uint8_t>((c + r) % 16));
    }
    auto sv = s.values<std::uint8_t>();
    for (auto& b : sv) b = static_cast<std::uint8_t>(127 + k);
    sv[0] = 127;
    const Fp4ToFp8Result res = requantize_fp4_to_fp8(w, s);
    ASSERT_EQ(res.tiles.size(), 1u);
    EXPECT_EQ(res.tiles[0].scale_ratio_log2, -k);
    EXPECT_EQ(res.tiles[0].condition_holds, k >= -14);
    EXPECT_EQ(res.scales.values<std::uint8_t>()[0], 127 - 6);
    std::int64_t expected_lossy = 0;
    for (std::int64_t r = 0; r < 128; ++r) {
      for (std::int64_t c = (r == 0 ? 32 : 0); c < 128; ++c) {
        if (lossy_codes.count(static_cast<int>((c + r) % 16)) != 0) ++expected_lossy;
      }
    }
    EXPECT_EQ(res.tiles[0].lossy_count, expected_lossy) << "k = " << k;
    EXPECT_EQ(static_cast<std::int64_t>(res.lossy.size()), expected_lossy);
    if (k >= -14) {
      EXPECT_TRUE(res.lossy.empty()) << "k = " << k;
    } else {
      EXPECT_FALSE(res.lossy.empty()) << "k = " << k;
    }
    // Every element: the e4m3 code is the RNE of the exact w·2^(k+6) (converter code 8 → +0).
    const auto out = res.weight.values<std::uint8_t>();
    for (std::int64_t r = 0; r < 128; ++r) {
      for (std::int64_t c = 0; c < 128; ++c) {
        const int code = static_cast<int>((c + r) % 16);
        const int kk = (r == 0 && c < 32) ? 0 : k;
        const double w_val = code == 8 ? 0.0 : e2m1_to_float(static_cast<std::uint8_t>(code));
        ASSERT_EQ(out[static_cast<std::size_t>(r * 128 + c)], double_to_e4m3(w_val * std::ldexp(1.0, kk + 6)))
            << r << "," << c << " k=" << k;
      }
    }
  }
}

// Tile-level reporting: [256, 160] weight → tiles 2×2, the right column partial (one 1×32 block).
// Tile (0,0) has ratio 2^15 at row 5, block 2 (cols 64..95): codes 0.5, 1.5, −0.5 there change.
TEST(Fp4ToFp8, LossyElementsReportedWithPositionsAndValues) {
  const std::int64_t n = 256, k = 160;
  Tensor w(DType::kE2M1x2, {n, k});
  Tensor s(DType::kE8M0, {n, k / 32});
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t c = 0; c < k; ++c) set_code(w, r, c, 4);  // 2.0 everywhere: exact for k ≥ −16
  }
  auto sv = s.values<std::uint8_t>();
  for (auto& b : sv) b = 127;
  sv[static_cast<std::size_t>(5 * 5 + 2)] = 127 - 15;  // row 5, block 2: 2^-15
  set_code(w, 5, 70, 1);                               // 0.5·2^-15
  set_code(w, 5, 71, 3);                               // 1.5·2^-15
  set_code(w, 5, 72, 9);                               // −0.5·2^-15
  set_code(w, 5, 73, 8);                               // −0: stays 0
  // Tile (1,1) (rows 128..255, cols 128..159): scales 2^10 and 2^-4 → ratio 2^14, lossless.
  sv[static_cast<std::size_t>(200 * 5 + 4)] = 127 + 10;
  sv[static_cast<std::size_t>(130 * 5 + 4)] = 127 - 4;
  set_code(w, 130, 129, 1);  // 0.5·2^-4 with k = −14 + 6 = −8: 2^-9, the smallest e4m3 subnormal

  const Fp4ToFp8Result res = requantize_fp4_to_fp8(w, s);
  ASSERT_EQ(res.tiles.size(), 4u);
  ASSERT_EQ(res.scales.shape(), (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(res.tiles[0].scale_ratio_log2, 15);
  EXPECT_FALSE(res.tiles[0].condition_holds);
  EXPECT_EQ(res.tiles[0].lossy_count, 3);
  EXPECT_EQ(res.tiles[1].scale_ratio_log2, 0);
  EXPECT_TRUE(res.tiles[1].condition_holds);
  EXPECT_EQ(res.tiles[2].tile_row, 1);
  EXPECT_EQ(res.tiles[2].tile_col, 0);
  EXPECT_EQ(res.tiles[3].scale_ratio_log2, 14);
  EXPECT_TRUE(res.tiles[3].condition_holds);
  EXPECT_EQ(res.tiles[3].lossy_count, 0);
  const auto rs = res.scales.values<std::uint8_t>();
  EXPECT_EQ(rs[0], 121);      // 2^(0−6)
  EXPECT_EQ(rs[3], 127 + 4);  // 2^(10−6)

  ASSERT_EQ(res.lossy.size(), 3u);
  // 0.5·2^-15: w·2^(k+6) = 0.5·2^-9 = 2^-10 → tie → 0.
  EXPECT_EQ(res.lossy[0].row, 5);
  EXPECT_EQ(res.lossy[0].col, 70);
  EXPECT_EQ(res.lossy[0].fp4_value, std::ldexp(0.5, -15));
  EXPECT_EQ(res.lossy[0].fp8_value, 0.0);
  // 1.5·2^-15: 1.5·2^-9 = 3·2^-10 → tie between 2^-9 and 2^-8 → 2^-8; × S = 2^-6 → 2^-14.
  EXPECT_EQ(res.lossy[1].col, 71);
  EXPECT_EQ(res.lossy[1].fp4_value, std::ldexp(1.5, -15));
  EXPECT_EQ(res.lossy[1].fp8_value, std::ldexp(1.0, -14));
  // −0.5·2^-15 → −0 (sign kept by the e4m3 cast).
  EXPECT_EQ(res.lossy[2].col, 72);
  EXPECT_EQ(res.lossy[2].fp4_value, -std::ldexp(0.5, -15));
  EXPECT_EQ(res.lossy[2].fp8_value, 0.0);
  const auto out = res.weight.values<std::uint8_t>();
  EXPECT_EQ(out[static_cast<std::size_t>(5 * k + 72)], 0x80);
  EXPECT_EQ(out[static_cast<std::size_t>(5 * k + 73)], 0x00);  // converter table: code 8 is +0.0
  EXPECT_EQ(out[static_cast<std::size_t>(130 * k + 129)], 0x01);

  // Where nothing is lossy, the FP8 form dequantises to exactly the FP4 form.
  const Tensor a = dequant_fp4_weight(w, s);
  const Tensor b = dequant_fp8_weight(res.weight, res.scales);
  const auto av = a.values<float>();
  const auto bv = b.values<float>();
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t c = 0; c < k; ++c) {
      const bool lossy = r == 5 && c >= 70 && c <= 72;
      if (!lossy) {
        ASSERT_EQ(av[static_cast<std::size_t>(r * k + c)], bv[static_cast<std::size_t>(r * k + c)]) << r << "," << c;
      }
    }
  }
}

TEST(Fp4ToFp8, ArgumentValidation) {
  EXPECT_THROW(requantize_fp4_to_fp8(Tensor(DType::kE2M1x2, {128, 48}), Tensor(DType::kE8M0, {128, 1})),
               std::invalid_argument);
  EXPECT_THROW(requantize_fp4_to_fp8(Tensor(DType::kE2M1x2, {128, 128}), Tensor(DType::kE8M0, {128, 3})),
               std::invalid_argument);
  EXPECT_THROW(requantize_fp4_to_fp8(Tensor(DType::kE4M3, {128, 128}), Tensor(DType::kE8M0, {128, 4})),
               std::invalid_argument);
  Tensor s(DType::kE8M0, {128, 4});
  for (auto& b : s.values<std::uint8_t>()) b = 0xFF;
  EXPECT_THROW(requantize_fp4_to_fp8(Tensor(DType::kE2M1x2, {128, 128}), s), std::invalid_argument);
  // Largest scale 2^-125: the tile scale 2^-131 is below the e8m0 range.
  for (auto& b : s.values<std::uint8_t>()) b = 2;
  EXPECT_THROW(requantize_fp4_to_fp8(Tensor(DType::kE2M1x2, {128, 128}), s), std::domain_error);
}

// ---- registry ----

TEST(QuantKinds, RegistryMatchesDirectCalls) {
  const std::vector<std::pair<std::string, int>> expected = {{"fp8-act-128", 128}, {"fp8-act-128-ue8m0", 128},
                                                             {"fp8-act-64", 64},   {"fp8-act-64-ue8m0", 64},
                                                             {"fp4-act-32", 32},   {"bf16", 1}};
  for (const auto& [name, block] : expected) {
    const QuantKind* kind = find_quant_kind(name);
    ASSERT_NE(kind, nullptr) << name;
    EXPECT_EQ(kind->name, name);
    EXPECT_EQ(kind->block, block);
    EXPECT_FALSE(kind->description.empty());
  }
  EXPECT_EQ(find_quant_kind("fp8"), nullptr);

  std::mt19937 rng(4);
  std::vector<float> x = random_bf16(rng, 512, -20, 20);
  x[3] = 1.00390625f + 0x1.0p-9f;  // not bf16: 1 + 0.75·2^-7 → 1 + 2^-7 (bf16 RNE)
  std::vector<float> a = x, b = x;
  find_quant_kind("fp8-act-64-ue8m0")->apply(a, 256);
  act_quant_inplace(b, 256, 64, ScaleFormat::kUE8M0);
  EXPECT_EQ(a, b);
  a = x;
  b = x;
  find_quant_kind("fp8-act-128")->apply(a, 256);
  act_quant_inplace(b, 256, 128, ScaleFormat::kFP32);
  EXPECT_EQ(a, b);
  a = x;
  b = x;
  find_quant_kind("fp4-act-32")->apply(a, 256);
  fp4_act_quant_inplace(b, 256);
  EXPECT_EQ(a, b);
  a = x;
  find_quant_kind("bf16")->apply(a, 1);
  EXPECT_EQ(a[3], 1.0078125f);
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (i != 3) {
      EXPECT_EQ(a[i], x[i]);
    }
  }
  EXPECT_THROW(find_quant_kind("fp8-act-128")->apply(a, 64), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
