// The CPU reference for the tokens the mHC kernel leaves undecided (private header of gpu/src;
// implemented in mhc_reference.cpp, compiled by the host compiler: it includes Eigen).
#pragma once

namespace dsv4::gpu::detail {

// hc_split_sinkhorn of one token in official mode (ref/model/src/mhc.cpp): mixes [(2+n)n],
// scale [3], base [(2+n)n] → pre [n], post [n], comb [n·n].
void hc_split_sinkhorn_reference(const float* mixes, int n, const float* scale, const float* base, int iters,
                                 double eps, float* pre, float* post, float* comb);

}  // namespace dsv4::gpu::detail
