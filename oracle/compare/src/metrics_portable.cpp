// Portable build of the metrics kernel (metrics_kernel.hpp): the same source as the AVX2 and
// AVX-512 builds, compiled for the baseline target (the compiler lowers the 8-lane vectors to SSE2).
#include "metrics_kernel.hpp"

namespace dsv4::compare_detail {
namespace {
#define DSV4_METRICS_W 2
#include "metrics_kernel_body.inc"
#undef DSV4_METRICS_W
}  // namespace

KernelFn portable_kernel(Storage storage, bool from_bits, bool scaled) {
  return pick_kernel(storage, from_bits, scaled);
}

}  // namespace dsv4::compare_detail
