// Double-FMA peak microbenchmark, 256-bit: 12 independent FMA chains of 4 doubles (enough to
// cover FMA latency × pipes on current x86 cores). Compiled with -mavx2 -mfma; no library
// headers, so nothing compiled with those flags leaks into shared inline functions.
#include <immintrin.h>

namespace dsv4::bench {

// 2 · 4 · 12 = 96 flops per iteration. Returns a value depending on every chain.
double fma_peak_avx2(long iters, double seed) {
  constexpr int kChains = 12;
  __m256d acc[kChains];
  const __m256d m = _mm256_set1_pd(0.999999999);
  const __m256d a = _mm256_set1_pd(1e-9 * seed);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_pd(seed + c);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_pd(acc[c], m, a);
  }
  __m256d s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_pd(s, acc[c]);
  double out[4];
  _mm256_storeu_pd(out, s);
  return out[0] + out[1] + out[2] + out[3];
}

}  // namespace dsv4::bench
