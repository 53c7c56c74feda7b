// Registration of fp4_act_quant (spec 01 §1.5): packed e2m1 codes, e8m0 block scales (blocks of
// 32 along each row) and the in-place quant→dequant output of bf16 activations.
#include <span>

#include "dsv4/gpu/quant.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// input x [rows, cols] (cols % 32 == 0) → packed [rows, cols/2] (element 2j in the low nibble),
// scales [rows, cols/32] (e8m0 bytes), dequant [rows, cols].
template <class Quant, class Inplace>
Fn fp4_act_quant_fn(Quant quant, Inplace inplace) {
  return [quant, inplace](const Call& c) {
    const Array& x = c.inputs.at(0);
    const Fp4Blocks q = quant(x.f32, x.cols);
    std::vector<float> y = x.f32;
    inplace(y, x.cols);
    return Outputs{Array::bytes("packed", x.rows, x.cols / 2, q.packed),
                   Array::bytes("scales", x.rows, x.cols / 32, q.scales),
                   Array::floats("dequant", x.rows, x.cols, std::move(y))};
  };
}

std::vector<Case> fp4_act_quant_cases(std::uint64_t seed) {
  return cases_of(quant_shapes(), [&](const Shape& sh, std::uint64_t k) {
    Case c;
    c.label = shape_label(sh);
    c.call.inputs = {Array::floats("x", sh.rows, sh.cols, edge_activations(sh.rows, sh.cols, seed * 1000 + 500 + k))};
    return c;
  });
}

}  // namespace

Op fp4_act_quant_op() {
  return registration(
      "fp4_act_quant", "spec 01 §1.5",
      "fp4 e2m1 block quantiser (block 32): packed codes, e8m0 scales, in-place quant-dequant", {}, {},
      fp4_act_quant_fn(
          [](const std::vector<float>& x, std::int64_t cols) { return fp4_act_quant(std::span<const float>(x), cols); },
          [](std::vector<float>& y, std::int64_t cols) { fp4_act_quant_inplace(std::span<float>(y), cols); }),
      DSV4_OPS_DEVICE(
          fp4_act_quant_fn([](const std::vector<float>& x, std::int64_t cols) { return gpu::fp4_act_quant(x, cols); },
                           [](std::vector<float>& y, std::int64_t cols) { gpu::fp4_act_quant_inplace(y, cols); })),
      fp4_act_quant_cases);
}

}  // namespace dsv4::ops::detail
