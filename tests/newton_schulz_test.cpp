// The hybrid Newton–Schulz iteration of Muon (spec 06 §6.2): hand-derivable checks. The bands
// over generated matrices are properties (properties/newton_schulz_props.cpp).
#include "dsv4/train/newton_schulz.hpp"

#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/mat_bits.hpp"

namespace dsv4 {
namespace {

// The scalar iteration of spec 06 §6.2 on one normalised singular value s.
double scalar_hybrid(double s) {
  for (int k = 0; k < kNsAggressiveSteps; ++k) s = newton_schulz_scalar_step(s, kNsAggressive);
  for (int k = 0; k < kNsStabilisingSteps; ++k) s = newton_schulz_scalar_step(s, kNsStabilising);
  return s;
}

Mat gaussian(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("newton_schulz_test.y"));
  Mat m(rows, cols);
  for (std::int64_t i = 0; i < rows * cols; ++i) m.data()[i] = rng.normal(static_cast<std::uint64_t>(i));
  return m;
}

using test::bit_equal;

TEST(NewtonSchulz, CoefficientsOfSpec06) {
  EXPECT_EQ(kNsAggressive.a, 3.4445);
  EXPECT_EQ(kNsAggressive.b, -4.7750);
  EXPECT_EQ(kNsAggressive.c, 2.0315);
  EXPECT_EQ(kNsStabilising.a, 2.0);
  EXPECT_EQ(kNsStabilising.b, -1.5);
  EXPECT_EQ(kNsStabilising.c, 0.5);
  EXPECT_EQ(kNsAggressiveSteps, 8);
  EXPECT_EQ(kNsStabilisingSteps, 2);
  EXPECT_EQ(kNsEps, 1e-7);
}

// p(σ) = 2σ − 1.5σ³ + 0.5σ⁵ has p(1) = 1 (exact in double: 2 − 1.5 + 0.5) and
// p(σ) − 1 = (σ − 1)²(0.5σ³ + σ² − 1) (polynomial division), so with σ = 1 + h
// p − 1 = h²(0.5 + 3.5h + 2.5h² + 0.5h³): p'(1) = 0, p''(1) = 1.
TEST(NewtonSchulz, StabilisingPolynomialFixesOne) {
  EXPECT_EQ(newton_schulz_scalar_step(1.0, kNsStabilising), 1.0);
  for (const double h : {1e-2, -1e-2, 1e-3, -1e-3}) {
    const double s = 1.0 + h;
    const double expected = 1.0 + (s - 1.0) * (s - 1.0) * (0.5 * s * s * s + s * s - 1.0);
    // Both sides are a handful of roundings of values ≤ 2: 1e-15 covers them.
    EXPECT_NEAR(newton_schulz_scalar_step(s, kNsStabilising), expected, 1e-15) << h;
    // |2.5h⁴ + 0.5h⁵| ≤ 3h⁴ for |h| ≤ 1; 1e-15 covers the rounding (including that of σ = 1 + h).
    EXPECT_NEAR(newton_schulz_scalar_step(s, kNsStabilising) - 1.0, h * h / 2 + 3.5 * h * h * h,
                3 * h * h * h * h + 1e-15)
        << h;
  }
  // The aggressive polynomial by hand at σ = 0.5: 3.4445/2 − 4.775/8 + 2.0315/32.
  EXPECT_NEAR(newton_schulz_scalar_step(0.5, kNsAggressive), 1.72225 - 0.596875 + 0.063484375, 1e-15);
}

// A diagonal input (either orientation) runs exactly the scalar iteration on each diagonal entry:
// every Gram product has one non-zero term and the step's order is the scalar step's order
// (newton_schulz.hpp), so the bits agree; off-diagonal entries stay exactly 0.
TEST(NewtonSchulz, DiagonalIsScalarIterationBitForBit) {
  const std::vector<double> d{3.0, -1.0, 0.25, 1e-3};
  for (const bool tall : {false, true}) {
    Mat y = Mat::Zero(tall ? 6 : 4, tall ? 4 : 6);
    for (std::size_t i = 0; i < d.size(); ++i) y(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(i)) = d[i];
    const double denom = frobenius_norm(y) + kNsEps;
    EXPECT_EQ(frobenius_norm(y), std::sqrt(9.0 + 1.0 + 0.0625 + 1e-6));
    const NewtonSchulzPhases ph = hybrid_newton_schulz_phases(y);
    for (Eigen::Index r = 0; r < y.rows(); ++r) {
      for (Eigen::Index c = 0; c < y.cols(); ++c) {
        if (r != c || r >= static_cast<Eigen::Index>(d.size())) {
          EXPECT_EQ(ph.result(r, c), 0.0);
          EXPECT_EQ(ph.after_aggressive(r, c), 0.0);
          continue;
        }
        double s = d[static_cast<std::size_t>(r)] / denom;
        for (int k = 0; k < kNsAggressiveSteps; ++k) s = newton_schulz_scalar_step(s, kNsAggressive);
        EXPECT_EQ(double_bits(ph.after_aggressive(r, c)), double_bits(s)) << r;
        for (int k = 0; k < kNsStabilisingSteps; ++k) s = newton_schulz_scalar_step(s, kNsStabilising);
        EXPECT_EQ(double_bits(ph.result(r, c)), double_bits(s)) << r;
      }
    }
  }
}

// The failure regime by hand: for 0 ≤ σ ≤ 1.5, p_agg(σ) ≤ 3.4445σ (−4.775σ³ + 2.0315σ⁵ ≤ 0 iff
// σ² ≤ 2.35) and p_stab(σ) ≤ 2σ (σ² ≤ 3), so 10 steps multiply a small singular value by at most
// 4·3.4445⁸ ≈ 79,240: s = 1e-7 ends below 0.008, far from 1 (the direction is not orthogonalised).
TEST(NewtonSchulz, TinySingularValueIsNotOrthogonalised) {
  Mat y = Mat::Zero(2, 3);
  y(0, 0) = 1.0;
  y(1, 1) = 1e-7;
  const Mat x = hybrid_newton_schulz(y);
  const double s = 1e-7 / (frobenius_norm(y) + kNsEps);
  EXPECT_LE(x(1, 1), 4.0 * std::pow(3.4445, 8) * s);
  EXPECT_LT(x(1, 1), 0.008);
  EXPECT_GT(x(1, 1), 0.0);
  EXPECT_NEAR(x(0, 0), 1.0, 2e-3);
}

// An exactly orthogonal input Q (a 4×4 Hadamard matrix / 2: entries ±1/2, ‖Q‖_F = 2) has every
// singular value s = 1/(2 + ε) after normalisation, so X_10 = P(s)·Q with P the scalar iteration.
// Rounding: every entry of every iterate is ±t for one t (all Gram entries are sums of four ±t²),
// the deviation from P(s)·Q stays a few ulps times the amplification of the steps; 1e-12 is
// generous. P(0.4999999875) by the scalar iteration is within [1, 1.0020174] (the stabilised band
// of properties/README.md §Newton–Schulz).
TEST(NewtonSchulz, OrthogonalInputStaysOrthogonal) {
  Mat q(4, 4);
  q << 1, 1, 1, 1, 1, -1, 1, -1, 1, 1, -1, -1, 1, -1, -1, 1;
  q *= 0.5;
  EXPECT_EQ(frobenius_norm(q), 2.0);
  const Mat x = hybrid_newton_schulz(q);
  const double p = scalar_hybrid(1.0 / (2.0 + kNsEps));
  EXPECT_GE(p, 1.0);
  EXPECT_LE(p, 1.0020174);
  for (Eigen::Index i = 0; i < x.size(); ++i) EXPECT_NEAR(x.data()[i], p * q.data()[i], 1e-12);
  const Mat g = x.transpose() * x;
  EXPECT_LE((g - Mat::Identity(4, 4)).cwiseAbs().maxCoeff(), p * p - 1.0 + 1e-12);
}

// A Gaussian 6×10 matrix: its normalised singular values are far above the failure threshold, so
// every output singular value lies in the stabilised band [1, 1.0020174] of properties/README.md
// §Newton–Schulz (± 1e-9 for the iteration's rounding and the SVD's, both below 1e-11 here).
TEST(NewtonSchulz, GaussianMatrixIsOrthogonalised) {
  for (const bool tall : {false, true}) {
    const Mat y = tall ? Mat(gaussian(6, 10, 5).transpose()) : gaussian(6, 10, 5);
    const Mat x = hybrid_newton_schulz(y);
    ASSERT_EQ(x.rows(), y.rows());
    const Eigen::JacobiSVD<Mat> svd(x);
    for (Eigen::Index i = 0; i < svd.singularValues().size(); ++i) {
      EXPECT_GE(svd.singularValues()(i), 1.0 - 1e-9) << i;
      EXPECT_LE(svd.singularValues()(i), 1.0020174 + 1e-9) << i;
    }
  }
}

// Power-of-two scalings commute with every rounding (no overflow/underflow here):
// NS_ε(2^k Y) = NS_{ε·2^−k}(Y) and, with ε = 0, NS_0(2^k Y) = NS_0(Y), bit for bit.
TEST(NewtonSchulz, PowerOfTwoScalingBitForBit) {
  const Mat y = gaussian(5, 7, 11);
  for (const int k : {-60, -3, 1, 40}) {
    const Mat ys = y * std::ldexp(1.0, k);
    EXPECT_TRUE(bit_equal(hybrid_newton_schulz(ys, 0.0), hybrid_newton_schulz(y, 0.0))) << k;
    EXPECT_TRUE(bit_equal(hybrid_newton_schulz(ys), hybrid_newton_schulz(y, std::ldexp(kNsEps, -k)))) << k;
  }
}

// Non-square inputs are iterated in the wide orientation, so NS(Yᵀ) = NS(Y)ᵀ bit for bit.
TEST(NewtonSchulz, TransposeSymmetryBitForBit) {
  const Mat y = gaussian(9, 4, 3);
  const Mat yt = y.transpose();
  EXPECT_TRUE(bit_equal(hybrid_newton_schulz(yt), Mat(hybrid_newton_schulz(y).transpose())));
}

// The deterministic GEMM: the same bits for every thread count (a 128×150 iterate: its Gram
// products have ≥ 4e6 flops, the size from which gemm.cpp splits the work over threads).
TEST(NewtonSchulz, ThreadCountInvariant) {
  const Mat y = gaussian(128, 150, 7);
  const Mat one = hybrid_newton_schulz(y, kNsEps, 1);
  EXPECT_TRUE(bit_equal(one, hybrid_newton_schulz(y, kNsEps, 2)));
  EXPECT_TRUE(bit_equal(one, hybrid_newton_schulz(y, kNsEps, 3)));
}

TEST(NewtonSchulz, ZeroInputGivesZeroUpdate) {
  const Mat x = hybrid_newton_schulz(Mat::Zero(3, 5));
  EXPECT_EQ(x.cwiseAbs().maxCoeff(), 0.0);
}

TEST(NewtonSchulz, BadInputThrows) {
  EXPECT_THROW(hybrid_newton_schulz(Mat(0, 3)), std::invalid_argument);
  EXPECT_THROW(hybrid_newton_schulz(Mat(3, 0)), std::invalid_argument);
  Mat y = gaussian(3, 4, 1);
  y(1, 2) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(hybrid_newton_schulz(y), std::invalid_argument);
  y(1, 2) = std::numeric_limits<double>::infinity();
  EXPECT_THROW(hybrid_newton_schulz(y), std::invalid_argument);
  try {
    hybrid_newton_schulz(y);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("y element 1,2"), std::string::npos) << e.what();
  }
  const Mat g = gaussian(3, 4, 1);
  EXPECT_THROW(hybrid_newton_schulz(g, -1.0), std::invalid_argument);
  EXPECT_THROW(hybrid_newton_schulz(g, std::numeric_limits<double>::quiet_NaN()), std::invalid_argument);
  EXPECT_THROW(hybrid_newton_schulz(Mat::Zero(2, 2), 0.0), std::invalid_argument);
  EXPECT_THROW(hybrid_newton_schulz(Mat::Constant(2, 2, 1e308)), std::invalid_argument);
  EXPECT_THROW(newton_schulz_step(Mat(0, 0), kNsAggressive), std::invalid_argument);
  EXPECT_NO_THROW(hybrid_newton_schulz(Mat::Constant(2, 2, 1e307)));
}

}  // namespace
}  // namespace dsv4
