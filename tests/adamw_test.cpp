// AdamW (spec 06 §6.3, ref/train/adamw.hpp): two steps against hand-derived values, the first
// step's update is sign(g), the weight decay is decoupled, bad input is refused.
#include "dsv4/train/adamw.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "dsv4/numerics/philox.hpp"

namespace dsv4 {
namespace {

Mat one(double x) { return Mat::Constant(1, 1, x); }

double rel(double got, double want) { return std::fabs(got - want) / std::fabs(want); }

TEST(AdamW, HyperParametersOfSpec06) {
  const AdamWConfig c;
  EXPECT_EQ(c.beta1, 0.9);
  EXPECT_EQ(c.beta2, 0.95);
  EXPECT_EQ(c.eps, 1e-20);
  EXPECT_EQ(c.weight_decay, 0.1);
}

// w = 1, η = 0.01, λ = 0.1. Step 1, g = 2: m = 0.2, v = 0.2, m̂ = 2, v̂ = 4, u = 2/(2 + 1e-20) = 1,
// w = 1·0.999 − 0.01 = 0.989. Step 2, g = −1: m = 0.18 − 0.1 = 0.08, v = 0.19 + 0.05 = 0.24,
// m̂ = 0.08/0.19 = 8/19, v̂ = 0.24/0.0975 = 32/13, u = (8/19)·√(13/32), w = 0.989·0.999 − 0.01·u.
TEST(AdamW, TwoStepsMatchHandDerivedValues) {
  Mat w = one(1.0);
  AdamWState s = adamw_state(w);
  const double u1 = adamw_step(w, s, one(2.0), 0.01)(0, 0);
  EXPECT_EQ(s.step, 1);
  EXPECT_LE(rel(u1, 1.0), 1e-15);
  EXPECT_LE(rel(s.m(0, 0), 0.2), 1e-15);
  EXPECT_LE(rel(s.v(0, 0), 0.2), 1e-15);
  EXPECT_LE(rel(w(0, 0), 0.989), 1e-15);
  std::printf("measured: step 1 w relative error %.3g\n", rel(w(0, 0), 0.989));
  const double u2 = adamw_step(w, s, one(-1.0), 0.01)(0, 0);
  const double u2_want = (8.0 / 19.0) * std::sqrt(13.0 / 32.0);
  const double w2_want = 0.989 * 0.999 - 0.01 * u2_want;
  EXPECT_LE(rel(s.m(0, 0), 0.08), 1e-15);
  EXPECT_LE(rel(s.v(0, 0), 0.24), 1e-15);
  EXPECT_LE(rel(u2, u2_want), 1e-15);
  EXPECT_LE(rel(w(0, 0), w2_want), 1e-15);
  std::printf("measured (relative to the hand values): step 1 u %.3g; step 2 u %.3g, w %.3g\n", rel(u1, 1.0),
              rel(u2, u2_want), rel(w(0, 0), w2_want));
}

// Bias-corrected first step: m̂ = g, v̂ = g², so u = g/(|g| + ε) — sign(g) up to ε/|g| — over
// magnitudes 1e-12 … 1e12 (ε = 1e-20 is visible at 1e-12: u = 1 − 1e-8).
TEST(AdamW, FirstStepIsTheSignOfTheGradient) {
  const CounterRng rng(7, stream_id("adamw_test.g"));
  Mat g(16, 24), w(16, 24);
  for (Eigen::Index i = 0; i < g.size(); ++i) {
    g.data()[i] = rng.normal(2 * i) * std::pow(10.0, static_cast<double>(i % 25) - 12.0);
    w.data()[i] = rng.normal(2 * i + 1);
  }
  const Mat w0 = w;
  AdamWState s = adamw_state(w);
  const double lr = 2.7e-4;
  const Mat u = adamw_step(w, s, g, lr);
  double worst = 0;
  for (Eigen::Index i = 0; i < g.size(); ++i) {
    const double gi = g.data()[i];
    const double want = gi / (std::fabs(gi) + 1e-20);
    worst = std::fmax(worst, rel(u.data()[i], want));
    EXPECT_LE(std::fabs(u.data()[i] - (gi > 0 ? 1.0 : -1.0)), 1e-20 / std::fabs(gi) + 4e-16);
    EXPECT_LE(std::fabs(w.data()[i] - (w0.data()[i] * (1 - lr * 0.1) - lr * want)),
              1e-15 * (std::fabs(w0.data()[i]) + lr));
  }
  EXPECT_LE(worst, 4e-16);
  std::printf("measured: max relative |u - g/(|g| + eps)| on the first step %.3g\n", worst);
}

// Decoupled decay: the moments and the direction u do not depend on w, and w moves by exactly
// w·(1 − ηλ) − η·u (λ = 0: w − η·u). Coupled (L2) decay would feed λw into g and change u.
TEST(AdamW, WeightDecayIsDecoupled) {
  const CounterRng rng(8, stream_id("adamw_test.decay"));
  Mat g(4, 5);
  for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = rng.normal(i);
  Mat wa = Mat::Constant(4, 5, 3.0), wb = Mat::Constant(4, 5, -250.0);
  AdamWState sa = adamw_state(wa), sb = adamw_state(wb);
  const double lr = 1e-3;
  for (int step = 0; step < 3; ++step) {
    const Mat wa0 = wa, wb0 = wb;
    const Mat ua = adamw_step(wa, sa, g * (step + 1.0), lr);
    const Mat ub = adamw_step(wb, sb, g * (step + 1.0), lr);
    EXPECT_TRUE(ua == ub);
    EXPECT_TRUE(sa.m == sb.m && sa.v == sb.v);
    for (Eigen::Index i = 0; i < g.size(); ++i) {
      EXPECT_EQ(wa.data()[i], wa0.data()[i] * (1.0 - lr * 0.1) - lr * ua.data()[i]);
      EXPECT_EQ(wb.data()[i], wb0.data()[i] * (1.0 - lr * 0.1) - lr * ub.data()[i]);
    }
  }
  AdamWConfig no_decay;
  no_decay.weight_decay = 0;
  Mat w = Mat::Constant(4, 5, 3.0);
  AdamWState s = adamw_state(w);
  const Mat u = adamw_step(w, s, g, lr, no_decay);
  for (Eigen::Index i = 0; i < g.size(); ++i) EXPECT_EQ(w.data()[i], 3.0 - lr * u.data()[i]);
}

TEST(AdamW, ZeroGradientOnlyDecays) {
  Mat w = Mat::Constant(2, 3, 5.0);
  AdamWState s = adamw_state(w);
  const Mat u = adamw_step(w, s, Mat::Zero(2, 3), 0.5);
  EXPECT_TRUE(u.isZero(0));
  EXPECT_TRUE(w == Mat::Constant(2, 3, 5.0 * (1.0 - 0.5 * 0.1)));
}

TEST(AdamW, BadInputThrows) {
  Mat w = Mat::Zero(2, 2);
  AdamWState s = adamw_state(w);
  EXPECT_THROW(adamw_step(w, s, Mat::Zero(2, 3), 0.1), std::invalid_argument);
  EXPECT_THROW(adamw_step(w, s, Mat::Constant(2, 2, NAN), 0.1), std::invalid_argument);
  EXPECT_THROW(adamw_step(w, s, Mat::Zero(2, 2), -1.0), std::invalid_argument);
  AdamWConfig bad;
  bad.beta2 = 1.0;
  EXPECT_THROW(adamw_step(w, s, Mat::Zero(2, 2), 0.1, bad), std::invalid_argument);
  EXPECT_EQ(s.step, 0);  // a refused step changes nothing
}

}  // namespace
}  // namespace dsv4
