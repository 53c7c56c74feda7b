// AVX2 microkernel of the deterministic GEMM (gemm.hpp, gemm_kernels.hpp): 6×8 tile, twelve
// 4-wide accumulators. _mm256_mul_pd then _mm256_add_pd — two roundings per term, never an FMA.
// Compiled with -mavx2 (ref/CMakeLists.txt); called only when the CPU reports AVX2.
#include <immintrin.h>

#include "gemm_kernels.hpp"

namespace dsv4::gemm_detail {
namespace {

constexpr int kMr = 6;
constexpr int kNr = 8;

void kernel_6x8(std::int64_t kc, const double* a, const double* b, double* c, std::int64_t ldc, bool first) {
  __m256d acc[kMr][2];
  if (first) {
#pragma GCC unroll 6
    for (int i = 0; i < kMr; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_pd();
  } else {
#pragma GCC unroll 6
    for (int i = 0; i < kMr; ++i) {
      acc[i][0] = _mm256_loadu_pd(c + i * ldc);
      acc[i][1] = _mm256_loadu_pd(c + i * ldc + 4);
    }
  }
  for (std::int64_t k = 0; k < kc; ++k) {
    const __m256d b0 = _mm256_loadu_pd(b);
    const __m256d b1 = _mm256_loadu_pd(b + 4);
#pragma GCC unroll 6
    for (int i = 0; i < kMr; ++i) {
      const __m256d ai = _mm256_broadcast_sd(a + i);
      acc[i][0] = _mm256_add_pd(acc[i][0], _mm256_mul_pd(ai, b0));
      acc[i][1] = _mm256_add_pd(acc[i][1], _mm256_mul_pd(ai, b1));
    }
    a += kMr;
    b += kNr;
  }
#pragma GCC unroll 6
  for (int i = 0; i < kMr; ++i) {
    _mm256_storeu_pd(c + i * ldc, acc[i][0]);
    _mm256_storeu_pd(c + i * ldc + 4, acc[i][1]);
  }
}

}  // namespace

KernelInfo avx2_kernel() { return KernelInfo{kMr, kNr, &kernel_6x8}; }

}  // namespace dsv4::gemm_detail
