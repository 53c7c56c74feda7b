// Backward of one MoE expert with the SwiGLU clamp (spec 03 §3.2; spec 06 §6.7, §6.12).
#include "dsv4/train/expert_backward.hpp"

#include <stdexcept>
#include <string>

namespace dsv4 {

namespace {

std::string shape(const Mat& m) { return "[" + std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "]"; }

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
  Mat h(rows, de);
  for (Eigen::Index t = 0; t < rows; ++t) {
    const double* w = route_weight != nullptr ? &(*route_weight)(t) : nullptr;
    for (Eigen::Index i = 0; i < de; ++i) h(t, i) = clamped_swiglu_exact(g(t, i), u(t, i), w, limit);
  }
  ExpertGrads r;
  const Mat dy_t = dy.transpose();
  r.dw2 = exact.matmul_nn(dy_t, h);
  const Mat dh = exact.matmul_nn(dy, w2);
  Mat dg(rows, de), du(rows, de);
  if (route_weight != nullptr) r.droute_weight = Vec::Zero(rows);
  for (Eigen::Index t = 0; t < rows; ++t) {
    const double w = route_weight != nullptr ? (*route_weight)(t) : 1.0;
    for (Eigen::Index i = 0; i < de; ++i) {
      const SwigluElementGrads e = clamped_swiglu_backward(g(t, i), u(t, i), w, limit, dh(t, i), boundary);
      if (route_weight != nullptr) r.droute_weight(t) += e.dw;
      dg(t, i) = e.dg;
      du(t, i) = e.du;
    }
  }
  r.dx = exact.matmul_nn(dg, w1) + exact.matmul_nn(du, w3);
  const Mat dg_t = dg.transpose(), du_t = du.transpose();
  r.dw1 = exact.matmul_nn(dg_t, x);
  r.dw3 = exact.matmul_nn(du_t, x);
  r.h = h;
  r.dg = dg;
  r.du = du;
  return r;
}

}  // namespace dsv4
