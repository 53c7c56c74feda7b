// Double-FMA peak microbenchmark, 512-bit: 24 independent FMA chains of 8 doubles. Compiled
// with -mavx512f -mfma; no library headers (see fma_peak_avx2.cpp).
#include <immintrin.h>

namespace dsv4::bench {

// 2 · 8 · 24 = 384 flops per iteration.
double fma_peak_avx512(long iters, double seed) {
  constexpr int kChains = 24;
  __m512d acc[kChains];
  const __m512d m = _mm512_set1_pd(0.999999999);
  const __m512d a = _mm512_set1_pd(1e-9 * seed);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_pd(seed + c);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 24
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_pd(acc[c], m, a);
  }
  __m512d s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_pd(s, acc[c]);
  double out[8];
  _mm512_storeu_pd(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

}  // namespace dsv4::bench
