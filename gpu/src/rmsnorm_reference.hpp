// The CPU reference for the rows the RMSNorm kernel and the segments the per-head kernel leave
// undecided (private header of gpu/src; implemented in rmsnorm_reference.cpp, compiled by the host
// compiler: it includes Eigen).
#pragma once

#include <cstdint>

namespace dsv4::gpu::detail {

// rmsnorm of one row in official mode (ref/model/src/rmsnorm.cpp): x [dim], weight [dim] → y [dim].
void rmsnorm_reference(const float* x, std::int64_t dim, const float* weight, double eps, float* y);

// head_rmsnorm_inplace of one head segment in official mode (ref/model/src/rmsnorm.cpp): x [head_dim]
// → y [head_dim].
void head_rmsnorm_reference(const float* x, std::int64_t head_dim, double eps, float* y);

}  // namespace dsv4::gpu::detail
