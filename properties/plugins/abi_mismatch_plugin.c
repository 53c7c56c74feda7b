/* Test plugin: a table claiming ABI version 999, which dsv4 must refuse (exit 2) before calling
 * anything. */
#include <stddef.h>

#include "dsv4/properties/plugin_abi.h"

static const struct dsv4_plugin kTable = {999u, sizeof(struct dsv4_plugin), "abi mismatch", NULL, NULL, NULL, NULL,
                                          NULL};

DSV4_PLUGIN_EXPORT const struct dsv4_plugin* dsv4_plugin_entry(void) { return &kTable; }
