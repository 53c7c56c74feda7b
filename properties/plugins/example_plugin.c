/* The example dsv4 plugin (properties/README.md §Foreign kernels): a correct implementation of
 * every ABI v1 component in plain C (example_kernels.c), exported through dsv4_plugin_entry.
 * `dsv4 fuzz --plugin dsv4_example_plugin.so --component NAME` passes for every component. */
#include "dsv4/properties/plugin_abi.h"
#include "example_kernels.h"

static const struct dsv4_plugin kTable = {
    DSV4_PLUGIN_ABI_VERSION,
    sizeof(struct dsv4_plugin),
    "dsv4 example plugin (plain C)",
    ex_act_quant,
    ex_fp4_act_quant,
    ex_hc_split_sinkhorn,
    ex_sparse_attention,
    ex_compressor_prefill,
};

DSV4_PLUGIN_EXPORT const struct dsv4_plugin* dsv4_plugin_entry(void) { return &kTable; }
