// Private to dsv4_properties: one RapidCheck property per plugin component, and the tolerance rule
// they share (properties/README.md §Foreign kernels).
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "dsv4/model/precision.hpp"
#include "dsv4/properties/plugin.hpp"

namespace dsv4::props::plugin_detail {

// Each calls the plugin through Plugin (its own process, plugin.hpp).
rc::detail::Property act_quant_property(Plugin& host);
rc::detail::Property fp4_act_quant_property(Plugin& host);
rc::detail::Property hc_split_sinkhorn_property(Plugin& host);
rc::detail::Property sparse_attention_property(Plugin& host);
rc::detail::Property compressor_prefill_property(Plugin& host);

// The FlashAttention-style rule for float outputs: every element i must satisfy
//   |cand_i − exact_i| ≤ k · max_j |official_j − exact_j| + floor(i)
// (cand non-NaN, finite where exact is). Returns "" when it holds, else one line naming the worst
// element (largest |cand − exact| / allowed) through where(i) and its numbers.
struct ToleranceRule {
  double k = 2.0;
  std::function<double(std::int64_t i)> floor;
  std::function<std::string(std::int64_t i)> where;
};
std::string fa_rule_violation(const std::string& what, std::span<const float> cand, const Mat& official,
                              const Mat& exact, const ToleranceRule& rule);

// The spacing of the bf16 / fp32 grid at |x| (normal range; the subnormal spacing below it).
double ulp_bf16(double x);
double ulp_fp32(double x);

// "%.9g" of a double.
std::string num(double x);

}  // namespace dsv4::props::plugin_detail
