// A kernel's weight view as the reference's LinearWeight (private header of gpu/src, for the host
// fallbacks compiled by the host compiler: it includes the C++20 reference headers, never a .cu).
#pragma once

#include "dsv4/gpu/linear.hpp"
#include "dsv4/model/linear.hpp"

namespace dsv4::gpu::detail {

// The whole weight w (host pointers) in the reference's form and kind: bf16 / fp32 values, fp8
// codes [N, K] with their [⌈N/128⌉, K/128] tile scales, fp4 packed codes with their [N, K/32] scales.
LinearWeight reference_weight(const LinearWeightView& w);

}  // namespace dsv4::gpu::detail
