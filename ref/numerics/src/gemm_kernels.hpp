// Internal: the GEMM microkernels (gemm.hpp). Every kernel computes one mr×nr tile of C from a
// packed A panel ([kc][mr], row index fastest) and a packed B panel ([kc][nr], column fastest):
//
//   for k in 0 … kc−1, for every (i, j):  acc[i][j] = fl( acc[i][j] + fl( a[k][i] · b[k][j] ) )
//
// with acc starting at +0.0 when `first`, else at the running sums already stored in C. The tile
// of C has row stride ldc. Kernels in gemm_avx2.cpp / gemm_avx512.cpp are compiled with -mavx2 /
// -mavx512f: those files include no standard-library header, so no instantiated inline function
// carrying wide instructions can leak into the rest of the program.
#pragma once

#include <cstdint>

namespace dsv4::gemm_detail {

using MicroKernel = void (*)(std::int64_t kc, const double* a, const double* b, double* c, std::int64_t ldc,
                             bool first);

struct KernelInfo {
  int mr;
  int nr;
  MicroKernel fn;
};

KernelInfo avx2_kernel();    // gemm_avx2.cpp
KernelInfo avx512_kernel();  // gemm_avx512.cpp

}  // namespace dsv4::gemm_detail
