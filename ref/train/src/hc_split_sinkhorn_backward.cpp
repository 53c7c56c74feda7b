// Backward of the mHC gates and the Sinkhorn normalisation (spec 04 §4.3, §4.8; spec 06 §6.12).
#include "dsv4/train/hc_split_sinkhorn_backward.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

namespace {

// One normalisation of the unrolled forward: its output and its normalisers (sum + ε per column or row).
struct Step {
  bool column;
  Mat y;
  std::vector<double> norm;
};

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

}  // namespace

HcSplitSinkhornGrads hc_split_sinkhorn_backward(const Mat& mixes, std::int64_t n, const Vec& scale, const Vec& base,
                                                std::int64_t iters, double eps, const Mat& dpre, const Mat& dpost,
                                                const Mat& dcomb) {
  const std::int64_t mcount = (2 + n) * n;
  const Eigen::Index tokens = mixes.rows();
  if (n < 1 || iters < 1 || !(eps >= 0) || mixes.cols() != mcount || scale.size() != 3 || base.size() != mcount ||
      dpre.rows() != tokens || dpre.cols() != n || dpost.rows() != tokens || dpost.cols() != n ||
      dcomb.rows() != tokens || dcomb.cols() != n * n) {
    throw std::invalid_argument("hc_split_sinkhorn_backward: shapes or parameters do not match (n " +
                                std::to_string(n) + ", iters " + std::to_string(iters) + ")");
  }
  HcSplitSinkhornGrads g{Mat::Zero(tokens, mcount), Vec::Zero(3), Vec::Zero(mcount), Mat::Zero(tokens, mcount)};
  std::vector<double> da(static_cast<std::size_t>(mcount));
  for (Eigen::Index t = 0; t < tokens; ++t) {
    const double* mu = mixes.row(t).data();
    // the gates: da = dgate · σ'(a)
    for (std::int64_t j = 0; j < n; ++j) {
      const double sp = sigmoid(mu[j] * scale(0) + base(j));
      const double sq = sigmoid(mu[n + j] * scale(1) + base(n + j));
      da[static_cast<std::size_t>(j)] = dpre(t, j) * sp * (1.0 - sp);
      da[static_cast<std::size_t>(n + j)] = dpost(t, j) * 2.0 * sq * (1.0 - sq);
    }
    // the Sinkhorn forward, every step kept: P = softmax_row(A), M = P + ε, then the normalisations
    Mat p(n, n);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t k = 0; k < n; ++k) p(j, k) = mu[2 * n + j * n + k] * scale(2) + base(2 * n + j * n + k);
      const double row_max = p.row(j).maxCoeff();
      double sum = 0;
      for (std::int64_t k = 0; k < n; ++k) sum += (p(j, k) = std::exp(p(j, k) - row_max));
      for (std::int64_t k = 0; k < n; ++k) p(j, k) = p(j, k) / sum;
    }
    std::vector<Step> steps;
    Mat m = p.array() + eps;
    const auto normalise = [&](bool column) {
      Step s{column, m, std::vector<double>(static_cast<std::size_t>(n))};
      for (std::int64_t a = 0; a < n; ++a) {
        double sum = 0;
        for (std::int64_t b = 0; b < n; ++b) sum += column ? m(b, a) : m(a, b);
        s.norm[static_cast<std::size_t>(a)] = sum + eps;
        for (std::int64_t b = 0; b < n; ++b)
          (column ? s.y(b, a) : s.y(a, b)) = (column ? m(b, a) : m(a, b)) / (sum + eps);
      }
      m = s.y;
      steps.push_back(std::move(s));
    };
    normalise(true);
    for (std::int64_t it = 1; it < iters; ++it) {
      normalise(false);
      normalise(true);
    }
    // backward through the steps in reverse
    Mat bar(n, n);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t k = 0; k < n; ++k) bar(j, k) = dcomb(t, j * n + k);
    }
    for (auto s = steps.rbegin(); s != steps.rend(); ++s) {
      Mat x_bar(n, n);
      for (std::int64_t a = 0; a < n; ++a) {
        double dot = 0;
        for (std::int64_t b = 0; b < n; ++b) dot += s->column ? bar(b, a) * s->y(b, a) : bar(a, b) * s->y(a, b);
        for (std::int64_t b = 0; b < n; ++b) {
          double& out = s->column ? x_bar(b, a) : x_bar(a, b);
          out = ((s->column ? bar(b, a) : bar(a, b)) - dot) / s->norm[static_cast<std::size_t>(a)];
        }
      }
      bar = x_bar;
    }
    // + ε: identity; the row softmax
    for (std::int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (std::int64_t k = 0; k < n; ++k) dot += bar(j, k) * p(j, k);
      for (std::int64_t k = 0; k < n; ++k)
        da[static_cast<std::size_t>(2 * n + j * n + k)] = p(j, k) * (bar(j, k) - dot);
    }
    // the affine maps a_m = μ_m α_G + b_m
    for (std::int64_t i = 0; i < mcount; ++i) {
      const Eigen::Index group = i < n ? 0 : (i < 2 * n ? 1 : 2);
      const double d = da[static_cast<std::size_t>(i)];
      g.da(t, i) = d;
      g.dmixes(t, i) = scale(group) * d;
      g.dscale(group) += mu[i] * d;
      g.dbase(i) += d;
    }
  }
  return g;
}

}  // namespace dsv4
