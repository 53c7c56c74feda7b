// AdamW (spec 06 §6.3). Equations and order of operations: adamw.hpp.
#include "dsv4/train/adamw.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {
namespace {

void check_finite(const Mat& m, const char* name) {
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    if (!std::isfinite(m.data()[i])) {
      throw std::invalid_argument(std::string("adamw: ") + name + " element " + std::to_string(i / m.cols()) + "," +
                                  std::to_string(i % m.cols()) + " is not finite");
    }
  }
}

void check_same_shape(const Mat& a, const Mat& w, const char* name) {
  if (a.rows() != w.rows() || a.cols() != w.cols()) {
    throw std::invalid_argument(std::string("adamw: ") + name + " is " + std::to_string(a.rows()) + "x" +
                                std::to_string(a.cols()) + ", the parameter " + std::to_string(w.rows()) + "x" +
                                std::to_string(w.cols()));
  }
}

void check_config(const AdamWConfig& c, double lr) {
  const auto beta_ok = [](double b) { return std::isfinite(b) && b >= 0.0 && b < 1.0; };
  if (!beta_ok(c.beta1) || !beta_ok(c.beta2)) throw std::invalid_argument("adamw: beta1 and beta2 must lie in [0, 1)");
  if (!std::isfinite(c.eps) || c.eps <= 0.0) throw std::invalid_argument("adamw: eps must be finite and > 0");
  if (!std::isfinite(c.weight_decay) || c.weight_decay < 0.0) {
    throw std::invalid_argument("adamw: weight decay must be finite and >= 0");
  }
  if (!std::isfinite(lr) || lr < 0.0) throw std::invalid_argument("adamw: learning rate must be finite and >= 0");
}

}  // namespace

AdamWState adamw_state(const Mat& w) {
  AdamWState s;
  s.m = Mat::Zero(w.rows(), w.cols());
  s.v = Mat::Zero(w.rows(), w.cols());
  return s;
}

// spec 06 §6.3: one AdamW step, decoupled weight decay.
Mat adamw_step(Mat& w, AdamWState& state, const Mat& g, double lr, const AdamWConfig& cfg) {
  check_config(cfg, lr);
  check_same_shape(g, w, "gradient");
  check_same_shape(state.m, w, "first moment");
  check_same_shape(state.v, w, "second moment");
  check_finite(g, "gradient");
  check_finite(w, "parameter");
  if (state.step < 0) throw std::invalid_argument("adamw: step count is negative");
  const std::int64_t t = ++state.step;
  const double one_minus_b1 = 1.0 - cfg.beta1;
  const double one_minus_b2 = 1.0 - cfg.beta2;
  const double c1 = 1.0 - std::pow(cfg.beta1, static_cast<double>(t));  // bias corrections
  const double c2 = 1.0 - std::pow(cfg.beta2, static_cast<double>(t));
  const double decay = 1.0 - lr * cfg.weight_decay;
  Mat u(w.rows(), w.cols());
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    const double gi = g.data()[i];
    double& m = state.m.data()[i];
    double& v = state.v.data()[i];
    m = cfg.beta1 * m + one_minus_b1 * gi;
    v = cfg.beta2 * v + one_minus_b2 * (gi * gi);
    const double m_hat = m / c1;
    const double v_hat = v / c2;
    u.data()[i] = m_hat / (std::sqrt(v_hat) + cfg.eps);
    w.data()[i] = w.data()[i] * decay - lr * u.data()[i];
  }
  return u;
}

}  // namespace dsv4
