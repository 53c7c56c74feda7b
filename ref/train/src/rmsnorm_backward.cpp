// Backward of RMSNorm (spec 01 §1.11 C8 exact mode; spec 06 §6.12).
#include "dsv4/train/rmsnorm_backward.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

RmsNormGrads rmsnorm_backward(const Mat& x, const Vec& weight, double eps, const Mat& dy) {
  const Eigen::Index n = x.cols();
  if (weight.size() != n || dy.rows() != x.rows() || dy.cols() != n) {
    throw std::invalid_argument("rmsnorm_backward: x [" + std::to_string(x.rows()) + ", " + std::to_string(n) +
                                "], weight [" + std::to_string(weight.size()) + "], dy [" + std::to_string(dy.rows()) +
                                ", " + std::to_string(dy.cols()) + "] do not match");
  }
  RmsNormGrads g{Mat(x.rows(), n), Vec::Zero(n), Mat(x.rows(), n)};
  std::vector<double> dz(static_cast<std::size_t>(n));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    double sum_sq = 0;
    for (Eigen::Index i = 0; i < n; ++i) sum_sq += x(r, i) * x(r, i);
    const double rinv = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps);
    double dz_dot_x = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      dz[static_cast<std::size_t>(i)] = dy(r, i) * weight(i);
      dz_dot_x += dz[static_cast<std::size_t>(i)] * x(r, i);
      g.xr(r, i) = x(r, i) * rinv;
      g.dweight(i) += dy(r, i) * g.xr(r, i);
    }
    const double c = rinv * rinv * rinv / static_cast<double>(n) * dz_dot_x;
    for (Eigen::Index i = 0; i < n; ++i) g.dx(r, i) = rinv * dz[static_cast<std::size_t>(i)] - x(r, i) * c;
  }
  return g;
}

}  // namespace dsv4
