// The named in-place quantisers (spec 01 §1.4, §1.5; bf16 rounding §1.2) behind `dsv4 quant` and
// the property suites.
#include <span>
#include <string>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "quant_internal.hpp"

namespace dsv4 {

namespace {

template <int Block, ScaleFormat Fmt>
void apply_act_quant(std::span<float> x, std::int64_t cols) {
  act_quant_inplace(x, cols, Block, Fmt);
}

void apply_fp4_act_quant(std::span<float> x, std::int64_t cols) { fp4_act_quant_inplace(x, cols); }

// spec 01 §1.2: fp32 → bf16 round to nearest, ties to even (element-wise; rows only validated).
void apply_bf16(std::span<float> x, std::int64_t cols) {
  quant_detail::checked_rows("bf16", x.size(), cols, 1);
  for (float& v : x) v = round_bf16(v);
}

}  // namespace

const std::vector<QuantKind>& quant_kinds() {
  static const std::vector<QuantKind> kinds = {
      {"fp8-act-128", "act_quant block 128, fp32 scale fl32(amax*fl32(1/448)), in place (spec 01 §1.4)", 128,
       &apply_act_quant<128, ScaleFormat::kFP32>},
      {"fp8-act-128-ue8m0", "act_quant block 128, power-of-two (ue8m0) scale, in place (spec 01 §1.4)", 128,
       &apply_act_quant<128, ScaleFormat::kUE8M0>},
      {"fp8-act-64", "act_quant block 64, fp32 scale, in place (spec 01 §1.4)", 64,
       &apply_act_quant<64, ScaleFormat::kFP32>},
      {"fp8-act-64-ue8m0", "act_quant block 64, power-of-two (ue8m0) scale, in place: the KV QAT (spec 01 §1.4)", 64,
       &apply_act_quant<64, ScaleFormat::kUE8M0>},
      {"fp4-act-32", "fp4_act_quant block 32, power-of-two (ue8m0) scale, in place: the indexer QAT (spec 01 §1.5)", 32,
       &apply_fp4_act_quant},
      {"bf16", "round to bf16, nearest even (spec 01 §1.2)", 1, &apply_bf16},
  };
  return kinds;
}

const QuantKind* find_quant_kind(const std::string& name) {
  for (const QuantKind& k : quant_kinds()) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

}  // namespace dsv4
