// Host fallback of the expert and MoE combine kernels: the official-mode reference (expert_forward,
// Moe::combine) for the rows / tokens the device left undecided.
#include "moe_reference.hpp"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/expert.hpp"
#include "dsv4/model/expert_config.hpp"
#include "dsv4/model/moe.hpp"
#include "reference_weight.hpp"

namespace dsv4::gpu::detail {
namespace {

ExpertWeights expert_weights(const LinearWeightView& w1, const LinearWeightView& w3, const LinearWeightView& w2) {
  return ExpertWeights{reference_weight(w1), reference_weight(w2), reference_weight(w3)};
}

}  // namespace

void expert_reference_rows(const float* x, const std::vector<std::int64_t>& rows, const ExpertWeightsView& w,
                           double limit, const float* route_weight, float* y) {
  if (rows.empty()) return;
  const std::int64_t d = w.dim, n = static_cast<std::int64_t>(rows.size());
  Mat xs(n, d);
  Vec rw(n);
  for (std::int64_t r = 0; r < n; ++r) {
    const std::int64_t t = rows[static_cast<std::size_t>(r)];
    for (std::int64_t i = 0; i < d; ++i) xs(r, i) = x[t * d + i];
    rw(r) = route_weight != nullptr ? route_weight[t] : 0.0;
  }
  const Mat ys = expert_forward(Precision(Mode::kOfficial), expert_config(d, w.inter, limit, w.act_fmt),
                                expert_weights(w.w1, w.w3, w.w2), xs, route_weight != nullptr ? &rw : nullptr);
  for (std::int64_t r = 0; r < n; ++r) {
    const std::int64_t t = rows[static_cast<std::size_t>(r)];
    for (std::int64_t i = 0; i < d; ++i) y[t * d + i] = static_cast<float>(ys(r, i));
  }
}

void moe_combine_reference_tokens(const float* x, const float* weights, const std::int64_t* indices, std::int64_t k,
                                  const std::vector<std::int64_t>& tokens, const MoeExpertsView& w, double limit,
                                  float* y) {
  const std::int64_t d = w.dim, de = w.inter;
  for (const std::int64_t t : tokens) {
    // The token's distinct experts in ascending order, renumbered 0.. (a monotone map: the combine's
    // ascending order is unchanged); padded to k experts (Moe needs k ≤ E) by copies never routed to.
    std::vector<std::int64_t> ids(indices + t * k, indices + (t + 1) * k);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    ModelConfig c = expert_config(d, de, limit, w.act_fmt);
    c.n_routed_experts = std::max<std::int64_t>(k, static_cast<std::int64_t>(ids.size()));
    c.n_activated_experts = k;
    const std::int64_t layer = c.n_hash_layers;  // a score-routed layer (its gate is not called)
    MoeWeights mw;
    mw.gate = GateWeights::synthetic(c, layer, 1);
    for (const std::int64_t e : ids) {
      mw.experts.push_back(expert_weights(stacked_block(w.w1, e), stacked_block(w.w3, e), stacked_block(w.w2, e)));
    }
    while (static_cast<std::int64_t>(mw.experts.size()) < c.n_routed_experts) mw.experts.push_back(mw.experts.back());
    mw.shared = expert_weights(w.shared_w1, w.shared_w3, w.shared_w2);
    GateOutput routing;
    routing.weights = Mat(1, k);
    for (std::int64_t j = 0; j < k; ++j) {
      routing.weights(0, j) = weights[t * k + j];
      const auto at = std::lower_bound(ids.begin(), ids.end(), indices[t * k + j]);
      routing.indices.push_back(static_cast<std::int64_t>(at - ids.begin()));
    }
    Mat xt(1, d);
    for (std::int64_t i = 0; i < d; ++i) xt(0, i) = x[t * d + i];
    const Mat yt = Moe(Precision(Mode::kOfficial), c, layer, std::move(mw)).combine(xt, routing);
    for (std::int64_t i = 0; i < d; ++i) y[t * d + i] = static_cast<float>(yt(0, i));
  }
}

}  // namespace dsv4::gpu::detail
