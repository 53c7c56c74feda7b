// RoPE with YaRN (spec 02 §2.2 tables, §2.3 application).
#include "dsv4/model/rope.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

Mat random_bf16(std::int64_t r, std::int64_t c, std::uint64_t stream, double scale) {
  return test::random_bf16_matrix(r, c, 13, stream, scale);
}

RopeParams v4_compressed() {
  RopeParams rp;
  rp.rope_head_dim = 64;
  rp.base = 160000.0;
  rp.factor = 16.0;
  rp.original_seq_len = 65536;
  rp.beta_fast = 32.0;
  rp.beta_slow = 1.0;
  return rp;
}

// spec 02 §2.2: cd(32) = 15.45, cd(1) = 24.71 ⇒ lo = 15, hi = 25.
TEST(RopeYarn, V4CorrectionRange) {
  const YarnRange r = yarn_range(v4_compressed());
  EXPECT_TRUE(r.enabled);
  EXPECT_EQ(r.lo, 15.0);
  EXPECT_EQ(r.hi, 25.0);
  RopeParams off = v4_compressed();
  off.original_seq_len = 0;
  EXPECT_FALSE(yarn_range(off).enabled);
}

// Exact mode, the three regions: i ≤ 15 keeps β^(−2i/64); i ≥ 25 uses it / 16; 16..24 interpolate
// with ρ = (i − 15)/10: f = (f0/16)·ρ + f0·(1 − ρ).
TEST(RopeYarn, ExactThreeRegions) {
  const std::vector<double> f = rope_frequencies(Precision(Mode::kExact), v4_compressed());
  ASSERT_EQ(f.size(), 32u);
  for (int i = 0; i < 32; ++i) {
    const double f0 = std::pow(160000.0, -2.0 * i / 64.0);
    double expect = f0;
    if (i >= 25) {
      expect = f0 / 16.0;
    } else if (i > 15) {
      const double rho = (i - 15) / 10.0;
      expect = f0 / 16.0 * rho + f0 * (1.0 - rho);
    }
    EXPECT_NEAR(f[static_cast<std::size_t>(i)], expect, 1e-15 * f0) << i;
  }
  // YaRN off (original_seq_len 0): plain base frequencies
  RopeParams off = v4_compressed();
  off.original_seq_len = 0;
  const std::vector<double> g = rope_frequencies(Precision(Mode::kExact), off);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(g[static_cast<std::size_t>(i)], std::pow(160000.0, -i / 32.0), 1e-15) << i;
}

// lo == hi: with L_0 = 6 both correction dims are negative, lo = max(floor, 0) = 0 and
// hi = min(ceil(−0.12), 63) = 0, so hi becomes 0.001: pair 0 keeps f_0 = 1, all others are f/16.
TEST(RopeYarn, LoEqualsHiCase) {
  RopeParams rp = v4_compressed();
  rp.original_seq_len = 6;
  const YarnRange r = yarn_range(rp);
  EXPECT_EQ(r.lo, 0.0);
  EXPECT_EQ(r.hi, 0.001);
  for (Mode m : {Mode::kExact, Mode::kOfficial}) {
    const Precision p(m);
    const std::vector<double> f = rope_frequencies(p, rp);
    RopeParams off = rp;
    off.original_seq_len = 0;
    const std::vector<double> f0 = rope_frequencies(p, off);
    EXPECT_EQ(f[0], 1.0);
    for (int i = 1; i < 32; ++i) EXPECT_EQ(f[static_cast<std::size_t>(i)], f0[static_cast<std::size_t>(i)] / 16.0) << i;
  }
}

// Official frequencies: an independent float re-statement of the CUDA op sequence (division by a
// Python scalar is multiplication by the fp32 reciprocal; C2 pow).
TEST(RopeYarn, OfficialMatchesFloatOpSequence) {
  const std::vector<double> f = rope_frequencies(Precision(Mode::kOfficial), v4_compressed());
  const float inv_span = 1.0f / 10.0f;
  for (int i = 0; i < 32; ++i) {
    const float e = static_cast<float>(2 * i) * (1.0f / 64.0f);
    const float base = 1.0f / cr_pow(160000.0f, e);
    const float rho = std::fmin(std::fmax((static_cast<float>(i) - 15.0f) * inv_span, 0.0f), 1.0f);
    const float smooth = 1.0f - rho;
    const float a = (base * (1.0f / 16.0f)) * (1.0f - smooth);
    const float b = base * smooth;
    EXPECT_EQ(f[static_cast<std::size_t>(i)], static_cast<double>(a + b)) << i;
  }
}

// Layer kinds (spec 02 §2.2 table): tiny has ratios {0, 128, 4, 128, 4, 0, 0}.
TEST(RopeTable, LayerParameters) {
  const ModelConfig c = builtin_config("tiny");
  const RopeParams swa = rope_params_for_layer(c, 0);
  EXPECT_EQ(swa.base, c.rope_theta);
  EXPECT_EQ(swa.original_seq_len, 0);
  const RopeParams hca = rope_params_for_layer(c, 1);
  EXPECT_EQ(hca.base, c.compress_rope_theta);
  EXPECT_EQ(hca.original_seq_len, c.original_seq_len);
  EXPECT_EQ(rope_params_for_layer(c, 2).base, c.compress_rope_theta);
  EXPECT_THROW(rope_params_for_layer(c, 99), std::out_of_range);
  const RopeTable t = rope_table_for_layer(Precision(Mode::kOfficial), c, 2);
  EXPECT_EQ(t.positions(), c.max_seq_len);
  // official table: θ = fl32(fp32(t)·f_i), correctly rounded cos/sin
  for (std::int64_t pos : {0, 1, 77, 511}) {
    for (int i : {0, 7, 20, 31}) {
      const float theta = static_cast<float>(pos) * static_cast<float>(t.frequencies[static_cast<std::size_t>(i)]);
      EXPECT_EQ(t.cos(pos, i), static_cast<double>(cr_cos(theta)));
      EXPECT_EQ(t.sin(pos, i), static_cast<double>(cr_sin(theta)));
    }
  }
}

// Exact mode: rotation preserves every pair's norm, leaves the nope dims alone, and the inverse
// recovers the input to double accuracy.
TEST(RopeApply, ExactNormInverseNope) {
  const Precision p(Mode::kExact);
  const RopeTable t = rope_table(p, v4_compressed(), 300);
  const Mat x = random_bf16(5, 2 * 128, 1, 1.0);  // two heads of 128, rope on the last 64 of each
  Mat y = x;
  apply_rope_inplace(p, t, y, std::int64_t{290}, 128);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 64; ++i) ASSERT_EQ(y(r, h * 128 + i), x(r, h * 128 + i));
      for (int i = 0; i < 32; ++i) {
        const int k = h * 128 + 64 + 2 * i;
        const double n0 = std::hypot(x(r, k), x(r, k + 1)), n1 = std::hypot(y(r, k), y(r, k + 1));
        EXPECT_NEAR(n1, n0, 4e-16 * (1 + n0));
      }
    }
  }
  EXPECT_GT((y - x).cwiseAbs().maxCoeff(), 0.1);  // something rotated
  apply_rope_inplace(p, t, y, std::int64_t{290}, 128, /*inverse=*/true);
  EXPECT_LT((y - x).cwiseAbs().maxCoeff(), 1e-15 * 8);
}

// Official: forward then inverse recovers x within the derived bound 2.5·2^-8·‖(a,b)‖ per element of
// pair (a, b). Derivation: the rounded table has c² + s² = 1 + δ, |δ| ≤ 2^-22; each rotated
// component carries ≤ 2^-8 relative (bf16 RNE) plus 2·2^-24 (two fp32 products and a sum) of the
// pair norm; the inverse maps the forward error through a (1 + δ)-scaled rotation (√2 on a pair)
// and adds its own: √2(2^-8 + 2^-21)(1 + 2^-22) + (1 + 2^-21 + √2·2^-8)(2^-8 + 2^-21) + 2^-22
// < 2.43·2^-8.
TEST(RopeApply, OfficialInverseWithinBf16Bound) {
  const Precision p(Mode::kOfficial);
  const RopeTable t = rope_table(p, v4_compressed(), 4096);
  const Mat x = random_bf16(64, 64, 2, 2.0);
  std::vector<std::int64_t> pos(64);
  for (int r = 0; r < 64; ++r) pos[static_cast<std::size_t>(r)] = 64 * r + 3;
  Mat y = x;
  apply_rope_inplace(p, t, y, pos, 64);
  for (Eigen::Index i = 0; i < y.size(); ++i) ASSERT_EQ(y.data()[i], static_cast<double>(round_bf16(y.data()[i])));
  apply_rope_inplace(p, t, y, pos, 64, true);
  double worst = 0.0;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (int i = 0; i < 32; ++i) {
      const double norm = std::hypot(x(r, 2 * i), x(r, 2 * i + 1));
      const double bound = 2.5 * 0x1.0p-8 * norm;
      for (int j = 0; j < 2; ++j) {
        const double err = std::abs(y(r, 2 * i + j) - x(r, 2 * i + j));
        ASSERT_LE(err, bound) << r << "," << i;
        worst = std::max(worst, err / bound);
      }
    }
  }
  EXPECT_GT(worst, 0.0);  // bf16 rounding does show up (the bound is not vacuous)
}

// Exact mode: q(t)·k(s) depends on t − s only.
TEST(RopeApply, ExactRelativePosition) {
  const Precision p(Mode::kExact);
  const RopeTable t = rope_table(p, v4_compressed(), 2000);
  const Mat q = random_bf16(1, 64, 3, 1.0), k = random_bf16(1, 64, 4, 1.0);
  auto score = [&](std::int64_t tq, std::int64_t tk) {
    Mat a = q, b = k;
    apply_rope_inplace(p, t, a, tq, 64);
    apply_rope_inplace(p, t, b, tk, 64);
    return a.row(0).dot(b.row(0));
  };
  const double base = score(37, 5);
  for (std::int64_t d : {1, 100, 1500, 1962}) EXPECT_NEAR(score(37 + d, 5 + d), base, 1e-12) << d;
  EXPECT_GT(std::abs(score(38, 5) - base), 1e-6);  // and it does depend on t − s
}

TEST(RopeApply, BadInputThrows) {
  const Precision p(Mode::kExact);
  const RopeTable t = rope_table(p, v4_compressed(), 10);
  Mat x = Mat::Ones(3, 128);
  std::vector<std::int64_t> two = {0, 1};
  EXPECT_THROW(apply_rope_inplace(p, t, x, two, 128), std::invalid_argument);
  EXPECT_THROW(apply_rope_inplace(p, t, x, std::int64_t{8}, 128), std::out_of_range);  // position 10 ∉ table
  EXPECT_THROW(apply_rope_inplace(p, t, x, std::int64_t{0}, 32), std::invalid_argument);
  EXPECT_THROW(apply_rope_inplace(p, t, x, std::int64_t{0}, 96), std::invalid_argument);
  RopeParams odd = v4_compressed();
  odd.rope_head_dim = 63;
  EXPECT_THROW(rope_frequencies(p, odd), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
