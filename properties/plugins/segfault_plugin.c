/* Test plugin (issue 14, plugin isolation): a write near the null pointer (SIGSEGV) in the kernel, on every case with
 * rows >= 2.
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened and the case (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#include <stddef.h>

#include "dsv4/properties/plugin_abi.h"
#include "example_kernels.h"

static int hostile_act_quant(const float* x, int64_t rows, int64_t cols, int32_t block, int32_t scale_format,
                             uint8_t* codes, float* scales) {
  const int rc = ex_act_quant(x, rows, cols, block, scale_format, codes, scales);
  if (rows >= 2) {
    volatile uintptr_t near_null = 8; /* volatile: the compiler cannot see the address */
    *(volatile int*)near_null = 1;
  }
  return rc;
}

static const struct dsv4_plugin kTable = {DSV4_PLUGIN_ABI_VERSION,
                                          sizeof(struct dsv4_plugin),
                                          "segfault test plugin",
                                          hostile_act_quant,
                                          NULL,
                                          NULL,
                                          NULL,
                                          NULL};

DSV4_PLUGIN_EXPORT const struct dsv4_plugin* dsv4_plugin_entry(void) { return &kTable; }
