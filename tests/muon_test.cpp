// Muon (spec 06 §6.2, ref/train/muon.hpp): a hand-checked diagonal case over two steps (momentum,
// Nesterov input, Newton–Schulz, √max(n, m)·0.18, decoupled decay), the transpose rule, the update
// RMS band of issue 16 item 8, bad input.
#include "dsv4/train/muon.hpp"

#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "dsv4/numerics/philox.hpp"
#include "support/mat_bits.hpp"

namespace dsv4 {
namespace {

using test::bit_equal;

Mat gaussian(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("muon_test.g"));
  Mat m(rows, cols);
  for (std::int64_t i = 0; i < rows * cols; ++i) m.data()[i] = rng.normal(static_cast<std::uint64_t>(i));
  return m;
}

// The scalar iteration of spec 06 §6.2 on one normalised singular value.
double scalar_hybrid(double s) {
  for (int k = 0; k < kNsAggressiveSteps; ++k) s = newton_schulz_scalar_step(s, kNsAggressive);
  for (int k = 0; k < kNsStabilisingSteps; ++k) s = newton_schulz_scalar_step(s, kNsStabilising);
  return s;
}

double rms(const Mat& m) { return std::sqrt(m.squaredNorm() / static_cast<double>(m.size())); }

TEST(Muon, HyperParametersOfSpec06) {
  const MuonConfig c;
  EXPECT_EQ(c.momentum, 0.95);
  EXPECT_EQ(c.rms, 0.18);
  EXPECT_EQ(c.weight_decay, 0.1);
  EXPECT_EQ(c.ns_eps, 1e-7);
}

// G_1 = diag(3, −4), G_2 = diag(1, 2) on a 2×2 W = I, η = 0.02. By hand:
//   step 1: M = G_1, Y = 1.95·G_1 = diag(5.85, −7.8), ‖Y‖_F = 9.75, the normalised singular values
//           0.6 and 0.8 (less ε); Newton–Schulz acts on each diagonal entry as the scalar map p^10;
//           O = diag(p^10(0.6), −p^10(0.8))·√2·0.18 ≈ diag(0.2546, −0.2546); W = 0.998·I − 0.02·O.
//   step 2: M = 0.95·G_1 + G_2 = diag(3.85, −1.8), Y = 0.95·M + G_2 = diag(4.6575, 0.29).
TEST(Muon, DiagonalCaseMatchesHandDerivation) {
  Mat w = Mat::Identity(2, 2);
  MuonState s = muon_state(w);
  Mat g1 = Mat::Zero(2, 2), g2 = Mat::Zero(2, 2);
  g1(0, 0) = 3;
  g1(1, 1) = -4;
  g2(0, 0) = 1;
  g2(1, 1) = 2;
  const double lr = 0.02, scale = std::sqrt(2.0) * 0.18;
  const Mat o1 = muon_step(w, s, g1, lr);
  EXPECT_TRUE(s.momentum == g1);
  const double d1 = 9.75 + 1e-7;
  double worst = 0;
  const auto near = [&worst](double got, double want) {
    worst = std::fmax(worst, std::fabs(got - want) / std::fabs(want));
    EXPECT_LE(std::fabs(got - want), 1e-14 * std::fabs(want));
  };
  near(o1(0, 0), scalar_hybrid(5.85 / d1) * scale);
  near(o1(1, 1), -scalar_hybrid(7.8 / d1) * scale);
  EXPECT_EQ(o1(0, 1), 0.0);
  EXPECT_EQ(o1(1, 0), 0.0);
  EXPECT_NEAR(o1(0, 0), 0.18 * std::sqrt(2.0), 0.18 * std::sqrt(2.0) * 2.1e-3);  // p^10 ∈ [1 − 1e-9, 1.0020174]
  near(w(0, 0), 0.998 - lr * o1(0, 0));
  near(w(1, 1), 0.998 - lr * o1(1, 1));
  const Mat w1 = w;
  const Mat o2 = muon_step(w, s, g2, lr);
  near(s.momentum(0, 0), 3.85);
  near(s.momentum(1, 1), -1.8);
  const double d2 = std::sqrt(4.6575 * 4.6575 + 0.29 * 0.29) + 1e-7;
  near(o2(0, 0), scalar_hybrid(4.6575 / d2) * scale);
  near(o2(1, 1), scalar_hybrid(0.29 / d2) * scale);
  near(w(0, 0), w1(0, 0) * 0.998 - lr * o2(0, 0));
  std::printf("measured: max relative error against the hand derivation %.3g\n", worst);
}

// A tall Y is iterated as Yᵀ and transposed back (spec 06 §6.2): the result is bit for bit the
// explicit transposed iteration, a wide input's direction is the transpose of its tall transpose's,
// and a step on Wᵀ with Gᵀ gives the transposed parameters.
TEST(Muon, TallMatricesIterateTransposed) {
  const Mat y = gaussian(12, 5, 1);  // tall
  Mat x = newton_schulz_normalise(Mat(y.transpose()));
  for (int k = 0; k < kNsAggressiveSteps; ++k) x = newton_schulz_step(x, kNsAggressive);
  for (int k = 0; k < kNsStabilisingSteps; ++k) x = newton_schulz_step(x, kNsStabilising);
  Mat want = x.transpose();
  const double scale = std::sqrt(12.0) * 0.18;
  for (Eigen::Index i = 0; i < want.size(); ++i) want.data()[i] = want.data()[i] * scale;
  EXPECT_TRUE(bit_equal(muon_direction(y), want));
  EXPECT_TRUE(bit_equal(muon_direction(Mat(y.transpose())), Mat(muon_direction(y).transpose())));
  Mat w = gaussian(12, 5, 2), wt = w.transpose();
  MuonState s = muon_state(w), st = muon_state(wt);
  for (std::uint64_t step = 0; step < 2; ++step) {
    const Mat g = gaussian(12, 5, 10 + step);
    muon_step(w, s, g, 0.01);
    muon_step(wt, st, Mat(g.transpose()), 0.01);
    EXPECT_TRUE(bit_equal(wt, Mat(w.transpose())));
  }
}

// Issue 16 item 8: RMS(O) = γ·√(mean σ_i(O')²) ∈ γ·[σ_min(O'), σ_max(O')], and when every normalised
// singular value of Y is ≥ τ_ok = 3.7e-5 Newton–Schulz puts σ(O') in [1 − 1e-9, 1.0020174]
// (properties/README.md §Newton–Schulz), so RMS(O) ∈ 0.18·[1 − 1e-9, 1.0020174], up to the rounding
// of O and of the RMS (≤ 1e-14 relative, far below the band's width).
TEST(Muon, UpdateRmsIsGammaWithinTheNewtonSchulzBand) {
  double lo = 1e9, hi = 0;
  for (const auto& [n, m] : std::vector<std::pair<int, int>>{{8, 8}, {16, 4}, {4, 16}, {24, 9}, {1, 7}, {30, 30}}) {
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      const Mat y = gaussian(n, m, 100 * seed + n);
      const Eigen::JacobiSVD<Mat> svd(y);
      const double fro = frobenius_norm(y) + kNsEps;
      ASSERT_GE(svd.singularValues().minCoeff() / fro, 3.7e-5) << n << "x" << m;  // every direction orthogonalised
      const Mat o = muon_direction(y);
      const double r = rms(o) / 0.18;
      lo = std::min(lo, r);
      hi = std::max(hi, r);
      EXPECT_GE(r, (1 - 1e-9) * (1 - 1e-14)) << n << "x" << m;
      EXPECT_LE(r, 1.0020174 * (1 + 1e-14)) << n << "x" << m;
      // The identity behind the band, from the singular values of O' = O/(√max·γ).
      const Eigen::JacobiSVD<Mat> so(o / (std::sqrt(static_cast<double>(std::max(n, m))) * 0.18));
      const double mean_sq = so.singularValues().squaredNorm() / static_cast<double>(std::min(n, m));
      EXPECT_NEAR(r, std::sqrt(mean_sq), 1e-13);
    }
  }
  std::printf("measured: update RMS / 0.18 in [%.9g, %.9g]\n", lo, hi);
}

// wo_a's row blocks are separate matrices (optimizer_assignment.hpp): a step with 2 blocks is, bit
// for bit, the two blocks' own steps; one block of the same rows is a different (coupled) matrix.
TEST(Muon, RowBlocksAreSeparateMatrices) {
  const Mat w0 = gaussian(6, 10, 30), g = gaussian(6, 10, 31);
  Mat w = w0;
  MuonState s = muon_state(w);
  const Mat o = muon_step(w, s, g, 0.01, {}, 2);
  for (std::int64_t b = 0; b < 2; ++b) {
    Mat wb = w0.middleRows(b * 3, 3);
    MuonState sb = muon_state(wb);
    const Mat ob = muon_step(wb, sb, Mat(g.middleRows(b * 3, 3)), 0.01);
    EXPECT_TRUE(bit_equal(ob, Mat(o.middleRows(b * 3, 3))));
    EXPECT_TRUE(bit_equal(wb, Mat(w.middleRows(b * 3, 3))));
  }
  Mat whole = w0;
  MuonState sw = muon_state(whole);
  EXPECT_FALSE(bit_equal(muon_step(whole, sw, g, 0.01), o));
  EXPECT_THROW(muon_step(whole, sw, g, 0.01, {}, 4), std::invalid_argument);  // 4 does not divide 6
}

TEST(Muon, ZeroGradientOnlyDecays) {
  Mat w = gaussian(3, 4, 5);
  const Mat w0 = w;
  MuonState s = muon_state(w);
  const Mat o = muon_step(w, s, Mat::Zero(3, 4), 0.1);
  EXPECT_TRUE(o.isZero(0));  // Y = 0: X_0 = 0/(0 + ε) = 0
  EXPECT_TRUE(w == Mat(w0 * (1.0 - 0.1 * 0.1)));
}

TEST(Muon, BadInputThrows) {
  Mat w = Mat::Zero(2, 3);
  MuonState s = muon_state(w);
  EXPECT_THROW(muon_step(w, s, Mat::Zero(3, 2), 0.1), std::invalid_argument);
  EXPECT_THROW(muon_step(w, s, Mat::Constant(2, 3, INFINITY), 0.1), std::invalid_argument);
  EXPECT_THROW(muon_step(w, s, Mat::Zero(2, 3), NAN), std::invalid_argument);
  MuonConfig bad;
  bad.momentum = 1.0;
  EXPECT_THROW(muon_step(w, s, Mat::Zero(2, 3), 0.1, bad), std::invalid_argument);
  EXPECT_TRUE(s.momentum.isZero(0));  // a refused step changes nothing
}

}  // namespace
}  // namespace dsv4
