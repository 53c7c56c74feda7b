/* Test plugin (issue 14, plugin isolation): an allocation of 1 GiB used without a NULL check, on every case with
 * rows >= 2: under a --memory-mb limit below that, malloc fails (ENOMEM) and the write faults.
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#include <stdlib.h>

#define HOSTILE_PLUGIN_NAME "memory"
#include "hostile_plugin.h"

static void hostile_fault(const struct hostile_call* call) {
  if (call->rows >= 2) {
    volatile char* big = (volatile char*)malloc((size_t)1 << 30);
    for (size_t i = 0; i < ((size_t)1 << 30); i += 4096) big[i] = 1;
    free((void*)big);
  }
}
