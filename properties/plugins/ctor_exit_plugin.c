/* Test plugin (issue 14, plugin isolation): _exit(0) in a constructor (__attribute__((constructor))): the load
 * itself ends the process, before any case.
 * dsv4 fuzz must report a FAIL (exit 1) naming what happened (tests/cli_fuzz_test.cpp,
 * HostilePluginsFail). Provides act_quant only (the example's kernel). */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

__attribute__((constructor)) static void end_at_load(void) { _exit(0); }

#define HOSTILE_PLUGIN_NAME "ctor_exit"
#include "hostile_plugin.h"

static void hostile_fault(const struct hostile_call* call) { (void)call; /* the load already ended the process */ }
