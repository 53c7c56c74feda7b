// mHC's parameter gradients as an official-style backward reduces them (spec 06 §6.14; exact
// backward: hc_pre_backward.hpp, hc_head_backward.hpp, spec 04 §4.8, spec 06 §6.12). hc_*_fn,
// hc_*_base and hc_*_scale receive sums over the tokens — the reduction a GPU must not do with
// atomicAdd (spec 07 R-5…R-7). Their per-token coefficients (MhcParamRows: the mixes μ, da = ∂L/∂a_m
// and gr = r·dμ, per-token work with no cross-token sum, held as fp32: a kernel's first stage writes
// them) and the state rows x [T, n·d] are reduced over the T tokens by fp32_partitioned_sum
// (partitions of C consecutive tokens), each element of a partition's buffer the fmaf sequence over
// the partition's tokens ascending:
//   dfn [count, n·d]  element (m, i): fmaf(gr[t, m], x[t, i], acc)       — linear_dweight_fp32 (x, gr);
//   dbase [count]     element m:      fmaf(da[t, m], 1, acc)              — linear_dweight_fp32 (1, da);
//   dscale [scales]   element G:      fmaf(μ[t, m], da[t, m], acc) for the mixes m of group G
//                                     ascending, within each token;
// then the fixed pairwise tree. Groups (spec 04 §4.3): hc_pre has count = (2+n)·n mixes and three
// scales — pre (m < n), post (n ≤ m < 2n), res (m ≥ 2n); hc_head has count = n and one scale.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/train/fp32_partitioned_sum.hpp"

namespace dsv4 {

struct MhcParamGradsFp32 {
  std::vector<float> dfn;     // [count, n·d]
  std::vector<float> dbase;   // [count]
  std::vector<float> dscale;  // [scales]
};

// x [T, n·d]; mixes, da, gr [T, count]; scales 3 (hc_pre: count = (2+n)n) or 1 (hc_head: count = n).
// std::invalid_argument on a size mismatch or another (count, scales).
MhcParamGradsFp32 mhc_dparams_fp32(std::span<const float> x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                                   std::span<const float> mixes, std::span<const float> da, std::span<const float> gr,
                                   std::int64_t count, std::int64_t scales, const PartitionRule& rule = {});

}  // namespace dsv4
