/* Test plugin (issue 14, plugin isolation): an endless loop in the kernel, on every case.
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#define HOSTILE_PLUGIN_NAME "loop"
#include "hostile_plugin.h"

static void hostile_fault(const struct hostile_call* call) {
  volatile int spin = 1;
  (void)call;
  while (spin) {
  }
}
