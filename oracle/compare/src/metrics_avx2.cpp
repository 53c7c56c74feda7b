// AVX2 build of the metrics kernel (metrics_kernel.hpp); called only when the CPU reports AVX2.
// `#pragma GCC target` instead of a per-file compile flag; no FMA is enabled (and -ffp-contract=off
// forbids contraction anyway), so every operation is the same IEEE operation as in the portable build.
#pragma GCC target("avx2")
#include "metrics_kernel.hpp"

#define DSV4_METRICS_W 4
#define DSV4_METRICS_ENTRY avx2_kernel
#include "metrics_kernel_body.inc"
