// The language-model losses (spec 06 §6.5, §6.12): next-token cross-entropy, its backward and the
// MTP loss weight schedule. Exact mode (double), fixed-order loops.
//
// Per token t with logits ℓ_t ∈ R^V (the head's output, spec 05 §5.3) and target y_t (the next
// token; for the depth-1 MTP module the token after it, spec 06 §6.5):
//   c_t = lse(ℓ_t) − ℓ_{t,y_t},  lse(ℓ) = M + log Σ_v exp(ℓ_v − M),  M = max_v ℓ_v,
// the sum over v ascending. The loss of a sequence is the mean over its tokens,
//   L = (1/T) Σ_t c_t (ascending t; lm_loss),
// and the training objective L_main + λ_MTP·L_MTP (spec 06 §6.5; mtp_loss_weight).
// Backward of c_t with upstream gradient c̄_t: ∂/∂ℓ_{t,v} = c̄_t·(softmax(ℓ_t)_v − [v = y_t]),
// softmax_v = exp(ℓ_v − lse(ℓ)). (For L, c̄_t = 1/T.) The targets carry no gradient.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// lse(ℓ) of n values in the file comment's order; T = double or a multiprecision type (the
// gradient check's 50-digit forward).
template <class T>
T log_sum_exp(const T* logits, std::int64_t n) {
  using std::exp;
  using std::log;
  T m = logits[0];
  for (std::int64_t v = 1; v < n; ++v) {
    if (logits[v] > m) m = logits[v];
  }
  T sum = 0;
  for (std::int64_t v = 0; v < n; ++v) sum += exp(logits[v] - m);
  return m + log(sum);
}

// c_t for every row of logits [T, V] with targets[t] ∈ [0, V). Throws std::invalid_argument for
// a target out of range, a count mismatch, an empty vocabulary or a non-finite logit.
Vec token_cross_entropy(const Mat& logits, const std::vector<std::int64_t>& targets);

// The mean over tokens (L above); std::invalid_argument for zero tokens.
double lm_loss(const Mat& logits, const std::vector<std::int64_t>& targets);

// ∂(Σ_t c̄_t c_t)/∂ℓ: [T, V]. dc holds c̄_t per token.
Mat cross_entropy_backward(const Mat& logits, const std::vector<std::int64_t>& targets, const Vec& dc);

// spec 06 §6.4–6.5: λ_MTP = 0.3 before the learning-rate decay starts and 0.1 from the first step
// of the decay on (report §4.2.2: "0.3 … then 0.1 from the start of LR decay"). The report does not
// give the step at which the decay starts [U], so the caller passes it: step < decay_start → 0.3,
// step ≥ decay_start → 0.1. std::invalid_argument for a negative step or decay_start.
inline constexpr double kMtpWeightBeforeDecay = 0.3;
inline constexpr double kMtpWeightDuringDecay = 0.1;
double mtp_loss_weight(std::int64_t step, std::int64_t decay_start);

}  // namespace dsv4
