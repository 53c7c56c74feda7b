/* The frame shared by the hostile test plugins of the isolation tests (issue 14; tests/cli_fuzz_test.cpp,
 * HostilePluginsFail): each provides act_quant only — the example's kernel (example_kernels.h) followed by its own
 * fault — under the name HOSTILE_PLUGIN_NAME " test plugin". A plugin defines HOSTILE_PLUGIN_NAME, includes this
 * header once and defines hostile_fault, called after the example's kernel with the call. */
#ifndef DSV4_HOSTILE_PLUGIN_H
#define DSV4_HOSTILE_PLUGIN_H

#include <stddef.h>

#include "dsv4/properties/plugin_abi.h"
#include "example_kernels.h"

struct hostile_call {
  int64_t rows, cols;
  int32_t block;
  float* scales;
};
static void hostile_fault(const struct hostile_call* call);

static int hostile_act_quant(const float* x, int64_t rows, int64_t cols, int32_t block, int32_t scale_format,
                             uint8_t* codes, float* scales) {
  const int rc = ex_act_quant(x, rows, cols, block, scale_format, codes, scales);
  const struct hostile_call call = {rows, cols, block, scales};
  hostile_fault(&call);
  return rc;
}

static const struct dsv4_plugin kTable = {DSV4_PLUGIN_ABI_VERSION,
                                          sizeof(struct dsv4_plugin),
                                          HOSTILE_PLUGIN_NAME " test plugin",
                                          hostile_act_quant,
                                          NULL,
                                          NULL,
                                          NULL,
                                          NULL};

DSV4_PLUGIN_EXPORT const struct dsv4_plugin* dsv4_plugin_entry(void) { return &kTable; }

#endif
