/* Test plugin (issue 14, plugin isolation): a write near the null pointer (SIGSEGV) in the kernel, on every case with
 * rows >= 2.
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened and the case (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#define HOSTILE_PLUGIN_NAME "segfault"
#include "hostile_plugin.h"

static void hostile_fault(const struct hostile_call* call) {
  if (call->rows >= 2) {
    volatile uintptr_t near_null = 8; /* volatile: the compiler cannot see the address */
    *(volatile int*)near_null = 1;
  }
}
