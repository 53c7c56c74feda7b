// RMS normalisations (spec 01 §1.11 C8; spec 02 §2.4 step 3).
#include "dsv4/model/rmsnorm.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv4 {

// spec 01 §1.11 C8: y_i = bf16(fl(w_i · fl(x_i · rsqrt(fl(fl(S × fl32(1/N)) + fl32(eps)))))), S the
// C1 sum of the squares x_i² (exact: x_i is a bf16 value). Exact mode: the same formula in double.
Mat rmsnorm(const Precision& p, const Mat& x, const Vec& weight, double eps) {
  const Eigen::Index n = x.cols();
  if (weight.size() != n) {
    throw std::invalid_argument("rmsnorm: weight has " + std::to_string(weight.size()) + " elements, input rows have " +
                                std::to_string(n));
  }
  const double inv_n = p.fp32(1.0 / static_cast<double>(n));
  const double eps32 = p.fp32(eps);
  Mat y(x.rows(), n);
  std::vector<double> squares(static_cast<std::size_t>(n));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (Eigen::Index i = 0; i < n; ++i) squares[static_cast<std::size_t>(i)] = x(r, i) * x(r, i);
    const double mean_sq = p.mul(p.sum(squares.data(), n), inv_n);  // C7
    // (Deviation kRmsNormEpsOutside, bug catalogue only: 1/(√ms + eps), the eps outside the root.)
    const double rinv = p.deviates(Deviation::kRmsNormEpsOutside) ? p.div(1.0, p.add(p.fp32(std::sqrt(mean_sq)), eps32))
                                                                  : p.rsqrt(p.add(mean_sq, eps32));
    for (Eigen::Index i = 0; i < n; ++i) y(r, i) = p.bf16(p.mul(weight(i), p.mul(x(r, i), rinv)));
  }
  return y;
}

std::vector<float> rmsnorm_rows(const Precision& p, const float* x, std::int64_t rows, std::int64_t dim,
                                const float* weight, double eps) {
  Mat xm(rows, dim);
  Vec w(dim);
  for (std::int64_t i = 0; i < rows * dim; ++i) xm.data()[i] = x[i];
  for (std::int64_t i = 0; i < dim; ++i) w(i) = weight[i];
  const Mat y = rmsnorm(p, xm, w, eps);
  return std::vector<float>(y.data(), y.data() + y.size());
}

// spec 02 §2.4 step 3: q ← q · rsqrt(mean(q²) + eps) per head, each step a bf16 op (C6, C7).
void head_rmsnorm_inplace(const Precision& p, Mat& x, std::int64_t head_dim, double eps) {
  if (head_dim <= 0 || x.cols() % head_dim != 0) {
    throw std::invalid_argument("head_rmsnorm: head_dim " + std::to_string(head_dim) +
                                " does not divide the row length " + std::to_string(x.cols()));
  }
  const double inv_c = p.fp32(1.0 / static_cast<double>(head_dim));
  const double eps32 = p.fp32(eps);
  const Eigen::Index heads = x.cols() / head_dim;
  std::vector<double> u(static_cast<std::size_t>(head_dim));
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (Eigen::Index h = 0; h < heads; ++h) {
      double* q = x.row(r).data() + h * head_dim;
      for (std::int64_t i = 0; i < head_dim; ++i) u[static_cast<std::size_t>(i)] = p.bf16(p.mul(q[i], q[i]));
      const double mu = p.bf16(p.mul(p.sum(u.data(), head_dim), inv_c));
      const double v = p.bf16(p.add(mu, eps32));
      const double rinv = p.bf16(p.rsqrt(v));
      for (std::int64_t i = 0; i < head_dim; ++i) q[i] = p.bf16(p.mul(q[i], rinv));
    }
  }
}

}  // namespace dsv4
