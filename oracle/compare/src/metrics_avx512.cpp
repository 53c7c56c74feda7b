// AVX-512 build of the metrics kernel (metrics_kernel.hpp); called only when the CPU reports
// AVX-512F. -ffp-contract=off forbids FMA contraction, so every operation is the same IEEE operation
// as in the portable build.
#pragma GCC target("avx512f")
#include "metrics_kernel.hpp"

#define DSV4_METRICS_W 8
#define DSV4_METRICS_ENTRY avx512_kernel
#include "metrics_kernel_body.inc"
