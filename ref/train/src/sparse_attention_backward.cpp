// Backward of sparse attention with the attention sink (spec 02 §2.9; spec 06 §6.12).
#include "dsv4/train/sparse_attention_backward.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("sparse_attention_backward: " + what); }

void validate(const Mat& q, std::int64_t H, const Mat& kv, std::span<const double> sink, const IndexLists& lists,
              const Mat& dout) {
  if (H < 1) fail("n_heads must be ≥ 1, got " + std::to_string(H));
  if (q.cols() != kv.cols()) fail("q has head dim " + std::to_string(q.cols()) + ", kv " + std::to_string(kv.cols()));
  if (static_cast<std::int64_t>(sink.size()) != H) fail("sink has " + std::to_string(sink.size()) + " entries");
  if (q.rows() != lists.rows * H)
    fail("q has " + std::to_string(q.rows()) + " rows, lists " + std::to_string(lists.rows));
  if (dout.rows() != q.rows() || dout.cols() != q.cols()) fail("dout does not have the shape of q");
  if (static_cast<std::int64_t>(lists.data.size()) != lists.rows * lists.width) fail("lists: data size mismatch");
  for (std::int64_t r = 0; r < lists.rows; ++r) {
    bool any = false;
    for (const std::int32_t i : lists.row(r)) {
      if (i < -1 || i >= kv.rows()) fail("lists: row " + std::to_string(r) + " holds " + std::to_string(i));
      any = any || i != -1;
    }
    if (!any) fail("lists: row " + std::to_string(r) + " has no entry");
  }
}

}  // namespace

// spec 02 §2.9, exact mode: the logits and the softmax with the sink in the denominator only.
SinkSoftmax sink_softmax(const Mat& q, std::int64_t row, const Mat& kv, std::span<const std::int32_t> list, double sink,
                         double scale) {
  SinkSoftmax f;
  for (const std::int32_t i : list) {
    if (i != -1) f.entries.push_back(i);
  }
  f.p.resize(f.entries.size());
  double m = -INFINITY;
  for (std::size_t j = 0; j < f.entries.size(); ++j) {
    f.p[j] = scale * q.row(row).dot(kv.row(f.entries[j]));  // s_j
    m = std::max(m, f.p[j]);
  }
  double den = std::exp(sink - m);
  f.p_sink = den;
  for (double& pj : f.p) {
    pj = std::exp(pj - m);
    den += pj;
  }
  for (double& pj : f.p) pj /= den;
  f.p_sink /= den;
  return f;
}

// ds_j = P_j (dP_j − D), dz = −P_z D, D = Σ_j P_j dP_j.
SinkSoftmaxGrads sink_softmax_backward(const SinkSoftmax& f, std::span<const double> dp) {
  double dd = 0;
  for (std::size_t j = 0; j < f.p.size(); ++j) dd += f.p[j] * dp[j];
  SinkSoftmaxGrads g;
  g.ds.resize(f.p.size());
  for (std::size_t j = 0; j < f.p.size(); ++j) g.ds[j] = f.p[j] * (dp[j] - dd);
  g.dsink = -f.p_sink * dd;
  return g;
}

SparseAttentionGrads sparse_attention_backward(const Mat& q, std::int64_t n_heads, const Mat& kv,
                                               std::span<const double> sink, const IndexLists& lists, double scale,
                                               const Mat& dout, SinkAttentionCoefficients* coefficients) {
  validate(q, n_heads, kv, sink, lists, dout);
  SparseAttentionGrads g{Mat::Zero(q.rows(), q.cols()), Mat::Zero(kv.rows(), kv.cols()), Vec::Zero(n_heads)};
  if (coefficients != nullptr)
    *coefficients = {Mat::Zero(q.rows(), lists.width), Mat::Zero(q.rows(), lists.width), Vec::Zero(q.rows())};
  std::vector<double> dp;
  for (std::int64_t r = 0; r < lists.rows; ++r) {
    for (std::int64_t h = 0; h < n_heads; ++h) {
      const std::int64_t qr = r * n_heads + h;
      const SinkSoftmax f = sink_softmax(q, qr, kv, lists.row(r), sink[static_cast<std::size_t>(h)], scale);
      // dP_j = ⟨ō, v_j⟩
      dp.resize(f.entries.size());
      for (std::size_t j = 0; j < f.entries.size(); ++j) dp[j] = dout.row(qr).dot(kv.row(f.entries[j]));
      const SinkSoftmaxGrads s = sink_softmax_backward(f, dp);
      g.dsink(h) += s.dsink;
      if (coefficients != nullptr) {  // by list position: the valid entries in list order
        coefficients->dz(qr) = s.dsink;
        std::size_t j = 0;
        for (std::int64_t pos = 0; pos < lists.width; ++pos) {
          if (lists.at(r, pos) == -1) continue;
          coefficients->prob(qr, pos) = f.p[j];
          coefficients->dlogit(qr, pos) = scale * s.ds[j];
          ++j;
        }
      }
      // dq_h = τ Σ_j ds_j v_j;  dkv[list_j] += P_j ō + τ ds_j q_h
      for (std::size_t j = 0; j < f.entries.size(); ++j) {
        const std::int32_t e = f.entries[j];
        g.dq.row(qr) += (scale * s.ds[j]) * kv.row(e);
        g.dkv.row(e) += f.p[j] * dout.row(qr) + (scale * s.ds[j]) * q.row(qr);
      }
    }
  }
  return g;
}

}  // namespace dsv4
