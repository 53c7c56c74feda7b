// The gain gradient of RMSNorm as an official-style backward reduces it (spec 06 §6.14; exact
// backward: rmsnorm_backward.hpp, spec 06 §6.12). dγ_i = Σ_r dy[r, i] · x̂[r, i] is a sum over the
// rows — the reduction a GPU must not do with atomicAdd (spec 07 R-5…R-7). Its per-row values are
// the upstream gradient dy (bf16 values in a bf16 engine) and the normalised input x̂ = x · r_row
// (RmsNormGrads::xr; per-row work, no cross-row sum, held as fp32: a kernel's first stage writes
// it). Then by fp32_partitioned_sum over the rows (partitions of C consecutive rows): each
// partition's element i the fmaf sequence fmaf(dy[r, i], x̂[r, i], acc) over its rows ascending
// (S = dim, c = min(C, R) roundings), then the fixed pairwise tree — the linear site of §6.14
// restricted to its diagonal (one input column per output column).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/train/fp32_partitioned_sum.hpp"

namespace dsv4 {

// dy, xr [rows, dim] row-major; returns dγ [dim]. std::invalid_argument on a size mismatch.
std::vector<float> rmsnorm_dweight_fp32(std::span<const float> dy, std::span<const float> xr, std::int64_t rows,
                                        std::int64_t dim, const PartitionRule& rule = {});

}  // namespace dsv4
