// The CPU reference for the elements the SwiGLU kernel leaves undecided (private header of gpu/src;
// implemented in swiglu_reference.cpp, compiled by the host compiler: it includes Eigen).
#pragma once

namespace dsv4::gpu::detail {

// bf16(clamped_swiglu(g, u)) of one element in official mode (ref/model/src/expert.cpp
// clamped_swiglu_rows); route_weight null for the shared expert.
float swiglu_reference(float g, float u, double limit, const float* route_weight);

}  // namespace dsv4::gpu::detail
