// Backward of mHC's hc_post (forward spec 04 §4.4, exact mode; backward spec 04 §4.8, spec 06
// §6.12). Per token, X'_k = post_k · f + Σ_j comb[j, k] · X_j (streams of width d); with the
// upstream gradient G_k of X'_k:
//   df = Σ_k post_k G_k;  dpost_k = ⟨G_k, f⟩;  dcomb[j, k] = ⟨G_k, X_j⟩;  dX_j = Σ_k comb[j, k] G_k.
// Every input is per token: no reduction over tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation). The reference's
// hc_post (ref/model mhc.cpp) is written for double through Precision; this is its exact-mode
// equation, and the gradient check compares the two at every check point. f [tokens, d], residual
// [tokens, n·d], post [tokens, n], comb [tokens, n·n] (comb[j·n + k]) → [tokens, n·d].
template <class T>
std::vector<T> hc_post_exact(const std::vector<T>& f, const std::vector<T>& residual, const std::vector<T>& post,
                             const std::vector<T>& comb, std::int64_t tokens, std::int64_t n, std::int64_t d) {
  std::vector<T> y(static_cast<std::size_t>(tokens * n * d));
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t k = 0; k < n; ++k) {
      for (std::int64_t i = 0; i < d; ++i) {
        T acc = post[static_cast<std::size_t>(t * n + k)] * f[static_cast<std::size_t>(t * d + i)];
        for (std::int64_t j = 0; j < n; ++j) {
          acc += comb[static_cast<std::size_t>(t * n * n + j * n + k)] *
                 residual[static_cast<std::size_t>(t * n * d + j * d + i)];
        }
        y[static_cast<std::size_t>(t * n * d + k * d + i)] = acc;
      }
    }
  }
  return y;
}

struct HcPostGrads {
  Mat df;         // [tokens, d]
  Mat dresidual;  // [tokens, n·d]
  Mat dpost;      // [tokens, n]
  Mat dcomb;      // [tokens, n·n]
};
// Exact mode (double). dy [tokens, n·d]. std::invalid_argument on a shape mismatch.
HcPostGrads hc_post_backward(const Mat& f, const Mat& residual, const Mat& post, const Mat& comb, std::int64_t n,
                             const Mat& dy);

}  // namespace dsv4
