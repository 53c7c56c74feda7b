// RMSNorm with weight (spec 01 §1.11 C8) and the weightless per-head q normalisation
// (spec 02 §2.4 step 3), both modes.
#include "dsv4/model/rmsnorm.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

Mat random_bf16(std::int64_t r, std::int64_t c, std::uint64_t stream, double scale) {
  return test::random_bf16_matrix(r, c, 7, stream, scale);
}

// A constant row c: mean of squares c², so y = w·c/sqrt(c² + eps). With eps = 1e-6 and c = 3 the
// official result rounds to exactly w (|1 − 3/sqrt(9 + 1e-6)| ≈ 5.6e-8 ≪ bf16 half-ulp 2^-9).
TEST(RmsNorm, ConstantRow) {
  const Mat x = Mat::Constant(2, 64, 3.0);
  const Vec w = Vec::Constant(64, 0.5);
  const Mat yo = rmsnorm(Precision(Mode::kOfficial), x, w, 1e-6);
  for (Eigen::Index i = 0; i < yo.size(); ++i) EXPECT_EQ(yo.data()[i], 0.5);
  const Mat ye = rmsnorm(Precision(Mode::kExact), x, w, 1e-6);
  const double expect = 0.5 * 3.0 / std::sqrt(9.0 + 1e-6);
  for (Eigen::Index i = 0; i < ye.size(); ++i) EXPECT_NEAR(ye.data()[i], expect, 4e-16);
  // eps = 0, c = 2: exactly w in double
  const Mat y2 = rmsnorm(Precision(Mode::kExact), Mat::Constant(1, 16, 2.0), Vec::Constant(16, 1.0), 0.0);
  for (Eigen::Index i = 0; i < y2.size(); ++i) EXPECT_EQ(y2.data()[i], 1.0);
}

// Official mode equals an independent float implementation of C8 (the sum of squares of bf16
// values over 512 elements is exact in double, then rounded once to fp32).
TEST(RmsNorm, OfficialMatchesIndependentC8) {
  const Mat x = random_bf16(5, 512, 1, 2.0);
  Vec w(512);
  for (int i = 0; i < 512; ++i) w(i) = round_bf16(0.5 + 0.001 * i);
  const double eps = 1e-6;
  const Mat y = rmsnorm(Precision(Mode::kOfficial), x, w, eps);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    double s = 0.0;
    for (Eigen::Index i = 0; i < x.cols(); ++i) s += x(r, i) * x(r, i);
    const float v = static_cast<float>(s) * (1.0f / 512.0f);
    const float rs = cr_rsqrt(v + static_cast<float>(eps));
    for (Eigen::Index i = 0; i < x.cols(); ++i) {
      const float z = static_cast<float>(x(r, i)) * rs;
      ASSERT_EQ(y(r, i), static_cast<double>(round_bf16(static_cast<float>(w(i)) * z))) << r << "," << i;
    }
  }
}

// Exact mode: every row has root-mean-square |w| (eps = 0) to double accuracy, and is invariant
// under scaling of the input by a power of two (bit for bit).
TEST(RmsNorm, ExactUnitRmsAndScaleInvariance) {
  const Precision p(Mode::kExact);
  const Mat x = random_bf16(4, 256, 2, 1.0);
  const Vec w = Vec::Ones(256);
  const Mat y = rmsnorm(p, x, w, 0.0);
  for (Eigen::Index r = 0; r < y.rows(); ++r) EXPECT_NEAR(y.row(r).squaredNorm() / 256.0, 1.0, 1e-14);
  const Mat y8 = rmsnorm(p, x * 8.0, w, 0.0);
  EXPECT_TRUE((y8.array() == y.array()).all());
}

// Per-head normalisation, official: every step a bf16 op (independent re-statement in floats).
TEST(HeadRmsNorm, OfficialMatchesIndependentBf16Steps) {
  const Mat x0 = random_bf16(3, 4 * 128, 3, 0.7);
  Mat x = x0;
  const double eps = 1e-6;
  head_rmsnorm_inplace(Precision(Mode::kOfficial), x, 128, eps);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (int h = 0; h < 4; ++h) {
      double s = 0.0;  // exact: bf16 squares
      for (int i = 0; i < 128; ++i) {
        const float q = static_cast<float>(x0(r, h * 128 + i));
        s += round_bf16(q * q);
      }
      const float mu = round_bf16(static_cast<float>(s) * (1.0f / 128.0f));
      const float v = round_bf16(mu + static_cast<float>(eps));
      const float rs = round_bf16(cr_rsqrt(v));
      for (int i = 0; i < 128; ++i) {
        const float q = static_cast<float>(x0(r, h * 128 + i));
        ASSERT_EQ(x(r, h * 128 + i), static_cast<double>(round_bf16(q * rs))) << r << "," << h << "," << i;
      }
    }
  }
}

TEST(HeadRmsNorm, ExactHeadsHaveUnitRms) {
  Mat x = random_bf16(2, 3 * 64, 4, 5.0);
  x.block(0, 64, 1, 64) *= 1e-3;  // heads are normalised independently
  head_rmsnorm_inplace(Precision(Mode::kExact), x, 64, 0.0);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (int h = 0; h < 3; ++h) EXPECT_NEAR(x.block(r, h * 64, 1, 64).squaredNorm() / 64.0, 1.0, 1e-14);
  }
}

TEST(RmsNorm, BadShapesThrow) {
  const Precision p(Mode::kExact);
  EXPECT_THROW(rmsnorm(p, Mat::Ones(1, 8), Vec::Ones(7), 1e-6), std::invalid_argument);
  Mat x = Mat::Ones(1, 100);
  EXPECT_THROW(head_rmsnorm_inplace(p, x, 64, 1e-6), std::invalid_argument);
  EXPECT_THROW(head_rmsnorm_inplace(p, x, 0, 1e-6), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
