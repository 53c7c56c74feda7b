// The hybrid Newton–Schulz iteration (spec 06 §6.2). Order of operations: newton_schulz.hpp.
#include "dsv4/train/newton_schulz.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "dsv4/numerics/gemm.hpp"

namespace dsv4 {
namespace {

std::string shape_of(const Mat& m) { return std::to_string(m.rows()) + "x" + std::to_string(m.cols()); }

void check_matrix(const Mat& m, const char* fn, const char* name) {
  if (m.rows() == 0 || m.cols() == 0) {
    throw std::invalid_argument(std::string(fn) + ": " + name + " is empty (" + shape_of(m) + ")");
  }
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    if (!std::isfinite(m.data()[i])) {
      throw std::invalid_argument(std::string(fn) + ": " + name + " element " + std::to_string(i / m.cols()) + "," +
                                  std::to_string(i % m.cols()) + " is not finite");
    }
  }
}

}  // namespace

// spec 06 §6.2: the scalar polynomial p(σ) = aσ + bσ³ + cσ⁵ in the matrix step's order.
double newton_schulz_scalar_step(double sigma, const NsCoefficients& c) {
  const double s2 = sigma * sigma;
  const double s4 = s2 * s2;
  const double b = c.b * s2 + c.c * s4;
  return c.a * sigma + b * sigma;
}

// spec 06 §6.2 (the normaliser ‖Y‖_F), with an exact power-of-two pre-scaling against overflow.
double frobenius_norm(const Mat& y) {
  check_matrix(y, "frobenius_norm", "y");
  double amax = 0.0;
  for (Eigen::Index i = 0; i < y.size(); ++i) amax = std::fmax(amax, std::fabs(y.data()[i]));
  if (amax == 0.0) return 0.0;
  const int e = std::ilogb(amax);
  double sum = 0.0;
  for (Eigen::Index i = 0; i < y.size(); ++i) {
    const double v = std::ldexp(y.data()[i], -e);
    sum += v * v;
  }
  const double norm = std::ldexp(std::sqrt(sum), e);
  if (!std::isfinite(norm)) throw std::invalid_argument("frobenius_norm: the Frobenius norm of y overflows double");
  return norm;
}

// spec 06 §6.2: X_0 = Y / (‖Y‖_F + ε).
Mat newton_schulz_normalise(const Mat& y, double eps) {
  if (!std::isfinite(eps) || eps < 0.0) {
    throw std::invalid_argument("newton_schulz: eps " + std::to_string(eps) + " is not a finite value >= 0");
  }
  const double norm = frobenius_norm(y);
  const double denom = norm + eps;
  if (denom == 0.0) throw std::invalid_argument("newton_schulz: y is the zero matrix and eps = 0 (0/0)");
  if (!std::isfinite(denom)) throw std::invalid_argument("newton_schulz: ||y||_F + eps overflows double");
  Mat x(y.rows(), y.cols());
  for (Eigen::Index i = 0; i < y.size(); ++i) x.data()[i] = y.data()[i] / denom;
  return x;
}

// spec 06 §6.2: X' = aX + b(XXᵀ)X + c(XXᵀ)²X.
Mat newton_schulz_step(const Mat& x, const NsCoefficients& c, int threads) {
  check_matrix(x, "newton_schulz_step", "x");
  const std::int64_t r = x.rows();
  const std::int64_t n = x.cols();
  Mat gram(r, r);
  gemm_nt(r, r, n, x.data(), n, x.data(), n, gram.data(), r, threads);  // A = X Xᵀ
  Mat gram2(r, r);
  gemm_nn(r, r, r, gram.data(), r, gram.data(), r, gram2.data(), r, threads);  // A² = A·A
  Mat poly(r, r);
  for (Eigen::Index i = 0; i < poly.size(); ++i) poly.data()[i] = c.b * gram.data()[i] + c.c * gram2.data()[i];
  Mat out(r, n);
  gemm_nn(r, n, r, poly.data(), r, x.data(), n, out.data(), n, threads);  // (bA + cA²)·X
  for (Eigen::Index i = 0; i < out.size(); ++i) out.data()[i] = c.a * x.data()[i] + out.data()[i];
  return out;
}

// spec 06 §6.2 HybridNewtonSchulz: orient (wide), normalise, 8 aggressive + 2 stabilising steps.
NewtonSchulzPhases hybrid_newton_schulz_phases(const Mat& y, double eps, int threads) {
  check_matrix(y, "newton_schulz", "y");
  const bool transposed = y.rows() > y.cols();
  Mat x = newton_schulz_normalise(transposed ? Mat(y.transpose()) : y, eps);
  for (int k = 0; k < kNsAggressiveSteps; ++k) x = newton_schulz_step(x, kNsAggressive, threads);
  NewtonSchulzPhases out;
  out.after_aggressive = transposed ? Mat(x.transpose()) : x;
  for (int k = 0; k < kNsStabilisingSteps; ++k) x = newton_schulz_step(x, kNsStabilising, threads);
  out.result = transposed ? Mat(x.transpose()) : x;
  return out;
}

Mat hybrid_newton_schulz(const Mat& y, double eps, int threads) {
  return hybrid_newton_schulz_phases(y, eps, threads).result;
}

}  // namespace dsv4
