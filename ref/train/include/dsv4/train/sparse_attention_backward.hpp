// Backward of sparse attention with the attention sink (forward spec 02 §2.9, exact mode; backward
// spec 06 §6.12). Per query row r and head h, over the valid entries j of the row's index list (−1
// entries skipped, list order), v_j = kv[list_j] (one shared KV head used as key and value), τ the
// softmax scale and z_h the head's sink logit:
//   s_j = τ ⟨q_h, v_j⟩;  P_j = e^{s_j} / (Σ_i e^{s_i} + e^{z_h});  P_z = e^{z_h} / (Σ_i e^{s_i} + e^{z_h});
//   o_h = Σ_j P_j v_j   (report eq. 27: the sink is a logit with a zero value row, denominator only).
// With the upstream gradient ō of o_h:
//   dP_j = ⟨ō, v_j⟩;  D = ⟨ō, o_h⟩ (= Σ_j P_j dP_j: the sink's value row is zero);
//   ds_j = P_j (dP_j − D);  dz_h = −P_z D                    (the softmax with the sink)
//   dq_h = τ Σ_j ds_j v_j;  dkv[list_j] += P_j ō + τ ds_j q_h  (key and value are the same row).
// The index lists are held fixed: they are integers chosen upstream (the window and HCA builders, or
// the indexer's top-k, spec 02 §2.7–§2.8), so no gradient flows through the selection (spec 06
// §6.12) — the indexer's training signal is a separate term. For fixed lists the function is smooth
// (the max subtraction of the forward does not change it), so it has no kink to avoid.
// dkv and dsink are sums over query rows (ascending), then heads (ascending), then list positions
// (ascending); a row listed twice in one list receives both contributions.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation). The reference's
// sparse_attention (ref/model) is one body for both modes written for double through Precision;
// this is its exact-mode equation, max-subtracted as there: o_h = Σ_j e^{s_j − m} v_j /
// (Σ_j e^{s_j − m} + e^{z_h − m}), m = max_j s_j. q [M·H, c] (row r·H + h), kv [N, c], sink [H],
// row-major → [M·H, c]. The lists must be valid (sparse_attention validates them).
template <class T>
std::vector<T> sparse_attention_exact(const std::vector<T>& q, std::int64_t n_heads, const std::vector<T>& kv,
                                      std::int64_t c, const std::vector<T>& sink, const IndexLists& lists,
                                      double scale) {
  using std::exp;
  std::vector<T> out(q.size(), T(0));
  std::vector<T> s;
  std::vector<std::int64_t> valid;
  for (std::int64_t r = 0; r < lists.rows; ++r) {
    valid.clear();
    for (const std::int32_t i : lists.row(r)) {
      if (i != -1) valid.push_back(i);
    }
    for (std::int64_t h = 0; h < n_heads; ++h) {
      const std::size_t qo = static_cast<std::size_t>((r * n_heads + h) * c);
      s.assign(valid.size(), T(0));
      for (std::size_t j = 0; j < valid.size(); ++j) {
        T dot = 0;
        for (std::int64_t d = 0; d < c; ++d)
          dot += q[qo + static_cast<std::size_t>(d)] * kv[static_cast<std::size_t>(valid[j] * c + d)];
        s[j] = dot * T(scale);
      }
      T m = s.at(0);
      for (const T& sj : s) m = sj > m ? sj : m;
      T den = exp(sink[static_cast<std::size_t>(h)] - m);
      for (std::size_t j = 0; j < valid.size(); ++j) {
        s[j] = exp(s[j] - m);
        den += s[j];
      }
      for (std::int64_t d = 0; d < c; ++d) {
        T num = 0;
        for (std::size_t j = 0; j < valid.size(); ++j) num += s[j] * kv[static_cast<std::size_t>(valid[j] * c + d)];
        out[qo + static_cast<std::size_t>(d)] = num / den;
      }
    }
  }
  return out;
}

// The forward's probabilities of one (query row, head): P_j over the row's valid entries (list
// order) and P_z of the sink.
struct SinkSoftmax {
  std::vector<std::int32_t> entries;  // kv rows of the valid list entries, in list order
  std::vector<double> p;              // P_j
  double p_sink = 0;                  // P_z
};
// spec 02 §2.9 (exact mode): s_j = τ⟨q_h, v_j⟩, max-subtracted, the sink in the denominator only.
SinkSoftmax sink_softmax(const Mat& q, std::int64_t row, const Mat& kv, std::span<const std::int32_t> list, double sink,
                         double scale);

// The softmax-with-sink backward of one (query row, head): ds_j = P_j (dP_j − D), dz = −P_z D, with
// D = Σ_j P_j dP_j (the sink's value row is zero, so D = ⟨ō, o⟩).
struct SinkSoftmaxGrads {
  std::vector<double> ds;
  double dsink = 0;
};
SinkSoftmaxGrads sink_softmax_backward(const SinkSoftmax& f, std::span<const double> dp);

struct SparseAttentionGrads {
  Mat dq;     // [M·H, c]
  Mat dkv;    // [N, c]
  Vec dsink;  // [H]
};
// Exact mode (double). Shapes and lists as sparse_attention (ref/model sparse_attention.hpp), dout
// [M·H, c]. std::invalid_argument on a shape mismatch, a list entry outside [−1, N) or a list without
// any entry (the exact math needs one; sparse_attention's own rule — a valid entry in the first chunk
// of 64 — is the official kernel's and applies to its forward).
// The per-(query row, head) coefficients of dkv and dsink (what the official-style step reduces by
// spec 06 §6.14, sparse_attention_backward_fp32.hpp): prob = P_j and dlogit = τ ds_j [M·H, width]
// by list position (0 at −1 entries), dz = −P_z D [M·H].
struct SinkAttentionCoefficients {
  Mat prob, dlogit;
  Vec dz;
};
// coefficients: when not null, receives them as well.
SparseAttentionGrads sparse_attention_backward(const Mat& q, std::int64_t n_heads, const Mat& kv,
                                               std::span<const double> sink, const IndexLists& lists, double scale,
                                               const Mat& dout, SinkAttentionCoefficients* coefficients = nullptr);

}  // namespace dsv4
