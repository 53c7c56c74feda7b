// Backward of mHC's hc_head (spec 04 §4.5, §4.8; spec 06 §6.12).
#include "dsv4/train/hc_head_backward.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

HcHeadGrads hc_head_backward(const Mat& x, std::int64_t n, const Mat& fn, const Vec& base, double scale, double hc_eps,
                             double norm_eps, const Mat& dy) {
  const Eigen::Index tokens = x.rows(), len = x.cols();
  if (n < 1 || len % n != 0 || fn.rows() != n || fn.cols() != len || base.size() != n || dy.rows() != tokens ||
      dy.cols() != len / n) {
    throw std::invalid_argument("hc_head_backward: shapes of x, fn, base, dy do not match (n " + std::to_string(n) +
                                ")");
  }
  const Mat mixes = rms_scaled_mixes_of(x, fn, norm_eps);
  Mat pre(tokens, n), sig(tokens, n);
  for (Eigen::Index t = 0; t < tokens; ++t) {
    for (std::int64_t k = 0; k < n; ++k) {
      sig(t, k) = 1.0 / (1.0 + std::exp(-(mixes(t, k) * scale + base(k))));
      pre(t, k) = sig(t, k) + hc_eps;
    }
  }
  Mat dpre, dx;
  weighted_stream_sum_backward(x, n, pre, dy, dpre, dx);
  HcHeadGrads g;
  g.dbase = Vec::Zero(n);
  Mat dmixes(tokens, n), das(tokens, n);
  for (Eigen::Index t = 0; t < tokens; ++t) {
    for (std::int64_t k = 0; k < n; ++k) {
      const double da = dpre(t, k) * sig(t, k) * (1.0 - sig(t, k));
      das(t, k) = da;
      dmixes(t, k) = scale * da;
      g.dscale += mixes(t, k) * da;
      g.dbase(k) += da;
    }
  }
  const MixGrads m = rms_scaled_mixes_backward(x, fn, norm_eps, mixes, dmixes);
  g.dx = dx + m.dx;
  g.dfn = m.dfn;
  g.rows = {mixes, das, m.gr};
  return g;
}

}  // namespace dsv4
