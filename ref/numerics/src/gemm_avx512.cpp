// AVX-512F microkernel of the deterministic GEMM (gemm.hpp, gemm_kernels.hpp): 8×24 tile,
// twenty-four 8-wide accumulators. _mm512_mul_pd then _mm512_add_pd — two roundings per term,
// never an FMA. Compiled with -mavx512f (ref/CMakeLists.txt); called only when the CPU reports
// AVX-512F.
#include <immintrin.h>

#include "gemm_kernels.hpp"

namespace dsv4::gemm_detail {
namespace {

constexpr int kMr = 8;
constexpr int kNr = 24;

void kernel_8x24(std::int64_t kc, const double* a, const double* b, double* c, std::int64_t ldc, bool first) {
  __m512d acc[kMr][3];
  if (first) {
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_pd();
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      acc[i][0] = _mm512_loadu_pd(c + i * ldc);
      acc[i][1] = _mm512_loadu_pd(c + i * ldc + 8);
      acc[i][2] = _mm512_loadu_pd(c + i * ldc + 16);
    }
  }
  for (std::int64_t k = 0; k < kc; ++k) {
    const __m512d b0 = _mm512_loadu_pd(b);
    const __m512d b1 = _mm512_loadu_pd(b + 8);
    const __m512d b2 = _mm512_loadu_pd(b + 16);
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      const __m512d ai = _mm512_set1_pd(a[i]);
      acc[i][0] = _mm512_add_pd(acc[i][0], _mm512_mul_pd(ai, b0));
      acc[i][1] = _mm512_add_pd(acc[i][1], _mm512_mul_pd(ai, b1));
      acc[i][2] = _mm512_add_pd(acc[i][2], _mm512_mul_pd(ai, b2));
    }
    a += kMr;
    b += kNr;
  }
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i) {
    _mm512_storeu_pd(c + i * ldc, acc[i][0]);
    _mm512_storeu_pd(c + i * ldc + 8, acc[i][1]);
    _mm512_storeu_pd(c + i * ldc + 16, acc[i][2]);
  }
}

}  // namespace

KernelInfo avx512_kernel() { return KernelInfo{kMr, kNr, &kernel_8x24}; }

}  // namespace dsv4::gemm_detail
