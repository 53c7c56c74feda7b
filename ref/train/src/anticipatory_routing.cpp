// Anticipatory Routing (spec 06 §6.6, §6.15): the cached routing of the historical parameters, the
// gate of an anticipatory step and the loss-spike detector. Equations and choices:
// anticipatory_routing.hpp; the controller (rollback, active window) is the header's template.
#include "dsv4/train/anticipatory_routing.hpp"

#include <limits>
#include <string>

namespace dsv4 {
namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

}  // namespace

// §1: the historical gate's forward on batch t; its choice (and margins) is what step t applies.
CachedRouting anticipate_routing(const Gate& historical, const Mat& x_historical,
                                 const std::vector<std::int64_t>& token_ids) {
  GateOutput g = historical.forward(x_historical, token_ids);
  return CachedRouting{std::move(g.indices), std::move(g.weights), std::move(g.margins), g.decisions};
}

// §2, spec 03 §3.1 step 4 at the given indices, with the gate's own operations (gate.cpp).
Mat routing_weights_at(const Precision& p, const Mat& scores, const std::vector<std::int64_t>& indices, std::int64_t k,
                       ScoreFunc f, double route_scale) {
  const std::int64_t T = scores.rows(), E = scores.cols();
  if (k < 1 || static_cast<std::int64_t>(indices.size()) != T * k) {
    throw std::invalid_argument("anticipatory_routing: " + str(static_cast<std::int64_t>(indices.size())) +
                                " cached indices for " + str(T) + " tokens of k = " + str(k));
  }
  Mat weights(T, k);
  std::vector<double> w(static_cast<std::size_t>(k));
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t e = indices[static_cast<std::size_t>(t * k + j)];
      if (e < 0 || e >= E) {
        throw std::invalid_argument("anticipatory_routing: cached expert " + str(e) + " of token " + str(t) +
                                    " is outside [0, " + str(E) + ")");
      }
      w[static_cast<std::size_t>(j)] = scores(t, e);
    }
    if (f != ScoreFunc::kSoftmax) {  // normalised over the chosen experts (not for softmax)
      const double total = p.sum(w.data(), k);
      for (double& v : w) v = p.div(v, total);
    }
    const double rs = p.fp32(route_scale);
    for (std::int64_t j = 0; j < k; ++j) weights(t, j) = p.mul(w[static_cast<std::size_t>(j)], rs);
  }
  return weights;
}

// §2: current scores (θ_t), cached choice (θ_{t−Δt}).
GateOutput anticipatory_gate(const Precision& p, const ModelConfig& c, const Gate& current, const Mat& x,
                             const std::vector<std::int64_t>& token_ids, const CachedRouting& cached,
                             CombineWeights combine) {
  const std::int64_t k = c.n_activated_experts;
  if (static_cast<std::int64_t>(cached.indices.size()) != x.rows() * k || cached.weights.rows() != x.rows() ||
      cached.weights.cols() != k || static_cast<std::int64_t>(cached.margins.size()) != x.rows()) {
    throw std::invalid_argument("anticipatory_routing: the cached routing is not of this batch (" + str(x.rows()) +
                                " tokens, k = " + str(k) + ")");
  }
  GateOutput out = current.forward(x, token_ids);  // the current scores; its own choice is not used
  out.indices = cached.indices;
  out.margins = cached.margins;
  out.decisions = cached.decisions;
  out.weights = combine == CombineWeights::kCurrent
                    ? routing_weights_at(p, out.scores, cached.indices, k, c.score_func, c.route_scale)
                    : cached.weights;
  return out;
}

// §3.
LossSpikeDetector::LossSpikeDetector(SpikeDetectorConfig c) : c_(c) {
  if (c.window < 1 || !(c.k_sigma >= 0) || !(c.min_rise >= 0)) {
    throw std::invalid_argument("loss spike detector: need window >= 1, k_sigma >= 0, min_rise >= 0");
  }
}

// μ + max(k_sigma·σ, min_rise·|μ|), μ and σ² = mean of (L − μ)² over the window, ascending.
double LossSpikeDetector::threshold() const {
  if (!ready()) return std::numeric_limits<double>::infinity();
  const double n = static_cast<double>(history_.size());
  double sum = 0.0;
  for (const double l : history_) sum += l;
  const double mean = sum / n;
  double sq = 0.0;
  for (const double l : history_) sq += (l - mean) * (l - mean);
  const double sigma = std::sqrt(sq / n);
  return mean + std::max(c_.k_sigma * sigma, c_.min_rise * std::abs(mean));
}

void LossSpikeDetector::accept(double loss) {
  if (!std::isfinite(loss)) throw std::invalid_argument("loss spike detector: a non-finite loss is never accepted");
  history_.push_back(loss);
  if (static_cast<std::int64_t>(history_.size()) > c_.window) history_.pop_front();
}

}  // namespace dsv4
