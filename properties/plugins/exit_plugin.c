/* Test plugin (issue 14, plugin isolation): _exit(0) in the kernel, on every case with rows >= 2 (in-process, this
 * ended `dsv4 fuzz` with exit status 0 and no verdict).
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#define HOSTILE_PLUGIN_NAME "exit"
#include "hostile_plugin.h"

static void hostile_fault(const struct hostile_call* call) {
  if (call->rows >= 2) _exit(0);
}
