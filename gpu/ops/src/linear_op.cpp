// Registration of linear (spec 01 §1.6; spec 06 §6.8, §6.12): y = x Wᵀ with a bf16 weight, or with
// the MXFP4 QAT simulation of an fp32 master weight; its backward with the straight-through
// estimator.
#include <string>

#include "dsv4/model/linear.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/linear_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {weight_quant: 0 none (a bf16 weight), 1 MXFP4 QAT (spec 06 §6.8: the fp32 master weight
// quantised to FP4 1×32 blocks with power-of-two scales and dequantised, fp4_qat_weight)};
// inputs x [rows, K] (per row, bf16 values), weight [N, K] (shared) → y [rows, N].
Mat effective_weight(const Call& c) {
  const Mat w = to_mat(c.inputs.at(1));
  return c.ints.at(0) != 0 ? fp4_qat_weight(w) : w;
}

// Official mode: the bf16 F.linear of spec 01 §1.6 (C1 per element, bf16 out) on the effective
// weight (every FP4 value is a bf16 value).
Outputs reference(const Call& c) {
  const Array& x = c.inputs.at(0);
  const Mat y = linear(Precision(Mode::kOfficial), to_mat(x), LinearWeight::bf16_from(effective_weight(c)));
  return {Array::floats("y", x.rows, y.cols(), to_floats(y))};
}

Array weight(std::int64_t n, std::int64_t k, std::uint64_t seed, bool bf16) {
  Array w = Array::floats(
      "weight", n, k,
      bf16 ? bf16_normals(n * k, 0.1, seed, "ops.linear.weight") : normals(n * k, 0.1, seed, "ops.linear.weight"));
  w.per_row = false;
  return w;
}

std::vector<Case> linear_cases(std::uint64_t seed) {
  struct Spec {
    std::int64_t rows, k, n, quant;
  };
  std::vector<Case> cases;
  std::uint64_t s = 0;
  for (const Spec sp : std::vector<Spec>{{64, 128, 16, 0}, {1, 512, 8, 0}, {17, 96, 33, 0}, {9, 256, 12, 1}}) {
    ++s;
    Case c;
    c.label = shape_label({sp.rows, sp.k}) + " · " + shape_label({sp.n, sp.k}) + "ᵀ " +
              (sp.quant != 0 ? "MXFP4 QAT weight" : "bf16 weight");
    c.call.ints = {sp.quant};
    c.call.inputs = {
        Array::floats("x", sp.rows, sp.k, bf16_normals(sp.rows * sp.k, 1.0, seed * 1000 + 100 + s, "ops.linear.x")),
        weight(sp.n, sp.k, seed * 1000 + 150 + s, sp.quant == 0)};
    cases.push_back(std::move(c));
  }
  return cases;
}

// The backward (spec 06 §6.12, ref/train linear_backward): dx and d(weight). For the QAT weight the
// straight-through estimator: the gradient check differentiates the surrogate Q(W0) + (W − W0) at
// W = W0 (spec 06 §6.12), whose derivative in W is the STE's identity; Q itself is piecewise
// constant. Bilinear: no kinks.
GradientForms linear_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1};
  g.forward_exact = [](const Call& c) {
    return Doubles{
        flat(linear(Precision(Mode::kExact), to_mat(c.inputs.at(0)), LinearWeight::fp32_from(effective_weight(c))))};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& w0 = c.inputs.at(1);
    const Mat q = effective_weight(c);
    std::vector<Mp50> w(x.at(1).size());
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = Mp50(q.data()[i]) + (x.at(1)[i] - Mp50(w0.f32[i]));
    return Mp50s{linear_exact(x.at(0), c.inputs.at(0).rows, c.inputs.at(0).cols, w, w0.rows)};
  };
  g.backward = [](const Call& c) {
    const LinearGrads r = linear_backward(to_mat(c.inputs.at(0)), effective_weight(c), to_mat(c.inputs.at(2)));
    return Doubles{flat(r.dx), flat(r.dweight)};
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      std::int64_t rows, k, n, quant;
      const char* what;
    };
    std::vector<Case> cases;
    std::uint64_t s = 0;
    for (const Spec sp : std::vector<Spec>{{3, 16, 5, 0, "bf16 weight (bilinear: no kinks)"},
                                           {2, 32, 4, 1, "MXFP4 QAT weight, straight-through (no kinks)"}}) {
      ++s;
      Case c;
      c.label = shape_label({sp.rows, sp.k}) + " · " + shape_label({sp.n, sp.k}) + "ᵀ " + sp.what;
      c.call.ints = {sp.quant};
      Array w = Array::floats("weight", sp.n, sp.k, normals(sp.n * sp.k, 0.5, seed * 100 + s, "grad.linear.w"));
      w.per_row = false;
      c.call.inputs = {
          Array::floats("x", sp.rows, sp.k, normals(sp.rows * sp.k, 1.0, seed * 100 + s, "grad.linear.x")),
          std::move(w),
          Array::floats("dy", sp.rows, sp.n, normals(sp.rows * sp.n, 1.0, seed * 100 + s, "grad.linear.dy"))};
      cases.push_back(std::move(c));
    }
    return cases;
  };
  return g;
}

}  // namespace

Op linear_op() {
  return registration(
      "linear", "spec 01 §1.6",
      "linear: bf16(C1 Σ x·W) per output, W a bf16 weight or the MXFP4 QAT value of an fp32 master weight",
      {"weight_quant"}, {}, reference, Fn(), linear_cases, linear_gradient());
}

}  // namespace dsv4::ops::detail
