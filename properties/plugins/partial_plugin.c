/* Test plugin: provides act_quant only (the example's); the other components are NULL, so dsv4
 * must answer "does not provide" (exit 2) for them. */
#include <stddef.h>

#include "dsv4/properties/plugin_abi.h"
#include "example_kernels.h"

static const struct dsv4_plugin kTable = {
    DSV4_PLUGIN_ABI_VERSION, sizeof(struct dsv4_plugin), "act_quant only", ex_act_quant, NULL, NULL, NULL, NULL};

DSV4_PLUGIN_EXPORT const struct dsv4_plugin* dsv4_plugin_entry(void) { return &kTable; }
