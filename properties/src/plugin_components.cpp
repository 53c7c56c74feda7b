// The components of plugin ABI version 1 (plugin_abi.h): one registration each — its name (the op
// registry's stem where the op is registered there), what is compared, its table slot and the
// property that fuzzes it (plugin_detail.hpp; properties/README.md §Foreign kernels). `dsv4 fuzz
// --list`, Plugin::provides and fuzz_plugin all read this one list.
#include "dsv4/properties/plugin.hpp"
#include "plugin_detail.hpp"

namespace dsv4::props {

const std::vector<PluginComponent>& plugin_components() {
  using namespace plugin_detail;
  static const std::vector<PluginComponent> list = {
      {"act_quant", "FP8 act_quant (block 32/64/128, fp32 and ue8m0 scales): codes and scales bit for bit",
       [](const dsv4_plugin& t) { return t.act_quant != nullptr; }, act_quant_property},
      {"fp4_act_quant", "FP4 fp4_act_quant (block 32): packed codes and e8m0 scales bit for bit",
       [](const dsv4_plugin& t) { return t.fp4_act_quant != nullptr; }, fp4_act_quant_property},
      {"hc_split_sinkhorn",
       "mHC pre/post/comb: |cand - exact| <= 2 max|official - exact| + a first-order fp32 error bound",
       [](const dsv4_plugin& t) { return t.hc_split_sinkhorn != nullptr; }, hc_split_sinkhorn_property},
      {"sparse_attention",
       "sparse attention with sink: |cand - exact| <= 2 max|official - exact| + ulp_bf16(exact); certify model",
       [](const dsv4_plugin& t) { return t.sparse_attention != nullptr; }, sparse_attention_property},
      {"compressor_prefill",
       "KV compressor prefill (ratio 4/128, main/indexer): |cand - exact| <= 2 max|official - exact| + one output "
       "quantum",
       [](const dsv4_plugin& t) { return t.compressor_prefill != nullptr; }, compressor_prefill_property},
  };
  return list;
}

}  // namespace dsv4::props
