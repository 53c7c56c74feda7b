// The Lightning Indexer's training signal (spec 06 §6.16): the KL term to the main attention's
// distribution, its backward and its target. Equations: indexer_loss.hpp.
#include "dsv4/train/indexer_loss.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {
namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("indexer_kl_loss: " + what); }

void check_finite(const Mat& m, const char* name) {
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    if (!std::isfinite(m.data()[i])) bad(std::string(name) + " element " + str(i) + " is not finite");
  }
}

// Shapes, entries and targets of the header's contract; returns H.
std::int64_t check(const Mat& q, const Mat& weights, const Mat& keys, const IndexLists& selected, const Mat& target) {
  const std::int64_t M = selected.rows, k = selected.width, c = keys.cols(), H = weights.cols();
  if (q.rows() != M || weights.rows() != M || target.rows() != M || target.cols() != k)
    bad("q, weights, selected and target must have one row per query token, target the width of selected");
  if (H < 1 || c < 1 || q.cols() != H * c) bad("q must be [rows, n_heads · c] with c the keys' width");
  check_finite(q, "q");
  check_finite(weights, "weights");
  check_finite(keys, "keys");
  for (std::int64_t r = 0; r < M; ++r) {
    double a_sum = 0.0;
    bool any = false;
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int32_t e = selected.at(r, j);
      const double a = target(r, j);
      if (!std::isfinite(a) || a < 0.0) bad("target of row " + str(r) + " position " + str(j) + " is not >= 0");
      if (e < 0) continue;
      if (e >= keys.rows()) bad("row " + str(r) + " selects entry " + str(e) + " of " + str(keys.rows()));
      for (std::int64_t i = 0; i < j; ++i) {
        if (selected.at(r, i) == e) bad("row " + str(r) + " selects entry " + str(e) + " twice");
      }
      any = true;
      a_sum += a;
    }
    if (any && !(a_sum > 0.0)) bad("row " + str(r) + " has no target mass on its selected entries");
  }
  return H;
}

std::vector<double> flat_of(const Mat& m) { return {m.data(), m.data() + m.size()}; }

}  // namespace

Vec indexer_kl_loss(const Mat& q, const Mat& weights, const Mat& keys, const IndexLists& selected, const Mat& target) {
  const std::int64_t H = check(q, weights, keys, selected, target);
  const std::vector<double> l =
      indexer_kl_loss_exact(flat_of(q), flat_of(weights), flat_of(keys), H, keys.cols(), selected, flat_of(target));
  return Eigen::Map<const Vec>(l.data(), static_cast<Eigen::Index>(l.size()));
}

IndexerLossGrads indexer_kl_loss_backward(const Mat& q, const Mat& weights, const Mat& keys, const IndexLists& selected,
                                          const Mat& target, const Vec& dloss) {
  const std::int64_t H = check(q, weights, keys, selected, target);
  const std::int64_t M = selected.rows, k = selected.width, c = keys.cols();
  if (dloss.size() != M) bad("dloss must have one element per query token");
  IndexerLossGrads g{Mat::Zero(M, H * c), Mat::Zero(M, H), Mat::Zero(keys.rows(), c)};
  Mat s(H, k);                // s_{h,j} = ⟨q_h, K_{S_j}⟩
  std::vector<double> di(k);  // I_j, then dI_j
  for (std::int64_t r = 0; r < M; ++r) {
    // forward of the row: s, I, lse, p
    double a_sum = 0.0, m = 0.0;
    bool any = false;
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int32_t e = selected.at(r, j);
      if (e < 0) continue;
      a_sum += target(r, j);
      double ij = 0.0;
      for (std::int64_t h = 0; h < H; ++h) {
        double acc = 0.0;
        for (std::int64_t d = 0; d < c; ++d) acc += q(r, h * c + d) * keys(e, d);
        s(h, j) = acc;
        if (acc > 0.0) ij += weights(r, h) * acc;
      }
      di[static_cast<std::size_t>(j)] = ij;
      if (!any || ij > m) m = ij;
      any = true;
    }
    if (!any) continue;
    double z = 0.0;
    for (std::int64_t j = 0; j < k; ++j) {
      if (selected.at(r, j) >= 0) z += std::exp(di[static_cast<std::size_t>(j)] - m);
    }
    // dI_j = dL (q_j − p_j)
    for (std::int64_t j = 0; j < k; ++j) {
      if (selected.at(r, j) < 0) continue;
      const double qj = std::exp(di[static_cast<std::size_t>(j)] - m) / z;
      di[static_cast<std::size_t>(j)] = dloss(r) * (qj - target(r, j) / a_sum);
    }
    // dω_h, ds_{h,j}, dq_h, dK (heads ascending, list positions ascending)
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t j = 0; j < k; ++j) {
        const std::int32_t e = selected.at(r, j);
        if (e < 0 || !(s(h, j) > 0.0)) continue;  // ReLU: no gradient at s ≤ 0
        const double dij = di[static_cast<std::size_t>(j)];
        g.dweights(r, h) += dij * s(h, j);
        const double ds = dij * weights(r, h);
        for (std::int64_t d = 0; d < c; ++d) {
          g.dq(r, h * c + d) += ds * keys(e, d);
          g.dkeys(e, d) += ds * q(r, h * c + d);
        }
      }
    }
  }
  return g;
}

Mat indexer_attention_target(const Mat& q_main, std::int64_t n_heads, const Mat& kv, const Vec& sink,
                             const IndexLists& main_lists, double scale, std::int64_t offset,
                             const IndexLists& selected) {
  const std::int64_t M = main_lists.rows, W = main_lists.width, c = kv.cols();
  if (n_heads < 1 || q_main.rows() != M * n_heads || q_main.cols() != c || sink.size() != n_heads ||
      selected.rows != M) {
    throw std::invalid_argument(
        "indexer_attention_target: q_main must be [rows · n_heads, c], sink [n_heads], selected one row per query");
  }
  Mat a = Mat::Zero(M, selected.width);
  std::vector<double> sc(static_cast<std::size_t>(W));
  for (std::int64_t r = 0; r < M; ++r) {
    for (std::int64_t h = 0; h < n_heads; ++h) {
      // P_{h,j}: the main attention's softmax with the sink (spec 02 §2.9, exact math)
      double m = sink(h);
      for (std::int64_t j = 0; j < W; ++j) {
        const std::int32_t e = main_lists.at(r, j);
        if (e < 0) continue;
        if (e >= kv.rows()) throw std::invalid_argument("indexer_attention_target: list entry outside kv");
        double acc = 0.0;
        for (std::int64_t d = 0; d < c; ++d) acc += q_main(r * n_heads + h, d) * kv(e, d);
        sc[static_cast<std::size_t>(j)] = scale * acc;
        m = std::fmax(m, sc[static_cast<std::size_t>(j)]);
      }
      double den = std::exp(sink(h) - m);
      for (std::int64_t j = 0; j < W; ++j) {
        if (main_lists.at(r, j) >= 0) den += std::exp(sc[static_cast<std::size_t>(j)] - m);
      }
      // a_i += P_{h,j} at the list position holding offset + selected(r, i)
      for (std::int64_t i = 0; i < selected.width; ++i) {
        const std::int32_t tau = selected.at(r, i);
        if (tau < 0) continue;
        for (std::int64_t j = 0; j < W; ++j) {
          if (main_lists.at(r, j) == offset + tau) {
            a(r, i) += std::exp(sc[static_cast<std::size_t>(j)] - m) / den;
            break;
          }
        }
      }
    }
  }
  return a;
}

}  // namespace dsv4
