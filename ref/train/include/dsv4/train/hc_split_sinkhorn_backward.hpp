// Backward of the mHC gates and the Sinkhorn normalisation (forward spec 04 §4.3, exact mode;
// backward spec 04 §4.8, the unrolled gradient through every iteration, and spec 06 §6.12).
//
// Per token, from its mixes μ [(2+n)n], scale α = (α_pre, α_post, α_res), base b:
//   pre_j  = σ(μ_j α_pre + b_j) + ε,  post_j = 2 σ(μ_{n+j} α_post + b_{n+j}),
//   A_jk   = μ_{2n+jn+k} α_res + b_{2n+jn+k},
//   comb   = Sinkhorn(A): M = softmax_row(A) + ε, a column normalisation, then iters − 1 rounds of
//            (row, column) normalisation, ε in every denominator.
// Backward (spec 04 §4.8): the normalisations in reverse, each from its output Y and normaliser
// (c_k + ε or r_j + ε) — column: X̄_jk = (Ȳ_jk − Σ_i Ȳ_ik Y_ik)/(c_k + ε); row: X̄_jk = (Ȳ_jk −
// Σ_l Ȳ_jl Y_jl)/(r_j + ε); + ε: identity; softmax: Ā_jk = P_jk (P̄_jk − Σ_l P̄_jl P_jl) — then the
// sigmoids σ' = σ(1 − σ) and the affine maps: dμ_m = α_G da_m, dα_G = Σ μ_m da_m, db_m = da_m
// (dα and db summed over tokens in ascending order). Not the implicit (fixed-point) gradient, which
// differs while Sinkhorn has not converged (spec 04 §4.7).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The exact-mode forward of one token in any scalar (the gradient check's Mp50 evaluation). The
// reference's hc_split_sinkhorn (ref/model mhc.cpp) is written for double through Precision; this
// is its exact-mode equation — the affine maps as one exact a·b + c, the softmax with its row maximum
// subtracted — and the gradient check compares the two at every check point. mu [(2+n)n],
// scale [3], base [(2+n)n] → pre [n], post [n], comb [n·n] (row-major, comb[j·n + k]).
template <class T>
void hc_split_sinkhorn_exact(const T* mu, std::int64_t n, const T* scale, const T* base, std::int64_t iters, double eps,
                             T* pre, T* post, T* comb) {
  using std::exp;
  const T e(eps);
  const auto sigmoid = [](const T& z) { return T(1) / (T(1) + exp(-z)); };
  for (std::int64_t j = 0; j < n; ++j) {
    pre[j] = sigmoid(mu[j] * scale[0] + base[j]) + e;
    post[j] = T(2) * sigmoid(mu[n + j] * scale[1] + base[n + j]);
  }
  T* m = comb;
  for (std::int64_t j = 0; j < n; ++j) {
    T* row = m + j * n;
    for (std::int64_t k = 0; k < n; ++k) row[k] = mu[2 * n + j * n + k] * scale[2] + base[2 * n + j * n + k];
    const T row_max = *std::max_element(row, row + n);
    T sum = 0;
    for (std::int64_t k = 0; k < n; ++k) sum += (row[k] = exp(row[k] - row_max));
    for (std::int64_t k = 0; k < n; ++k) row[k] = row[k] / sum + e;
  }
  const auto columns = [&] {
    for (std::int64_t k = 0; k < n; ++k) {
      T sum = 0;
      for (std::int64_t j = 0; j < n; ++j) sum += m[j * n + k];
      for (std::int64_t j = 0; j < n; ++j) m[j * n + k] = m[j * n + k] / (sum + e);
    }
  };
  columns();
  for (std::int64_t it = 1; it < iters; ++it) {
    for (std::int64_t j = 0; j < n; ++j) {
      T sum = 0;
      for (std::int64_t k = 0; k < n; ++k) sum += m[j * n + k];
      for (std::int64_t k = 0; k < n; ++k) m[j * n + k] = m[j * n + k] / (sum + e);
    }
    columns();
  }
}

struct HcSplitSinkhornGrads {
  Mat dmixes;  // [tokens, (2+n)n]
  Vec dscale;  // [3]
  Vec dbase;   // [(2+n)n]
  // da [tokens, (2+n)n]: ∂L/∂a_m of every token, a_m = μ_m α_G + b_m — the per-token coefficients
  // whose sums over tokens are dbase (Σ da) and dscale (Σ μ da per group); the official-style step
  // reduces them by spec 06 §6.14 (mhc_backward_fp32.hpp).
  Mat da;
};
// Exact mode (double). mixes [tokens, (2+n)n]; dpre, dpost [tokens, n]; dcomb [tokens, n·n].
// std::invalid_argument on a shape mismatch, iters < 1 or eps < 0.
HcSplitSinkhornGrads hc_split_sinkhorn_backward(const Mat& mixes, std::int64_t n, const Vec& scale, const Vec& base,
                                                std::int64_t iters, double eps, const Mat& dpre, const Mat& dpost,
                                                const Mat& dcomb);

}  // namespace dsv4
