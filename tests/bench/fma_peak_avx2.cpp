// Double-FMA peak microbenchmark, 256-bit: 12 independent FMA chains of 4 doubles, 96 flops per
// iteration (the loop: fma_peak_body.inc). Compiled with -mavx2 -mfma; no library headers, so
// nothing compiled with those flags leaks into shared inline functions.
#include <immintrin.h>

#define DSV4_FMA_BITS 256
#define DSV4_FMA_CHAINS 12
#define DSV4_FMA_NAME fma_peak_avx2
#include "fma_peak_body.inc"
