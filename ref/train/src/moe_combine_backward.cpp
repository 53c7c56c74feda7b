// Backward of the MoE combine (spec 03 §3.2, §3.3; spec 06 §6.12).
#include "dsv4/train/moe_combine_backward.hpp"

#include <stdexcept>
#include <string>

namespace dsv4 {

MoeCombineGrads moe_combine_backward(const Mat& x, const Mat& weights, const std::vector<std::int64_t>& indices,
                                     const std::vector<ExpertMats>& experts, const ExpertMats& shared, double limit,
                                     const Mat& dy, ClampBoundary boundary) {
  const Eigen::Index T = x.rows(), d = x.cols(), k = weights.cols();
  const auto E = static_cast<std::int64_t>(experts.size());
  const Eigen::Index de = shared.w1.rows();
  if (weights.rows() != T || static_cast<Eigen::Index>(indices.size()) != T * k || dy.rows() != T || dy.cols() != d ||
      E < 1) {
    throw std::invalid_argument("moe_combine_backward: x, weights, indices, dy or the experts do not match");
  }
  for (const std::int64_t e : indices) {
    if (e < 0 || e >= E)
      throw std::invalid_argument("moe_combine_backward: expert id " + std::to_string(e) + " outside [0, " +
                                  std::to_string(E) + ")");
  }
  MoeCombineGrads g{Mat::Zero(T, d),
                    Mat::Zero(T, k),
                    Mat::Zero(E * de, d),
                    Mat::Zero(E * de, d),
                    Mat::Zero(E * d, de),
                    {},
                    std::vector<ExpertRows>(static_cast<std::size_t>(E)),
                    {}};
  // Routed experts in ascending id order: the tokens routed to e (ascending, with their slot j), the
  // expert's backward with upstream gradient dy (the combine is a sum), scattered back.
  for (std::int64_t e = 0; e < E; ++e) {
    std::vector<Eigen::Index> rows, slots;
    for (Eigen::Index t = 0; t < T; ++t) {
      for (Eigen::Index j = 0; j < k; ++j) {
        if (indices[static_cast<std::size_t>(t * k + j)] == e) {
          rows.push_back(t);
          slots.push_back(j);
        }
      }
    }
    if (rows.empty()) continue;
    const auto n = static_cast<Eigen::Index>(rows.size());
    Mat xe(n, d), dye(n, d);
    Vec we(n);
    for (Eigen::Index r = 0; r < n; ++r) {
      xe.row(r) = x.row(rows[static_cast<std::size_t>(r)]);
      dye.row(r) = dy.row(rows[static_cast<std::size_t>(r)]);
      we(r) = weights(rows[static_cast<std::size_t>(r)], slots[static_cast<std::size_t>(r)]);
    }
    const ExpertMats& w = experts[static_cast<std::size_t>(e)];
    const ExpertGrads ge = expert_backward(xe, &we, w.w1, w.w3, w.w2, limit, dye, boundary);
    for (Eigen::Index r = 0; r < n; ++r) {
      g.dx.row(rows[static_cast<std::size_t>(r)]) += ge.dx.row(r);
      g.dweights(rows[static_cast<std::size_t>(r)], slots[static_cast<std::size_t>(r)]) = ge.droute_weight(r);
    }
    g.dw1.middleRows(e * de, de) = ge.dw1;
    g.dw3.middleRows(e * de, de) = ge.dw3;
    g.dw2.middleRows(e * d, d) = ge.dw2;
    g.routed_rows[static_cast<std::size_t>(e)] = {std::vector<std::int64_t>(rows.begin(), rows.end()), ge.h, ge.dg,
                                                  ge.du};
  }
  // The shared expert, last.
  const ExpertGrads gs = expert_backward(x, nullptr, shared.w1, shared.w3, shared.w2, limit, dy, boundary);
  g.dx += gs.dx;
  g.dshared = {gs.dw1, gs.dw3, gs.dw2};
  g.shared_rows.tokens.resize(static_cast<std::size_t>(T));
  for (Eigen::Index t = 0; t < T; ++t) g.shared_rows.tokens[static_cast<std::size_t>(t)] = t;
  g.shared_rows.h = gs.h;
  g.shared_rows.dg = gs.dg;
  g.shared_rows.du = gs.du;
  return g;
}

}  // namespace dsv4
