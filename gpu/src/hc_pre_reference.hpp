// The CPU reference for the tokens the hc_pre kernels leave undecided (private header of gpu/src;
// implemented in hc_pre_reference.cpp, compiled by the host compiler: it includes Eigen).
#pragma once

#include <cstdint>

namespace dsv4::gpu::detail {

// hc_pre of one token in official mode (ref/model/src/mhc.cpp hc_pre_rows): x [n·d], fn
// [(2+n)n, n·d], base [(2+n)n], scale [3] → y [d], post [n], comb [n·n], mixes [(2+n)n].
void hc_pre_reference(const float* x, std::int64_t n, std::int64_t d, const float* fn, const float* base,
                      const float* scale, int iters, double hc_eps, double norm_eps, float* y, float* post, float* comb,
                      float* mixes);

}  // namespace dsv4::gpu::detail
