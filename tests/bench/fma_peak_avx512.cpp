// Double-FMA peak microbenchmark, 512-bit: 24 independent FMA chains of 8 doubles, 384 flops per
// iteration (the loop: fma_peak_body.inc). Compiled with -mavx512f -mfma; no library headers (see
// fma_peak_avx2.cpp).
#include <immintrin.h>

#define DSV4_FMA_BITS 512
#define DSV4_FMA_CHAINS 24
#define DSV4_FMA_NAME fma_peak_avx512
#include "fma_peak_body.inc"
