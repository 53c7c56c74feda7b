// Portable build of the metrics kernel (metrics_kernel.hpp): the same source as the AVX2 and
// AVX-512 builds, compiled for the baseline target (the compiler lowers the 8-lane vectors to SSE2).
#include "metrics_kernel.hpp"

#define DSV4_METRICS_W 2
#define DSV4_METRICS_ENTRY portable_kernel
#include "metrics_kernel_body.inc"
