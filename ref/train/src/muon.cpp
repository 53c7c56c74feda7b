// Muon (spec 06 §6.2). Equations and order of operations: muon.hpp.
#include "dsv4/train/muon.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {
namespace {

void check_finite(const Mat& m, const char* name) {
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    if (!std::isfinite(m.data()[i])) {
      throw std::invalid_argument(std::string("muon: ") + name + " element " + std::to_string(i / m.cols()) + "," +
                                  std::to_string(i % m.cols()) + " is not finite");
    }
  }
}

void check_same_shape(const Mat& a, const Mat& w, const char* name) {
  if (a.rows() != w.rows() || a.cols() != w.cols()) {
    throw std::invalid_argument(std::string("muon: ") + name + " is " + std::to_string(a.rows()) + "x" +
                                std::to_string(a.cols()) + ", the parameter " + std::to_string(w.rows()) + "x" +
                                std::to_string(w.cols()));
  }
}

void check_config(const MuonConfig& c) {
  if (!std::isfinite(c.momentum) || c.momentum < 0.0 || c.momentum >= 1.0) {
    throw std::invalid_argument("muon: momentum must lie in [0, 1)");
  }
  if (!std::isfinite(c.rms) || c.rms <= 0.0) throw std::invalid_argument("muon: update RMS must be finite and > 0");
  if (!std::isfinite(c.weight_decay) || c.weight_decay < 0.0) {
    throw std::invalid_argument("muon: weight decay must be finite and >= 0");
  }
}

}  // namespace

MuonState muon_state(const Mat& w) { return MuonState{Mat::Zero(w.rows(), w.cols())}; }

// spec 06 §6.2 steps 3–4: O = HybridNewtonSchulz(Y)·√max(n, m)·γ.
Mat muon_direction(const Mat& y, const MuonConfig& cfg, int threads) {
  check_config(cfg);
  Mat o;
  if (cfg.deviation == Deviation::kMuonTransposeNotUndone && y.rows() > y.cols()) {
    // The bug: the tall matrix iterated as Yᵀ, the [m, n] result's buffer read as [n, m].
    const Mat t = hybrid_newton_schulz(Mat(y.transpose()), cfg.ns_eps, threads);
    o = Eigen::Map<const Mat>(t.data(), y.rows(), y.cols());
  } else if (cfg.deviation == Deviation::kNsFastCoefficientsOnly) {
    // The bug: all ten steps with the aggressive coefficients (no stabilising pair).
    const bool tall = y.rows() > y.cols();
    Mat x = newton_schulz_normalise(tall ? Mat(y.transpose()) : y, cfg.ns_eps);
    for (int k = 0; k < kNsAggressiveSteps + kNsStabilisingSteps; ++k)
      x = newton_schulz_step(x, kNsAggressive, threads);
    o = tall ? Mat(x.transpose()) : x;
  } else {
    o = hybrid_newton_schulz(y, cfg.ns_eps, threads);
  }
  const double s = std::sqrt(static_cast<double>(std::max(y.rows(), y.cols()))) * cfg.rms;
  for (Eigen::Index i = 0; i < o.size(); ++i) o.data()[i] = o.data()[i] * s;
  return o;
}

// spec 06 §6.2 steps 2–5, per row block.
Mat muon_step(Mat& w, MuonState& state, const Mat& g, double lr, const MuonConfig& cfg, std::int64_t row_blocks,
              int threads) {
  check_config(cfg);
  if (!std::isfinite(lr) || lr < 0.0) throw std::invalid_argument("muon: learning rate must be finite and >= 0");
  check_same_shape(g, w, "gradient");
  check_same_shape(state.momentum, w, "momentum");
  check_finite(g, "gradient");
  check_finite(w, "parameter");
  if (row_blocks < 1 || w.rows() % row_blocks != 0) {
    throw std::invalid_argument("muon: " + std::to_string(row_blocks) + " row blocks do not divide " +
                                std::to_string(w.rows()) + " rows");
  }
  Mat y(w.rows(), w.cols());
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    double& m = state.momentum.data()[i];
    m = cfg.momentum * m + g.data()[i];            // step 2
    y.data()[i] = cfg.momentum * m + g.data()[i];  // Nesterov input
  }
  const std::int64_t rows = w.rows() / row_blocks;
  Mat o(w.rows(), w.cols());
  for (std::int64_t b = 0; b < row_blocks; ++b) {
    o.middleRows(b * rows, rows) = muon_direction(y.middleRows(b * rows, rows), cfg, threads);  // steps 3–4
  }
  const double decay = 1.0 - lr * cfg.weight_decay;
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = w.data()[i] * decay - lr * o.data()[i];  // step 5
  return o;
}

}  // namespace dsv4
