// The CPU reference for the rows and tokens the expert and MoE combine kernels leave undecided
// (private header of gpu/src; implemented in moe_reference.cpp, compiled by the host compiler: it
// includes Eigen).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/expert.hpp"
#include "dsv4/gpu/moe_combine.hpp"

namespace dsv4::gpu::detail {

// y[t, :] = the official-mode expert_forward (ref/model/src/expert.cpp) of row t of x [*, dim], for
// every t in rows (w: host pointers; route_weight [*] or nullptr).
void expert_reference_rows(const float* x, const std::vector<std::int64_t>& rows, const ExpertWeightsView& w,
                           double limit, const float* route_weight, float* y);

// y[t, :] = the official-mode Moe::combine (ref/model/src/moe.cpp) of token t alone, for every t in
// tokens (w: host pointers). The token's experts are renumbered in ascending order (the order of the
// combine is kept) so that only they are built.
void moe_combine_reference_tokens(const float* x, const float* weights, const std::int64_t* indices, std::int64_t k,
                                  const std::vector<std::int64_t>& tokens, const MoeExpertsView& w, double limit,
                                  float* y);

}  // namespace dsv4::gpu::detail
