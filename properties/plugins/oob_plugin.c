/* Test plugin (issue 14, plugin isolation): an off-by-one write, one scale past the end of the scales array, on
 * every case with rows >= 2.
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened and the case (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#define HOSTILE_PLUGIN_NAME "oob"
#include "hostile_plugin.h"

static void hostile_fault(const struct hostile_call* call) {
  if (call->rows >= 2) call->scales[call->rows * (call->cols / call->block)] = 1.0f;
}
