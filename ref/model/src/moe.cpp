// The MoE feed-forward (spec 03 §3.3; official code class `MoE`).
#include "dsv4/model/moe.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "dsv4/model/indexer.hpp"
#include "dsv4/model/synthetic_weights.hpp"

namespace dsv4 {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("moe: " + field + ": " + why);
}
std::string str(std::int64_t v) { return std::to_string(v); }

// One synthetic weight [n, k] of N(0, std²) values in the given dtype ("fp4", "fp8", "bf16").
LinearWeight synthetic_weight(const std::string& dtype, std::uint64_t seed, const std::string& name, std::int64_t n,
                              std::int64_t k, double std) {
  if (dtype == "fp4") return synthetic_fp4_weight(seed, name.c_str(), n, k, std);
  if (dtype == "fp8") return synthetic_fp8_weight(seed, name.c_str(), n, k, std);
  if (dtype == "bf16") return synthetic_bf16_weight(seed, name.c_str(), n, k, std);
  bad("dtype", "'" + dtype + "' is not fp4, fp8 or bf16");
}

ExpertWeights synthetic_expert(const ModelConfig& c, const std::string& dtype, std::uint64_t seed,
                               const std::string& prefix) {
  const double sd = 1.0 / std::sqrt(static_cast<double>(c.dim));
  const double se = 1.0 / std::sqrt(static_cast<double>(c.moe_inter_dim));
  ExpertWeights w;
  w.w1 = synthetic_weight(dtype, seed, prefix + ".w1", c.moe_inter_dim, c.dim, sd);
  w.w2 = synthetic_weight(dtype, seed, prefix + ".w2", c.dim, c.moe_inter_dim, se);
  w.w3 = synthetic_weight(dtype, seed, prefix + ".w3", c.moe_inter_dim, c.dim, sd);
  return w;
}

// The dtype of the shared expert: FP8 unless the model's default Linear dtype is bf16.
std::string shared_dtype(const ModelConfig& c) { return c.dtype == "bf16" ? "bf16" : "fp8"; }

void check_expert(const ModelConfig& c, const std::string& name, const ExpertWeights& w) {
  const auto check = [&](const char* which, const LinearWeight& lw, std::int64_t n, std::int64_t k) {
    if (lw.out_features() != n || lw.in_features() != k) {
      bad(name + "." + which, "shape [" + str(lw.out_features()) + ", " + str(lw.in_features()) + "], expected [" +
                                  str(n) + ", " + str(k) + "]");
    }
    if (lw.kind == WeightKind::kFP32) bad(name + "." + which, "an expert weight is bf16, fp8 or fp4, not fp32");
  };
  check("w1", w.w1, c.moe_inter_dim, c.dim);
  check("w2", w.w2, c.dim, c.moe_inter_dim);
  check("w3", w.w3, c.moe_inter_dim, c.dim);
}

}  // namespace

MoeWeights MoeWeights::synthetic(const ModelConfig& c, std::int64_t layer, std::uint64_t seed) {
  const std::uint64_t ls = synthetic_layer_seed(seed, layer);
  MoeWeights w;
  w.gate = GateWeights::synthetic(c, layer, seed);
  for (std::int64_t e = 0; e < c.n_routed_experts; ++e)
    w.experts.push_back(synthetic_expert(c, c.expert_dtype, ls, "ffn.experts." + str(e)));
  w.shared = synthetic_expert(c, shared_dtype(c), ls, "ffn.shared_experts");
  return w;
}

Moe::Moe(Precision p, const ModelConfig& c, std::int64_t layer, MoeWeights w)
    : p_(p),
      c_(c),
      layer_(layer),
      gate_(p, c, layer, std::move(w.gate)),
      experts_(std::move(w.experts)),
      shared_(std::move(w.shared)) {
  if (static_cast<std::int64_t>(experts_.size()) != c.n_routed_experts) {
    bad("experts", "has " + str(static_cast<std::int64_t>(experts_.size())) +
                       " experts, expected n_routed_experts = " + str(c.n_routed_experts));
  }
  for (std::size_t e = 0; e < experts_.size(); ++e)
    check_expert(c, "experts[" + str(static_cast<std::int64_t>(e)) + "]", experts_[e]);
  check_expert(c, "shared", shared_);
}

// spec 03 §3.3.
MoeOutput Moe::forward(const Mat& x, const std::vector<std::int64_t>& token_ids) const {
  MoeOutput out;
  out.gate = gate_.forward(x, token_ids);
  out.out = combine(x, out.gate);
  return out;
}

Mat Moe::combine(const Mat& x, const GateOutput& routing) const {
  const std::int64_t T = x.rows(), k = c_.n_activated_experts;
  if (routing.weights.rows() != T || routing.weights.cols() != k ||
      static_cast<std::int64_t>(routing.indices.size()) != T * k)
    throw std::invalid_argument("moe: routing: expected [T, n_activated_experts] weights and indices");
  for (const std::int64_t e : routing.indices)
    if (e < 0 || e >= c_.n_routed_experts) throw std::invalid_argument("moe: routing: expert id out of range");
  const GateOutput& g = routing;
  // steps 1–2: y = 0 (fp32); experts in ascending id order, skipping those with no tokens; every
  // token routed to e (rows in ascending token order, as torch.where) adds fp32(Expert_e) to y_t.
  Mat y = Mat::Zero(T, c_.dim);
  for (std::int64_t e = 0; e < c_.n_routed_experts; ++e) {
    std::vector<std::int64_t> rows;
    std::vector<double> rw;
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t j = 0; j < k; ++j) {
        if (g.index(t, j) == e) {
          rows.push_back(t);
          rw.push_back(g.weights(t, j));
        }
      }
    }
    if (rows.empty()) continue;
    Mat xe(static_cast<Eigen::Index>(rows.size()), c_.dim);
    Vec we(static_cast<Eigen::Index>(rows.size()));
    for (std::size_t r = 0; r < rows.size(); ++r) {
      xe.row(static_cast<Eigen::Index>(r)) = x.row(rows[r]);
      // (Deviation kRouteScaleTwice, bug catalogue only: expert 0 applies route_scale again.)
      we(static_cast<Eigen::Index>(r)) =
          e == 0 && p_.deviates(Deviation::kRouteScaleTwice) ? p_.mul(rw[r], p_.fp32(c_.route_scale)) : rw[r];
    }
    const Mat ye = expert_forward(p_, c_, experts_[static_cast<std::size_t>(e)], xe, &we);
    for (std::size_t r = 0; r < rows.size(); ++r) {
      for (std::int64_t i = 0; i < c_.dim; ++i)
        y(rows[r], i) = p_.add(y(rows[r], i), ye(static_cast<Eigen::Index>(r), i));
    }
  }
  // step 4: the shared expert, added last.
  const Mat ys = expert_forward(p_, c_, shared_, x, nullptr);
  for (Eigen::Index i = 0; i < y.size(); ++i) y.data()[i] = p_.add(y.data()[i], ys.data()[i]);
  // step 5: bf16 output.
  p_.bf16_inplace(y);
  return y;
}

}  // namespace dsv4
