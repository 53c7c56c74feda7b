// Backward of the compressor's gated softmax pooling (spec 02 §2.6.2; spec 06 §6.12).
#include "dsv4/train/compressor_pool_backward.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace dsv4 {

CompressorPoolGrads compressor_pool_backward(const Mat& u, const Mat& z, const RowVec& dc) {
  if (u.rows() != z.rows() || u.cols() != z.cols() || dc.size() != u.cols()) {
    throw std::invalid_argument("compressor_pool_backward: u, z [slots, D] and dc [D] do not match");
  }
  const Eigen::Index S = u.rows(), D = u.cols();
  CompressorPoolGrads g{Mat::Zero(S, D), Mat::Zero(S, D)};
  std::vector<double> w(static_cast<std::size_t>(S));
  for (Eigen::Index c = 0; c < D; ++c) {
    // the forward's weights w_j (max-subtracted softmax over the valid slots) and C
    double mx = -INFINITY;
    for (Eigen::Index j = 0; j < S; ++j) mx = std::max(mx, z(j, c));
    if (mx == -INFINITY) {
      throw std::invalid_argument("compressor_pool_backward: every slot of channel " + std::to_string(c) +
                                  " is padding");
    }
    double sum = 0;
    for (Eigen::Index j = 0; j < S; ++j) {
      w[static_cast<std::size_t>(j)] = z(j, c) == -INFINITY ? 0.0 : std::exp(z(j, c) - mx);
      sum += w[static_cast<std::size_t>(j)];
    }
    double pooled = 0;
    for (Eigen::Index j = 0; j < S; ++j) {
      w[static_cast<std::size_t>(j)] /= sum;
      pooled += u(j, c) * w[static_cast<std::size_t>(j)];
    }
    // ū_j = w_j C̄;  z̄_j = w_j (u_j − C) C̄ (0 for padding: w_j = 0)
    for (Eigen::Index j = 0; j < S; ++j) {
      const double wj = w[static_cast<std::size_t>(j)];
      g.du(j, c) = wj * dc(c);
      g.dz(j, c) = wj * (u(j, c) - pooled) * dc(c);
    }
  }
  return g;
}

}  // namespace dsv4
