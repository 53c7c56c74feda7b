// AVX-512 build of the metrics kernel (metrics_kernel.hpp); called only when the CPU reports
// AVX-512F. -ffp-contract=off forbids FMA contraction, so every operation is the same IEEE operation
// as in the portable build.
#pragma GCC target("avx512f")
#include "metrics_kernel.hpp"

namespace dsv4::compare_detail {
namespace {
#define DSV4_METRICS_W 8
#include "metrics_kernel_body.inc"
#undef DSV4_METRICS_W
}  // namespace

KernelFn avx512_kernel(Storage storage, bool from_bits, bool scaled) { return pick_kernel(storage, from_bits, scaled); }

}  // namespace dsv4::compare_detail
