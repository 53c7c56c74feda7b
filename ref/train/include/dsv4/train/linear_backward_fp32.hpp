// Official-style backward of a linear layer y = x Wᵀ (spec 06 §6.14), beside the exact one
// (linear_backward.hpp): fp32 containers as a training engine holds them (bf16 values where the
// engine's activations and upstream gradients are bf16), fp32 results, and every reduction in the
// order of a documented rule that a CUDA kernel reproduces bit for bit.
//
//   dW [N, K] = Σ_r dy[r, :]ᵀ x[r, :]   over the M rows: fp32_partitioned_sum (spec 06 §6.14), each
//               partition's element (o, i) the fmaf sequence over its rows ascending;
//   dx [M, K] = dy · W_eff              per row, no reduction across rows: element (r, i) the fmaf
//               sequence over o = 0 … N−1 from +0.0f (one row, one thread: the thread count never
//               changes a bit).
// The straight-through estimator is the exact backward's (W_eff = Q(W) for a quantised weight).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/train/fp32_partitioned_sum.hpp"

namespace dsv4 {

// x [M, K], dy [M, N] row-major; returns dW [N, K]. std::invalid_argument on a size mismatch.
std::vector<float> linear_dweight_fp32(std::span<const float> x, std::span<const float> dy, std::int64_t m,
                                       std::int64_t k, std::int64_t n, const PartitionRule& rule = {});

// dy [M, N], w [N, K] row-major; returns dx [M, K]. std::invalid_argument on a size mismatch.
std::vector<float> linear_dx_fp32(std::span<const float> dy, std::span<const float> w, std::int64_t m, std::int64_t k,
                                  std::int64_t n);

}  // namespace dsv4
