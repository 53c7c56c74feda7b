// The sequence-wise balance loss and the auxiliary-loss-free bias update (spec 03 §3.4, spec 06
// §6.4). Equations: balance_loss.hpp.
#include "dsv4/train/balance_loss.hpp"

#include <cmath>

namespace dsv4 {
namespace {

void check_scores(const Mat& scores) {
  for (Eigen::Index i = 0; i < scores.size(); ++i) {
    const double s = scores.data()[i];
    if (!std::isfinite(s) || s <= 0.0) {
      throw std::invalid_argument("balance_loss: score " + std::to_string(i % scores.cols()) + " of token " +
                                  std::to_string(i / scores.cols()) + " is not a finite value > 0");
    }
  }
}

}  // namespace

std::vector<std::int64_t> expert_loads(const std::vector<std::int64_t>& indices, std::int64_t tokens,
                                       std::int64_t experts, std::int64_t k) {
  if (tokens <= 0 || experts <= 0 || k <= 0 || k > experts) {
    throw std::invalid_argument("balance_loss: need tokens > 0 and 0 < k <= experts (tokens " + std::to_string(tokens) +
                                ", experts " + std::to_string(experts) + ", k " + std::to_string(k) + ")");
  }
  if (static_cast<std::int64_t>(indices.size()) != tokens * k) {
    throw std::invalid_argument("balance_loss: " + std::to_string(indices.size()) + " expert ids for " +
                                std::to_string(tokens) + " tokens of " + std::to_string(k));
  }
  std::vector<std::int64_t> loads(static_cast<std::size_t>(experts), 0);
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t e = indices[static_cast<std::size_t>(t * k + j)];
      if (e < 0 || e >= experts) {
        throw std::invalid_argument("balance_loss: expert id " + std::to_string(e) + " of token " + std::to_string(t) +
                                    " is outside [0, " + std::to_string(experts) + ")");
      }
      for (std::int64_t i = 0; i < j; ++i) {
        if (indices[static_cast<std::size_t>(t * k + i)] == e) {
          throw std::invalid_argument("balance_loss: token " + std::to_string(t) + " chooses expert " +
                                      std::to_string(e) + " twice");
        }
      }
      ++loads[static_cast<std::size_t>(e)];
    }
  }
  return loads;
}

// f_i = E/(K·T)·c_i.
std::vector<double> balance_frequencies(const std::vector<std::int64_t>& indices, std::int64_t tokens,
                                        std::int64_t experts, std::int64_t k) {
  const std::vector<std::int64_t> loads = expert_loads(indices, tokens, experts, k);
  const double scale = static_cast<double>(experts) / (static_cast<double>(k) * static_cast<double>(tokens));
  std::vector<double> f(loads.size());
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = scale * static_cast<double>(loads[i]);
  return f;
}

double balance_loss(const Mat& scores, const std::vector<std::int64_t>& indices, std::int64_t k, double alpha) {
  check_scores(scores);
  const std::vector<double> f = balance_frequencies(indices, scores.rows(), scores.cols(), k);
  return balance_loss_of(scores.data(), scores.rows(), scores.cols(), f, alpha);
}

// ∂L_bal/∂s_{j,t} = (α/T)·(f_j − Σ_i f_i s'_{i,t}) / S_t.
Mat balance_loss_backward(const Mat& scores, const std::vector<std::int64_t>& indices, std::int64_t k, double dl,
                          double alpha) {
  check_scores(scores);
  const std::int64_t tokens = scores.rows(), experts = scores.cols();
  const std::vector<double> f = balance_frequencies(indices, tokens, experts, k);
  const double a = dl * alpha / static_cast<double>(tokens);
  Mat d(tokens, experts);
  for (std::int64_t t = 0; t < tokens; ++t) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < experts; ++j) sum += scores(t, j);
    double fs = 0.0;  // Σ_i f_i s'_{i,t}
    for (std::int64_t i = 0; i < experts; ++i) fs += f[static_cast<std::size_t>(i)] * (scores(t, i) / sum);
    for (std::int64_t j = 0; j < experts; ++j) d(t, j) = a * (f[static_cast<std::size_t>(j)] - fs) / sum;
  }
  return d;
}

// b_i ← b_i + u·sign(c̄ − c_i), compared as E·c_i against Σ c.
void update_router_bias(Vec& bias, const std::vector<std::int64_t>& loads, double speed) {
  if (static_cast<std::int64_t>(loads.size()) != bias.size()) {
    throw std::invalid_argument("update_router_bias: " + std::to_string(loads.size()) + " loads for " +
                                std::to_string(bias.size()) + " experts");
  }
  if (!std::isfinite(speed) || speed < 0.0)
    throw std::invalid_argument("update_router_bias: speed must be finite and >= 0");
  std::int64_t total = 0;
  for (std::size_t i = 0; i < loads.size(); ++i) {
    if (loads[i] < 0)
      throw std::invalid_argument("update_router_bias: load of expert " + std::to_string(i) + " is negative");
    total += loads[i];
  }
  const auto experts = static_cast<std::int64_t>(loads.size());
  for (Eigen::Index i = 0; i < bias.size(); ++i) {
    if (!std::isfinite(bias(i)))
      throw std::invalid_argument("update_router_bias: bias of expert " + std::to_string(i) + " is not finite");
    const std::int64_t scaled = experts * loads[static_cast<std::size_t>(i)];
    if (scaled > total) bias(i) -= speed;  // overloaded
    if (scaled < total) bias(i) += speed;  // underloaded
  }
}

}  // namespace dsv4
