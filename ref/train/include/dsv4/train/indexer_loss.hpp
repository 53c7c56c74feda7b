// The Lightning Indexer's training signal (spec 06 §6.16 [C]; indexer forward spec 02 §2.7).
//
// The report and the project's spec state no objective for the indexer (spec 06 §6.4: "the indexer
// warm-up objective [U]"), so the reference takes DeepSeek-V3.2's practice: a KL divergence from the
// main attention's distribution, held fixed (stop-gradient), to the indexer's softmax distribution,
// over the token's candidate set S_t of compressed entries — every visible compressed entry in the
// dense warm-up stage, the indexer's top-k selection in the sparse stage (the caller's list; one
// formula). Per query token t with the indexer's head queries q_h, head weights ω_h (the factor
// c_I^{-1/2} n_I^{-1/2} of spec 02 §2.7 step 3 folded in) and compressed keys K_τ:
//
//   I_j   = Σ_h ω_h ReLU(⟨q_h, K_{S_j}⟩)                        (the index score, report eq. 16)
//   q_j   = exp(I_j) / Σ_{i∈S} exp(I_i)                         (the indexer's distribution over S)
//   p_j   = a_j / Σ_{i∈S} a_i,  a_j = Σ_h P^{main}_{h, S_j}     (main attention: summed over heads,
//                                                                renormalised over S; stop-gradient)
//   L_t   = KL(p ‖ q) = Σ_j p_j (log p_j − log q_j)             (p_j = 0 contributes 0)
//         = Σ_j p_j log p_j − Σ_j p_j I_j + lse_S(I).
//
// Backward (p is a constant): with dL the upstream gradient of L_t,
//   dI_j = dL (q_j − p_j);  dω_h = Σ_j dI_j ReLU(s_{h,j});  ds_{h,j} = dI_j ω_h [s_{h,j} > 0]
//   dq_h = Σ_j ds_{h,j} K_{S_j};  dK_{S_j} += ds_{h,j} q_h      (s_{h,j} = ⟨q_h, K_{S_j}⟩).
// The ReLU's gradient at s = 0 is 0 ([s > 0], PyTorch's relu backward) [C]; check points keep every
// s a margin from 0. No gradient flows into the main attention (stop-gradient) nor through the
// choice of S (integers). The queries and keys are the FP4-simulated values; their gradient passes
// the simulation straight through (spec 06 §6.12). dK sums over rows ascending, heads ascending,
// list positions ascending (sparse attention's order). The loss of a batch is the caller's sum or
// mean of L_t [C: V3.2 writes the sum over t].
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// L_t of every row in any scalar (T = double for the reference, Mp50 for the gradient check): q
// [M, H·c] (head h = columns h·c …), weights [M, H], keys [N, c] row-major; selected [M, k] (entries
// of keys, −1 = none; a row's valid entries distinct); target [M, k] (a ≥ 0, at least one > 0 in a
// row with a valid entry). A row without a valid entry has L = 0. The inputs must be valid
// (indexer_kl_loss validates them).
template <class T>
std::vector<T> indexer_kl_loss_exact(const std::vector<T>& q, const std::vector<T>& weights, const std::vector<T>& keys,
                                     std::int64_t n_heads, std::int64_t c, const IndexLists& selected,
                                     const std::vector<double>& target) {
  using std::exp;
  using std::log;
  const std::int64_t M = selected.rows, k = selected.width;
  std::vector<T> loss(static_cast<std::size_t>(M), T(0));
  std::vector<T> score(static_cast<std::size_t>(k));
  for (std::int64_t r = 0; r < M; ++r) {
    double a_sum = 0.0;
    bool any = false;
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int32_t e = selected.at(r, j);
      if (e < 0) continue;
      any = true;
      a_sum += target[static_cast<std::size_t>(r * k + j)];
      T ij = 0;  // I_j = Σ_h ω_h ReLU(⟨q_h, K_e⟩)
      for (std::int64_t h = 0; h < n_heads; ++h) {
        T s = 0;
        for (std::int64_t d = 0; d < c; ++d) {
          s += q[static_cast<std::size_t>((r * n_heads + h) * c + d)] * keys[static_cast<std::size_t>(e * c + d)];
        }
        if (s > 0) ij += weights[static_cast<std::size_t>(r * n_heads + h)] * s;
      }
      score[static_cast<std::size_t>(j)] = ij;
    }
    if (!any) continue;
    T m = 0;  // lse_S(I), the maximum subtracted
    bool first = true;
    for (std::int64_t j = 0; j < k; ++j) {
      if (selected.at(r, j) < 0) continue;
      if (first || score[static_cast<std::size_t>(j)] > m) m = score[static_cast<std::size_t>(j)];
      first = false;
    }
    T z = 0;
    for (std::int64_t j = 0; j < k; ++j) {
      if (selected.at(r, j) >= 0) z += exp(score[static_cast<std::size_t>(j)] - m);
    }
    const T lse = m + log(z);
    T l = 0;  // Σ_j p_j (log p_j − (I_j − lse))
    for (std::int64_t j = 0; j < k; ++j) {
      const double a = target[static_cast<std::size_t>(r * k + j)];
      if (selected.at(r, j) < 0 || a == 0.0) continue;
      const T p = T(a) / T(a_sum);
      l += p * (log(p) - (score[static_cast<std::size_t>(j)] - lse));
    }
    loss[static_cast<std::size_t>(r)] = l;
  }
  return loss;
}

// The reference's loss (double): q [M, H·c], weights [M, H], keys [N, c], selected and target
// [M, k] as above → L [M]. std::invalid_argument for shapes, an entry outside [0, N), a repeated
// entry in a row, a negative or non-finite target, a row whose valid targets sum to 0, non-finite
// q, weights or keys.
Vec indexer_kl_loss(const Mat& q, const Mat& weights, const Mat& keys, const IndexLists& selected, const Mat& target);

struct IndexerLossGrads {
  Mat dq;        // [M, H·c]
  Mat dweights;  // [M, H]
  Mat dkeys;     // [N, c]
};
// The backward of the file comment; dloss [M] (the same checks).
IndexerLossGrads indexer_kl_loss_backward(const Mat& q, const Mat& weights, const Mat& keys, const IndexLists& selected,
                                          const Mat& target, const Vec& dloss);

// The target a [M, k] from the main attention (spec 02 §2.9, exact mode): for query row r and head
// h, P_{h,j} = e^{s_j − m} / (Σ_i e^{s_i − m} + e^{z_h − m}) over the row's main list (window and
// compressed parts, the sink z_h in the denominator), s_j = τ⟨q^{main}_h, kv_{list_j}⟩; a_{r,i} =
// Σ_h P_{h,j} at the list position j whose kv row is offset + selected(r, i) (0 when the main list
// does not hold it). q_main [M·H_main, c_main] (row r·H + h), kv [N_kv, c_main], sink [H_main]; the
// main list's compressed entries are offset by `offset` (the window part's length, spec 02 §2.7
// step 7). Sums ascending (heads, list positions). The window entries and the sink drop out in the
// loss's renormalisation over S.
Mat indexer_attention_target(const Mat& q_main, std::int64_t n_heads, const Mat& kv, const Vec& sink,
                             const IndexLists& main_lists, double scale, std::int64_t offset,
                             const IndexLists& selected);

}  // namespace dsv4
