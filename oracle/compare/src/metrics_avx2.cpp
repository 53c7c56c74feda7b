// AVX2 build of the metrics kernel (metrics_kernel.hpp); called only when the CPU reports AVX2.
// `#pragma GCC target` instead of a per-file compile flag; no FMA is enabled (and -ffp-contract=off
// forbids contraction anyway), so every operation is the same IEEE operation as in the portable build.
#pragma GCC target("avx2")
#include "metrics_kernel.hpp"

namespace dsv4::compare_detail {
namespace {
#define DSV4_METRICS_W 4
#include "metrics_kernel_body.inc"
#undef DSV4_METRICS_W
}  // namespace

KernelFn avx2_kernel(Storage storage, bool from_bits, bool scaled) { return pick_kernel(storage, from_bits, scaled); }

}  // namespace dsv4::compare_detail
