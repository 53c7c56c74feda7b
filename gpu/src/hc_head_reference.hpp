// The CPU reference for the tokens the hc_head kernel leaves undecided (private header of gpu/src;
// implemented in hc_head_reference.cpp, compiled by the host compiler: it includes Eigen).
#pragma once

#include <cstdint>

namespace dsv4::gpu::detail {

// hc_head of one token in official mode (ref/model/src/mhc.cpp hc_head_rows): x [n·d], fn [n, n·d],
// base [n] → y [d].
void hc_head_reference(const float* x, std::int64_t n, std::int64_t d, const float* fn, const float* base, float scale,
                       double hc_eps, double norm_eps, float* y);

}  // namespace dsv4::gpu::detail
