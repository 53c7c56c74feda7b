// The weight gradients of one MoE expert as an official-style backward reduces them (spec 06 §6.14;
// exact backward: expert_backward.hpp, spec 06 §6.12). dW1, dW3 and dW2 are sums over the tokens
// routed to the expert — the reduction a GPU must not do with atomicAdd (spec 07 R-5…R-7). Their
// per-row coefficients are per (token, expert) work, no cross-row sum, held as fp32 (a kernel's
// first stage writes them):
//   h [R, de]   the weighted activation w · silu(g_c) · u_c (what the down projection sees),
//   dg, du [R, de]  the clamped SwiGLU's gate and up gradients (swiglu_backward.hpp).
// Rows. The R rows are the routed set in ascending token position: row r is token routed[r] (a
// shared expert: every token, routed = 0 … T−1). The partition is over these rows — partition p
// holds routed rows [p·C, min((p+1)·C, R)), whatever positions they carry — so a grouped GEMM whose
// M tiles are the expert's routed tokens in position order computes one partition per tile. Then
// by linear_dweight_fp32 (the linear site of §6.14) on the gathered rows:
//   dW1 [de, d] = Σ_r dg[r, :]ᵀ x[routed[r], :]   element (j, k): fmaf(dg[r, j], x[t_r, k], acc),
//   dW3 [de, d] = Σ_r du[r, :]ᵀ x[routed[r], :]   r ascending within the partition;
//   dW2 [d, de] = Σ_r dy[routed[r], :]ᵀ h[r, :]    element (o, j): fmaf(dy[t_r, o], h[r, j], acc);
// each partition's buffers then reduced by the fixed pairwise tree. dx and the routing weight's
// gradient are per row (no cross-row reduction) and are not written here.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/train/fp32_partitioned_sum.hpp"

namespace dsv4 {

struct ExpertDweightsFp32 {
  std::vector<float> dw1, dw3;  // [de, d]
  std::vector<float> dw2;       // [d, de]
};

// x [T, d] the MoE input rows, dy [T, d] the MoE output gradient (each routed expert's output
// gradient, spec 06 §6.12 MoE combine); routed [R] strictly ascending positions in [0, T);
// h, dg, du [R, de]. std::invalid_argument on a size mismatch or a routed list that is not strictly
// ascending within [0, T).
ExpertDweightsFp32 expert_dweights_fp32(std::span<const float> x, std::span<const float> dy, std::int64_t tokens,
                                        std::int64_t d, std::span<const std::int64_t> routed, std::span<const float> h,
                                        std::span<const float> dg, std::span<const float> du, std::int64_t de,
                                        const PartitionRule& rule = {});

}  // namespace dsv4
