// AVX-512F microkernel of the deterministic GEMM (gemm.hpp, gemm_kernels.hpp): 8×24 tile,
// twenty-four 8-wide accumulators (the loop: gemm_kernel_body.inc). Compiled with -mavx512f
// (ref/CMakeLists.txt); called only when the CPU reports AVX-512F.
#include <immintrin.h>

#include "gemm_kernels.hpp"

#define DSV4_GEMM_BITS 512
#define DSV4_GEMM_MR 8
#define DSV4_GEMM_NV 3
#define DSV4_GEMM_ENTRY avx512_kernel
#include "gemm_kernel_body.inc"
