// Backward of mHC's hc_post (spec 04 §4.4, §4.8; spec 06 §6.12).
#include "dsv4/train/hc_post_backward.hpp"

#include <stdexcept>
#include <string>

namespace dsv4 {

HcPostGrads hc_post_backward(const Mat& f, const Mat& residual, const Mat& post, const Mat& comb, std::int64_t n,
                             const Mat& dy) {
  const Eigen::Index tokens = f.rows(), d = f.cols();
  if (n < 1 || residual.rows() != tokens || residual.cols() != n * d || post.rows() != tokens || post.cols() != n ||
      comb.rows() != tokens || comb.cols() != n * n || dy.rows() != tokens || dy.cols() != n * d) {
    throw std::invalid_argument("hc_post_backward: shapes of f, residual, post, comb, dy do not match (n " +
                                std::to_string(n) + ")");
  }
  HcPostGrads g{Mat::Zero(tokens, d), Mat::Zero(tokens, n * d), Mat::Zero(tokens, n), Mat::Zero(tokens, n * n)};
  for (Eigen::Index t = 0; t < tokens; ++t) {
    for (std::int64_t k = 0; k < n; ++k) {
      for (Eigen::Index i = 0; i < d; ++i) {
        const double gk = dy(t, k * d + i);
        g.df(t, i) += post(t, k) * gk;
        g.dpost(t, k) += gk * f(t, i);
        for (std::int64_t j = 0; j < n; ++j) {
          g.dcomb(t, j * n + k) += gk * residual(t, j * d + i);
          g.dresidual(t, j * d + i) += comb(t, j * n + k) * gk;
        }
      }
    }
  }
  return g;
}

}  // namespace dsv4
