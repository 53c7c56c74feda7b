// AVX2 microkernel of the deterministic GEMM (gemm.hpp, gemm_kernels.hpp): 6×8 tile, twelve
// 4-wide accumulators (the loop: gemm_kernel_body.inc). Compiled with -mavx2 (ref/CMakeLists.txt);
// called only when the CPU reports AVX2.
#include <immintrin.h>

#include "gemm_kernels.hpp"

#define DSV4_GEMM_BITS 256
#define DSV4_GEMM_MR 6
#define DSV4_GEMM_NV 2
#define DSV4_GEMM_ENTRY avx2_kernel
#include "gemm_kernel_body.inc"
