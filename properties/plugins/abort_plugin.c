/* Test plugin (issue 14, plugin isolation): abort() (SIGABRT) in the kernel, on every case with rows >= 2.
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened and the case (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#include <stdlib.h>

#define HOSTILE_PLUGIN_NAME "abort"
#include "hostile_plugin.h"

static void hostile_fault(const struct hostile_call* call) {
  if (call->rows >= 2) abort();
}
