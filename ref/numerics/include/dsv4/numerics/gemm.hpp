// Deterministic double GEMM: the same bits on every x86-64 machine, for every vector width,
// blocking, thread count and batch size.
//
// Defined result. For every output element
//
//     C[i][j] = s_K,   s_0 = +0.0,   s_{k+1} = fl( s_k + fl( A[i][k] · B[j][k] ) )
//
// i.e. the plain sequential sum over k = 0 … K−1 of the rounded products: multiply, round, add,
// round (never a fused multiply-add; the build uses -ffp-contract=off and the kernels call
// separate multiply and add intrinsics). That is exactly what
//
//     double s = 0.0; for (k = 0; k < K; ++k) s += a[k] * b[k];
//
// computes, so a naive loop is the specification and the test oracle. IEEE double arithmetic
// in round-to-nearest-even with gradual underflow (the default MXCSR; nothing here changes it).
//
// Implementation (gemm.cpp): vectorised across output columns (B packed into [k][nr] panels, A
// into [k][mr] panels), mr×nr register blocks, cache blocks over M, N and K. A K block never
// starts a new partial sum: the microkernel reloads the running sum s_k from C and continues it,
// and storing/reloading a double is exact, so K blocking does not change the order above.
// Threads own disjoint output rows (or columns); no reduction ever crosses threads.
// Kernels, chosen at run time: AVX-512F, AVX2 and a portable one (SSE2 at most) — all perform
// the same IEEE operations per element in the same order, so all give the same bits.
#pragma once

#include <cstdint>

namespace dsv4 {

enum class GemmKernel { kAuto, kPortable, kAvx2, kAvx512 };

// Name for reports: "auto", "portable", "avx2", "avx512".
const char* gemm_kernel_name(GemmKernel k);
// Whether the CPU (and OS) supports the kernel; kAuto and kPortable are always supported.
bool gemm_kernel_supported(GemmKernel k);
// Force a kernel (tests, benchmarks); kAuto restores the default choice (the widest supported).
// Throws std::invalid_argument when the kernel is not supported on this CPU.
void set_gemm_kernel(GemmKernel k);
// The kernel that a GEMM call would use now (never kAuto).
GemmKernel gemm_kernel();

// Default thread count of GEMM calls whose `threads` argument is 0. n = 0 restores the default,
// std::thread::hardware_concurrency(). The result never depends on it.
void set_gemm_threads(int n);
int gemm_threads();

// Cache-block sizes (tuning and benchmarks only; 0 = the built-in default). Speed only: the
// result never depends on them.
void set_gemm_blocking(std::int64_t kc, std::int64_t mc, std::int64_t nc);

// C[M,N] = A[M,K] · B[N,K]ᵀ. Row-major with row strides lda ≥ K, ldb ≥ K, ldc ≥ N. C must not
// overlap A or B. abs_operands: use |A| and |B| (for error-bound GEMMs; fabs is exact).
// threads: 0 → gemm_threads(). K = 0 gives C = +0.0.
void gemm_nt(std::int64_t M, std::int64_t N, std::int64_t K, const double* A, std::int64_t lda, const double* B,
             std::int64_t ldb, double* C, std::int64_t ldc, int threads = 0, bool abs_operands = false);

// C[M,N] = A[M,K] · B[K,N]. Row-major, ldb ≥ N. Same defined order as gemm_nt (with B[k][j]).
void gemm_nn(std::int64_t M, std::int64_t N, std::int64_t K, const double* A, std::int64_t lda, const double* B,
             std::int64_t ldb, double* C, std::int64_t ldc, int threads = 0, bool abs_operands = false);

}  // namespace dsv4
