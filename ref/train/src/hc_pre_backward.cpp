// Backward of mHC's hc_pre (spec 04 §4.2, §4.8; spec 06 §6.12).
#include "dsv4/train/hc_pre_backward.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

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
  const std::int64_t d = len / n;
  const Precision exact(Mode::kExact);
  // the forward's mixes μ = (W v)·r and gates pre
  Mat mixes = exact.matmul_nt(x, fn);
  std::vector<double> r(static_cast<std::size_t>(tokens));
  Mat dpre(tokens, n);
  Mat dx = Mat::Zero(tokens, len);
  for (Eigen::Index t = 0; t < tokens; ++t) {
    double sum = 0;
    for (Eigen::Index i = 0; i < len; ++i) sum += x(t, i) * x(t, i);
    r[static_cast<std::size_t>(t)] = 1.0 / std::sqrt(sum / static_cast<double>(len) + norm_eps);
    for (std::int64_t m = 0; m < count; ++m) mixes(t, m) *= r[static_cast<std::size_t>(t)];
    // y = Σ_k pre_k X_k: dpre_k = ⟨dy, X_k⟩, dX_k = pre_k dy
    for (std::int64_t k = 0; k < n; ++k) {
      const double pre = 1.0 / (1.0 + std::exp(-(mixes(t, k) * scale(0) + base(k)))) + hc_eps;
      double dot = 0;
      for (std::int64_t delta = 0; delta < d; ++delta) {
        dot += dy(t, delta) * x(t, k * d + delta);
        dx(t, k * d + delta) = pre * dy(t, delta);
      }
      dpre(t, k) = dot;
    }
  }
  // the gates and the Sinkhorn
  const HcSplitSinkhornGrads s = hc_split_sinkhorn_backward(mixes, n, scale, base, iters, hc_eps, dpre, dpost, dcomb);
  const Mat g = s.dmixes + dmixes;
  // μ = r·(W v)
  Mat gr(tokens, count);
  for (Eigen::Index t = 0; t < tokens; ++t) {
    for (std::int64_t m = 0; m < count; ++m) gr(t, m) = g(t, m) * r[static_cast<std::size_t>(t)];
  }
  const Mat gr_t = gr.transpose();
  HcPreGrads out{dx + exact.matmul_nn(gr, fn), exact.matmul_nn(gr_t, x), s.dbase, s.dscale};
  for (Eigen::Index t = 0; t < tokens; ++t) {
    double dot = 0;
    for (std::int64_t m = 0; m < count; ++m) dot += g(t, m) * mixes(t, m);
    const double rt = r[static_cast<std::size_t>(t)];
    const double c = rt * rt / static_cast<double>(len) * dot;
    for (Eigen::Index i = 0; i < len; ++i) out.dx(t, i) -= c * x(t, i);
  }
  return out;
}

}  // namespace dsv4
