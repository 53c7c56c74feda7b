// Backward of the MoE gate (forward spec 03 §3.1, exact mode; backward spec 06 §6.12).
//
// Forward: ℓ = x Wᵀ [T, E]; s = f(ℓ) (sqrtsoftplus √softplus(ℓ), sigmoid σ(ℓ), or the softmax over
// the experts); the k experts e_1..e_k of a token chosen by top-k of s + b (C4) or by tid2eid;
// weights w_j = ρ · s_{e_j} / Σ_i s_{e_i} (sqrtsoftplus, sigmoid) or ρ · s_{e_j} (softmax), ρ the
// route scale. The choice is discrete: it has no gradient (nor has the bias b, which only chooses
// and follows the auxiliary-loss-free update, spec 06 §6.1). With upstream gradients dw [T, k] and
// ds_out [T, E] (of the scores output, e.g. the balance loss's):
//   ds_e = ds_out_e + Σ_j [e = e_j] ρ/S · (dw_j − Σ_i dw_i s_{e_i} / S)   (S = Σ_i s_{e_i}; normalised)
//   ds_e = ds_out_e + Σ_j [e = e_j] ρ · dw_j                             (softmax)
//   dℓ = ds · f'(ℓ): sqrtsoftplus σ(ℓ) / (2 s); sigmoid s (1 − s); softmax s_e (ds_e − Σ_i ds_i s_i)
//   dx = dℓ W;  dW = dℓᵀ x  (the sum over tokens in ascending order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation). The reference's
// Gate (ref/model) is written for double through Precision; this is its exact-mode equation, and
// the gradient check compares the two at every check point. x [T, d], weight [E, d], bias [E]
// (empty: hash-routed, then the experts of token t are tid2eid[ids[t]·k …]) → weights [T, k] and
// scores [T, E]; indices [T, k] in C4 order (biased score descending, ties by ascending id).
template <class T>
struct GateExact {
  std::vector<T> weights, scores;
  std::vector<std::int64_t> indices;
};

template <class T>
GateExact<T> gate_exact(const std::vector<T>& x, std::int64_t tokens, std::int64_t d, const std::vector<T>& weight,
                        std::int64_t experts, const std::vector<double>& bias, const std::vector<std::int64_t>& tid2eid,
                        const std::vector<std::int64_t>& ids, std::int64_t k, ScoreFunc f, double route_scale) {
  using std::exp;
  using std::log;
  using std::sqrt;
  GateExact<T> out;
  out.scores.resize(static_cast<std::size_t>(tokens * experts));
  out.weights.resize(static_cast<std::size_t>(tokens * k));
  out.indices.resize(static_cast<std::size_t>(tokens * k));
  std::vector<T> l(static_cast<std::size_t>(experts));
  for (std::int64_t t = 0; t < tokens; ++t) {
    T* s = out.scores.data() + t * experts;
    for (std::int64_t e = 0; e < experts; ++e) {
      T acc = 0;
      for (std::int64_t i = 0; i < d; ++i)
        acc += x[static_cast<std::size_t>(t * d + i)] * weight[static_cast<std::size_t>(e * d + i)];
      l[static_cast<std::size_t>(e)] = acc;
    }
    if (f == ScoreFunc::kSoftmax) {
      const T m = *std::max_element(l.begin(), l.end());
      T total = 0;
      for (std::int64_t e = 0; e < experts; ++e) total += (s[e] = exp(l[static_cast<std::size_t>(e)] - m));
      for (std::int64_t e = 0; e < experts; ++e) s[e] = s[e] / total;
    } else {
      for (std::int64_t e = 0; e < experts; ++e) {
        const T& v = l[static_cast<std::size_t>(e)];
        s[e] = f == ScoreFunc::kSigmoid ? T(1) / (T(1) + exp(-v))
                                        : sqrt(v > 0 ? v + log(T(1) + exp(-v)) : log(T(1) + exp(v)));
      }
    }
    std::int64_t* chosen = out.indices.data() + t * k;
    if (bias.empty()) {
      std::copy_n(tid2eid.begin() + ids[static_cast<std::size_t>(t)] * k, k, chosen);
    } else {
      std::vector<std::int64_t> order(static_cast<std::size_t>(experts));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
        return s[a] + T(bias[static_cast<std::size_t>(a)]) > s[b] + T(bias[static_cast<std::size_t>(b)]);
      });
      std::copy_n(order.begin(), k, chosen);
    }
    T total = 0;
    for (std::int64_t j = 0; j < k; ++j) total += s[chosen[j]];
    for (std::int64_t j = 0; j < k; ++j) {
      const T w = f == ScoreFunc::kSoftmax ? s[chosen[j]] : s[chosen[j]] / total;
      out.weights[static_cast<std::size_t>(t * k + j)] = w * T(route_scale);
    }
  }
  return out;
}

struct GateGrads {
  Mat dx;       // [T, d]
  Mat dweight;  // [E, d]
  Mat dlogits;  // [T, E]: dℓ, the coefficients of dweight = dℓᵀ x (the linear site of spec 06 §6.14)
};
// Exact mode (double). indices [T·k]: the forward's choice (fixed); dweights [T, k]; dscores
// [T, E] (zero when the scores are not used). std::invalid_argument on a shape mismatch.
GateGrads gate_backward(const Mat& x, const Mat& weight, ScoreFunc f, double route_scale,
                        const std::vector<std::int64_t>& indices, const Mat& dweights, const Mat& dscores);

}  // namespace dsv4
