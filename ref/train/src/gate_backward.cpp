// Backward of the MoE gate (spec 03 §3.1; spec 06 §6.12).
#include "dsv4/train/gate_backward.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

GateGrads gate_backward(const Mat& x, const Mat& weight, ScoreFunc f, double route_scale,
                        const std::vector<std::int64_t>& indices, const Mat& dweights, const Mat& dscores) {
  const Eigen::Index tokens = x.rows(), experts = weight.rows(), k = dweights.cols();
  if (weight.cols() != x.cols() || dweights.rows() != tokens || dscores.rows() != tokens || dscores.cols() != experts ||
      static_cast<Eigen::Index>(indices.size()) != tokens * k) {
    throw std::invalid_argument("gate_backward: shapes of x, weight, indices, dweights, dscores do not match");
  }
  const Precision exact(Mode::kExact);
  const Mat logits = exact.matmul_nt(x, weight);
  Mat dl(tokens, experts);
  std::vector<double> s(static_cast<std::size_t>(experts)), ds(static_cast<std::size_t>(experts));
  for (Eigen::Index t = 0; t < tokens; ++t) {
    // the scores, as the exact-mode forward computes them
    if (f == ScoreFunc::kSoftmax) {
      const double m = logits.row(t).maxCoeff();
      double total = 0;
      for (Eigen::Index e = 0; e < experts; ++e) total += (s[static_cast<std::size_t>(e)] = std::exp(logits(t, e) - m));
      for (double& v : s) v /= total;
    } else {
      for (Eigen::Index e = 0; e < experts; ++e) {
        const double l = logits(t, e);
        s[static_cast<std::size_t>(e)] =
            f == ScoreFunc::kSigmoid ? 1.0 / (1.0 + std::exp(-l))
                                     : std::sqrt(l > 0.0 ? l + std::log1p(std::exp(-l)) : std::log1p(std::exp(l)));
      }
    }
    for (Eigen::Index e = 0; e < experts; ++e) ds[static_cast<std::size_t>(e)] = dscores(t, e);
    const std::int64_t* chosen = indices.data() + t * k;
    if (f == ScoreFunc::kSoftmax) {
      for (Eigen::Index j = 0; j < k; ++j) ds[static_cast<std::size_t>(chosen[j])] += route_scale * dweights(t, j);
    } else {
      double total = 0, dot = 0;
      for (Eigen::Index j = 0; j < k; ++j) total += s[static_cast<std::size_t>(chosen[j])];
      for (Eigen::Index j = 0; j < k; ++j) dot += dweights(t, j) * s[static_cast<std::size_t>(chosen[j])];
      for (Eigen::Index j = 0; j < k; ++j) {
        ds[static_cast<std::size_t>(chosen[j])] += route_scale / total * (dweights(t, j) - dot / total);
      }
    }
    if (f == ScoreFunc::kSoftmax) {
      double dot = 0;
      for (Eigen::Index e = 0; e < experts; ++e)
        dot += ds[static_cast<std::size_t>(e)] * s[static_cast<std::size_t>(e)];
      for (Eigen::Index e = 0; e < experts; ++e)
        dl(t, e) = s[static_cast<std::size_t>(e)] * (ds[static_cast<std::size_t>(e)] - dot);
    } else {
      for (Eigen::Index e = 0; e < experts; ++e) {
        const double se = s[static_cast<std::size_t>(e)];
        const double slope =
            f == ScoreFunc::kSigmoid ? se * (1.0 - se) : 1.0 / (1.0 + std::exp(-logits(t, e))) / (2.0 * se);
        dl(t, e) = ds[static_cast<std::size_t>(e)] * slope;
      }
    }
  }
  const Mat dl_t = dl.transpose();
  return {exact.matmul_nn(dl, weight), exact.matmul_nn(dl_t, x), dl};
}

}  // namespace dsv4
