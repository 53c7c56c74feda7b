// Backward of mHC's hc_pre (spec 04 §4.2, §4.8; spec 06 §6.12).
#include "dsv4/train/hc_pre_backward.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

namespace {

// r = (‖v‖²/(n·d) + ε_n)^(−1/2) of every token.
std::vector<double> rms_factors(const Mat& x, double norm_eps) {
  std::vector<double> r(static_cast<std::size_t>(x.rows()));
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    double sum = 0;
    for (Eigen::Index i = 0; i < x.cols(); ++i) sum += x(t, i) * x(t, i);
    r[static_cast<std::size_t>(t)] = 1.0 / std::sqrt(sum / static_cast<double>(x.cols()) + norm_eps);
  }
  return r;
}

}  // namespace

Mat rms_scaled_mixes_of(const Mat& x, const Mat& fn, double norm_eps) {
  Mat mixes = Precision(Mode::kExact).matmul_nt(x, fn);
  const std::vector<double> r = rms_factors(x, norm_eps);
  for (Eigen::Index t = 0; t < x.rows(); ++t) mixes.row(t) *= r[static_cast<std::size_t>(t)];
  return mixes;
}

MixGrads rms_scaled_mixes_backward(const Mat& x, const Mat& fn, double norm_eps, const Mat& mixes, const Mat& dmixes) {
  const Eigen::Index tokens = x.rows(), len = x.cols(), count = fn.rows();
  const std::vector<double> r = rms_factors(x, norm_eps);
  Mat gr(tokens, count);
  for (Eigen::Index t = 0; t < tokens; ++t) {
    for (Eigen::Index m = 0; m < count; ++m) gr(t, m) = dmixes(t, m) * r[static_cast<std::size_t>(t)];
  }
  const Precision exact(Mode::kExact);
  const Mat gr_t = gr.transpose();
  MixGrads out{exact.matmul_nn(gr, fn), exact.matmul_nn(gr_t, x), gr};
  for (Eigen::Index t = 0; t < tokens; ++t) {
    double dot = 0;
    for (Eigen::Index m = 0; m < count; ++m) dot += dmixes(t, m) * mixes(t, m);
    const double rt = r[static_cast<std::size_t>(t)];
    const double c = rt * rt / static_cast<double>(len) * dot;
    for (Eigen::Index i = 0; i < len; ++i) out.dx(t, i) -= c * x(t, i);
  }
  return out;
}

void weighted_stream_sum_backward(const Mat& x, std::int64_t n, const Mat& pre, const Mat& dy, Mat& dpre, Mat& dx) {
  const Eigen::Index tokens = x.rows();
  const std::int64_t d = x.cols() / n;
  dpre.resize(tokens, n);
  dx.resize(tokens, x.cols());
  for (Eigen::Index t = 0; t < tokens; ++t) {
    for (std::int64_t k = 0; k < n; ++k) {
      double dot = 0;
      for (std::int64_t delta = 0; delta < d; ++delta) {
        dot += dy(t, delta) * x(t, k * d + delta);
        dx(t, k * d + delta) = pre(t, k) * dy(t, delta);
      }
      dpre(t, k) = dot;
    }
  }
}

HcPreGrads hc_pre_backward(const Mat& x, std::int64_t n, const Mat& fn, const Vec& base, const Vec& scale,
                           std::int64_t iters, double hc_eps, double norm_eps, const Mat& dy, const Mat& dpost,
                           const Mat& dcomb, const Mat& dmixes) {
  const Eigen::Index tokens = x.rows(), len = x.cols();
  const std::int64_t count = (2 + n) * n;
  if (n < 1 || len % n != 0 || fn.rows() != count || fn.cols() != len || dy.rows() != tokens || dy.cols() != len / n ||
      dmixes.rows() != tokens || dmixes.cols() != count) {
    throw std::invalid_argument("hc_pre_backward: shapes of x, fn, dy, dmixes do not match (n " + std::to_string(n) +
                                ")");
  }
  const Mat mixes = rms_scaled_mixes_of(x, fn, norm_eps);
  Mat pre(tokens, n);
  for (Eigen::Index t = 0; t < tokens; ++t) {
    for (std::int64_t k = 0; k < n; ++k)
      pre(t, k) = 1.0 / (1.0 + std::exp(-(mixes(t, k) * scale(0) + base(k)))) + hc_eps;
  }
  Mat dpre, dx;
  weighted_stream_sum_backward(x, n, pre, dy, dpre, dx);
  const HcSplitSinkhornGrads s = hc_split_sinkhorn_backward(mixes, n, scale, base, iters, hc_eps, dpre, dpost, dcomb);
  const MixGrads m = rms_scaled_mixes_backward(x, fn, norm_eps, mixes, s.dmixes + dmixes);
  return {dx + m.dx, m.dfn, s.dbase, s.dscale, {mixes, s.da, m.gr}};
}

}  // namespace dsv4
