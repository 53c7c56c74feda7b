// Next-token cross-entropy and the MTP weight (spec 06 §6.5). Equations: cross_entropy.hpp.
#include "dsv4/train/cross_entropy.hpp"

#include <stdexcept>
#include <string>

namespace dsv4 {
namespace {

void check_inputs(const Mat& logits, const std::vector<std::int64_t>& targets) {
  if (logits.cols() == 0) throw std::invalid_argument("cross_entropy: the vocabulary is empty");
  if (static_cast<std::int64_t>(targets.size()) != logits.rows()) {
    throw std::invalid_argument("cross_entropy: " + std::to_string(targets.size()) + " targets for " +
                                std::to_string(logits.rows()) + " rows of logits");
  }
  for (std::size_t t = 0; t < targets.size(); ++t) {
    if (targets[t] < 0 || targets[t] >= logits.cols()) {
      throw std::invalid_argument("cross_entropy: target " + std::to_string(targets[t]) + " of token " +
                                  std::to_string(t) + " is outside the vocabulary [0, " +
                                  std::to_string(logits.cols()) + ")");
    }
  }
  for (Eigen::Index i = 0; i < logits.size(); ++i) {
    if (!std::isfinite(logits.data()[i])) {
      throw std::invalid_argument("cross_entropy: logit " + std::to_string(i % logits.cols()) + " of token " +
                                  std::to_string(i / logits.cols()) + " is not finite");
    }
  }
}

}  // namespace

// spec 06 §6.5: c_t = lse(ℓ_t) − ℓ_{t,y_t}.
Vec token_cross_entropy(const Mat& logits, const std::vector<std::int64_t>& targets) {
  check_inputs(logits, targets);
  Vec c(logits.rows());
  for (Eigen::Index t = 0; t < logits.rows(); ++t) {
    const double* row = logits.data() + t * logits.cols();  // Mat is row-major: one token per row
    c(t) = log_sum_exp(row, logits.cols()) - row[targets[static_cast<std::size_t>(t)]];
  }
  return c;
}

double lm_loss(const Mat& logits, const std::vector<std::int64_t>& targets) {
  if (logits.rows() == 0) throw std::invalid_argument("cross_entropy: no tokens (the mean of zero losses)");
  const Vec c = token_cross_entropy(logits, targets);
  double sum = 0.0;
  for (Eigen::Index t = 0; t < c.size(); ++t) sum += c(t);
  return sum / static_cast<double>(c.size());
}

// ∂c_t/∂ℓ_{t,v} = softmax(ℓ_t)_v − [v = y_t], times c̄_t.
Mat cross_entropy_backward(const Mat& logits, const std::vector<std::int64_t>& targets, const Vec& dc) {
  check_inputs(logits, targets);
  if (dc.size() != logits.rows()) {
    throw std::invalid_argument("cross_entropy_backward: " + std::to_string(dc.size()) + " upstream gradients for " +
                                std::to_string(logits.rows()) + " tokens");
  }
  Mat d(logits.rows(), logits.cols());
  for (Eigen::Index t = 0; t < logits.rows(); ++t) {
    const double* row = logits.data() + t * logits.cols();
    const double lse = log_sum_exp(row, logits.cols());
    for (Eigen::Index v = 0; v < logits.cols(); ++v) {
      const double p = std::exp(row[v] - lse);
      const double onehot = v == targets[static_cast<std::size_t>(t)] ? 1.0 : 0.0;
      d(t, v) = dc(t) * (p - onehot);
    }
  }
  return d;
}

// spec 06 §6.4: 0.3, then 0.1 from the start of LR decay.
double mtp_loss_weight(std::int64_t step, std::int64_t decay_start) {
  if (step < 0 || decay_start < 0) throw std::invalid_argument("mtp_loss_weight: step and decay_start must be >= 0");
  return step < decay_start ? kMtpWeightBeforeDecay : kMtpWeightDuringDecay;
}

}  // namespace dsv4
