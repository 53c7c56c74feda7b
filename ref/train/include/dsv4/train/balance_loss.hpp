// Load balancing of the score-routed MoE layers (spec 03 §3.4, spec 06 §6.4; DeepSeek-V3's
// definitions, which the report keeps [R-V3]): the sequence-wise balance loss (weight α = 0.0001)
// with its backward, and the auxiliary-loss-free bias update (speed u = 0.001). Exact mode (double).
//
// Sequence-wise balance loss, per sequence of T tokens over E routed experts with K chosen per token:
//   s'_{i,t} = s_{i,t} / S_t,  S_t = Σ_j s_{j,t}          (the UNBIASED scores, e.g. √softplus(ℓ):
//                                                         the router bias only chooses)
//   f_i = E/(K·T) · #{t : i among token t's K chosen experts}   (the actual choice: top-k of the
//                                                         biased scores; constant, no gradient)
//   P_i = (1/T) Σ_t s'_{i,t}
//   L_bal = α Σ_i f_i P_i.
// Sums ascending (j, t, i). Backward (f held fixed, as every discrete choice, spec 06 §6.12):
//   ∂L_bal/∂s_{j,t} = (α/T)·(f_j − Σ_i f_i s'_{i,t}) / S_t,
// which flows into the gate's backward as its dscores (train/gate_backward.hpp). The batch loss is
// the mean of the sequences' losses [C]; hash-routed layers have no learned choice and no balance
// loss [C].
//
// Auxiliary-loss-free bias update, once per optimizer step from the loads c_i (the number of
// (token, slot) assignments to expert i over every token of the step, all sequences):
//   b_i ← b_i + u·sign(c̄ − c_i),  c̄ = (Σ_j c_j)/E,
// i.e. an overloaded expert's bias falls by u, an underloaded one's rises by u, an expert at exactly
// the mean keeps its bias (sign 0) [C: V3 states only over/under]. Compared in integers (E·c_i
// against Σ_j c_j), so the decision has no rounding.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

inline constexpr double kBalanceLossWeight = 0.0001;  // α (report §4.2.2)
inline constexpr double kBiasUpdateSpeed = 0.001;     // u (report §4.2.2)

// f_i of the file comment from the choice: indices [T·K] (token-major), each in [0, E), a token's
// K ids distinct. std::invalid_argument otherwise (or for T = 0, K = 0).
std::vector<double> balance_frequencies(const std::vector<std::int64_t>& indices, std::int64_t tokens,
                                        std::int64_t experts, std::int64_t k);

// L_bal for scores [T, E] (flat row-major, every score > 0 — the score functions' range) and
// frequencies f [E]; T = double or a multiprecision type (the gradient check's 50-digit forward).
template <class T>
T balance_loss_of(const T* scores, std::int64_t tokens, std::int64_t experts, const std::vector<double>& f,
                  double alpha) {
  std::vector<T> p(static_cast<std::size_t>(experts), T(0));
  for (std::int64_t t = 0; t < tokens; ++t) {
    const T* s = scores + t * experts;
    T sum = 0;
    for (std::int64_t j = 0; j < experts; ++j) sum += s[j];
    for (std::int64_t i = 0; i < experts; ++i) p[static_cast<std::size_t>(i)] += s[i] / sum;
  }
  T loss = 0;
  for (std::int64_t i = 0; i < experts; ++i) {
    loss += T(f[static_cast<std::size_t>(i)]) * (p[static_cast<std::size_t>(i)] / T(static_cast<double>(tokens)));
  }
  return T(alpha) * loss;
}

// L_bal of one sequence (checked: shapes, scores finite and > 0, the choice as balance_frequencies).
double balance_loss(const Mat& scores, const std::vector<std::int64_t>& indices, std::int64_t k,
                    double alpha = kBalanceLossWeight);

// ∂(dl·L_bal)/∂s: [T, E] (the same checks).
Mat balance_loss_backward(const Mat& scores, const std::vector<std::int64_t>& indices, std::int64_t k, double dl,
                          double alpha = kBalanceLossWeight);

// Loads c_i over the step's choices (indices [T·K] of every token, all sequences); as
// balance_frequencies but counts.
std::vector<std::int64_t> expert_loads(const std::vector<std::int64_t>& indices, std::int64_t tokens,
                                       std::int64_t experts, std::int64_t k);

// The bias update of the file comment: bias [E] updated in place from loads [E].
// std::invalid_argument for a size mismatch, a negative load, a non-finite bias or speed.
void update_router_bias(Vec& bias, const std::vector<std::int64_t>& loads, double speed = kBiasUpdateSpeed);

}  // namespace dsv4
