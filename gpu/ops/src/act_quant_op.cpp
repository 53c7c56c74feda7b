// Registration of act_quant (spec 01 §1.4): fp8 e4m3 codes, block scales and the in-place
// quant→dequant output of bf16 activations, blocks of 32/64/128 along each row, fp32 or ue8m0 scales.
#include <span>

#include "dsv4/gpu/quant.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// The op's calling convention on flat arrays, over one backend's (quant, inplace) functions:
// ints {block, scale format (0 fp32, 1 ue8m0)}, input x [rows, cols] → codes [rows, cols] (u8),
// scales [rows, cols/block] (fp32 values), dequant [rows, cols] (bf16(fp32(code) × scale)).
template <class Quant, class Inplace>
Fn act_quant_fn(Quant quant, Inplace inplace) {
  return [quant, inplace](const Call& c) {
    const int block = static_cast<int>(c.ints.at(0));
    const ScaleFormat fmt = c.ints.at(1) == 1 ? ScaleFormat::kUE8M0 : ScaleFormat::kFP32;
    const Array& x = c.inputs.at(0);
    const Fp8Blocks q = quant(x.f32, x.cols, block, fmt);
    std::vector<float> y = x.f32;
    inplace(y, x.cols, block, fmt);
    return Outputs{Array::bytes("codes", x.rows, x.cols, q.values),
                   Array::floats("scales", x.rows, x.cols / block, q.scales),
                   Array::floats("dequant", x.rows, x.cols, std::move(y))};
  };
}

std::vector<Case> act_quant_cases(std::uint64_t seed) {
  std::vector<Case> cases;
  std::uint64_t k = 0;
  for (const int block : {128, 64, 32}) {
    for (const int fmt : {1, 0}) {
      for (const Shape& sh : quant_shapes()) {
        ++k;
        if (sh.cols % block != 0) continue;
        Case c;
        c.label = shape_label(sh) + " block " + std::to_string(block) + (fmt == 1 ? " ue8m0" : " fp32");
        c.call.ints = {block, fmt};
        c.call.inputs = {Array::floats("x", sh.rows, sh.cols, edge_activations(sh.rows, sh.cols, seed * 1000 + k))};
        cases.push_back(std::move(c));
      }
    }
  }
  return cases;
}

}  // namespace

Op act_quant_op() {
  return registration(
      "act_quant", "spec 01 §1.4", "fp8 e4m3 block quantiser: codes, fp32/ue8m0 scales, in-place quant-dequant",
      {"block", "scale_format"}, {},
      act_quant_fn([](const std::vector<float>& x, std::int64_t cols, int block,
                      ScaleFormat fmt) { return act_quant(std::span<const float>(x), cols, block, fmt); },
                   [](std::vector<float>& y, std::int64_t cols, int block, ScaleFormat fmt) {
                     act_quant_inplace(std::span<float>(y), cols, block, fmt);
                   }),
      DSV4_OPS_DEVICE(act_quant_fn([](const std::vector<float>& x, std::int64_t cols, int block,
                                      ScaleFormat fmt) { return gpu::act_quant(x, cols, block, fmt); },
                                   [](std::vector<float>& y, std::int64_t cols, int block, ScaleFormat fmt) {
                                     gpu::act_quant_inplace(y, cols, block, fmt);
                                   })),
      act_quant_cases);
}

}  // namespace dsv4::ops::detail
