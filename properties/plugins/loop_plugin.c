/* Test plugin (issue 14, plugin isolation): an endless loop in the kernel, on every case.
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#include <stddef.h>

#include "dsv4/properties/plugin_abi.h"
#include "example_kernels.h"

static int hostile_act_quant(const float* x, int64_t rows, int64_t cols, int32_t block, int32_t scale_format,
                             uint8_t* codes, float* scales) {
  const int rc = ex_act_quant(x, rows, cols, block, scale_format, codes, scales);
  volatile int spin = 1;
  while (spin) {
  }
  return rc;
}

static const struct dsv4_plugin kTable = {
    DSV4_PLUGIN_ABI_VERSION, sizeof(struct dsv4_plugin), "loop test plugin", hostile_act_quant, NULL, NULL, NULL, NULL};

DSV4_PLUGIN_EXPORT const struct dsv4_plugin* dsv4_plugin_entry(void) { return &kTable; }
