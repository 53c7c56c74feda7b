// The CPU reference for the tokens the hc_post kernel leaves undecided (private header of gpu/src;
// implemented in hc_post_reference.cpp, compiled by the host compiler: it includes Eigen).
#pragma once

#include <cstdint>

namespace dsv4::gpu::detail {

// hc_post of one token in official mode (ref/model/src/mhc.cpp): f [d], residual [n·d], post [n],
// comb [n·n] → y [n·d].
void hc_post_reference(const float* f, const float* residual, const float* post, const float* comb, std::int64_t n,
                       std::int64_t d, float* y);

}  // namespace dsv4::gpu::detail
