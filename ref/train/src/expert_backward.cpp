// Backward of one MoE expert with the SwiGLU clamp (spec 03 §3.2; spec 06 §6.7, §6.12).
#include "dsv4/train/expert_backward.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

namespace {

std::string shape(const Mat& m) { return "[" + std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "]"; }

// spec 06 §6.12: whether the clamp passes the gradient of v (the interval [lo, hi]; lo = −inf for
// the gate's one-sided cap).
bool passes(double v, double lo, double hi, ClampBoundary b) {
  return b == ClampBoundary::kClosed ? (v >= lo && v <= hi) : (v > lo && v < hi);
}

}  // namespace

ExpertGrads expert_backward(const Mat& x, const Vec* route_weight, const Mat& w1, const Mat& w3, const Mat& w2,
                            double limit, const Mat& dy, ClampBoundary boundary) {
  const Eigen::Index rows = x.rows(), d = x.cols(), de = w1.rows();
  if (w1.cols() != d || w3.rows() != de || w3.cols() != d || w2.rows() != d || w2.cols() != de || dy.rows() != rows ||
      dy.cols() != d || (route_weight != nullptr && route_weight->size() != rows)) {
    throw std::invalid_argument("expert_backward: x " + shape(x) + ", w1 " + shape(w1) + ", w3 " + shape(w3) + ", w2 " +
                                shape(w2) + ", dy " + shape(dy) + " do not match");
  }
  const Precision exact(Mode::kExact);
  const Mat g = exact.matmul_nt(x, w1), u = exact.matmul_nt(x, w3);
  const bool clamp = limit > 0;
  const double inf = INFINITY;
  Mat h(rows, de), a(rows, de), s(rows, de), uc(rows, de), sig(rows, de), gc(rows, de);
  for (Eigen::Index t = 0; t < rows; ++t) {
    for (Eigen::Index i = 0; i < de; ++i) {
      gc(t, i) = clamp ? std::min(g(t, i), limit) : g(t, i);
      uc(t, i) = clamp ? std::min(std::max(u(t, i), -limit), limit) : u(t, i);
      sig(t, i) = 1.0 / (1.0 + std::exp(-gc(t, i)));
      s(t, i) = gc(t, i) / (1.0 + std::exp(-gc(t, i)));  // silu as the exact-mode forward computes it
      a(t, i) = s(t, i) * uc(t, i);
      h(t, i) = route_weight != nullptr ? (*route_weight)(t)*a(t, i) : a(t, i);
    }
  }
  ExpertGrads r;
  const Mat dy_t = dy.transpose();
  r.dw2 = exact.matmul_nn(dy_t, h);
  const Mat dh = exact.matmul_nn(dy, w2);
  Mat dg(rows, de), du(rows, de);
  if (route_weight != nullptr) r.droute_weight = Vec::Zero(rows);
  for (Eigen::Index t = 0; t < rows; ++t) {
    for (Eigen::Index i = 0; i < de; ++i) {
      double da = dh(t, i);
      if (route_weight != nullptr) {
        r.droute_weight(t) += dh(t, i) * a(t, i);
        da = (*route_weight)(t)*dh(t, i);
      }
      const bool g_passes = !clamp || passes(g(t, i), -inf, limit, boundary);
      const bool u_passes = !clamp || passes(u(t, i), -limit, limit, boundary);
      const double dsilu = sig(t, i) * (1.0 + gc(t, i) * (1.0 - sig(t, i)));
      dg(t, i) = g_passes ? da * uc(t, i) * dsilu : 0.0;
      du(t, i) = u_passes ? da * s(t, i) : 0.0;
    }
  }
  r.dx = exact.matmul_nn(dg, w1) + exact.matmul_nn(du, w3);
  const Mat dg_t = dg.transpose(), du_t = du.transpose();
  r.dw1 = exact.matmul_nn(dg_t, x);
  r.dw3 = exact.matmul_nn(du_t, x);
  return r;
}

}  // namespace dsv4
