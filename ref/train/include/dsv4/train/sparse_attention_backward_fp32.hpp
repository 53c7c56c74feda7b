// The KV gradient of sparse attention as an official-style backward reduces it (spec 06 §6.14;
// exact backward: sparse_attention_backward.hpp, spec 06 §6.12). dkv is a sum over query rows,
// heads and list positions into shared KV rows — the reduction a GPU must not do with atomicAdd
// (spec 07 R-5). Its per-entry coefficients are per (query row, head) work, no cross-row sum:
//   prob[r·H + h, j]   = P_j                 (the softmax with the sink, entry j of row r's list)
//   dlogit[r·H + h, j] = τ ds_j = ∂L/∂⟨q_h, v_j⟩
// held as fp32 (a kernel's first stage writes them; −1 list entries ignore theirs). Then
//   dkv[e, d] = Σ_{r, h, j : list_r[j] = e}  P_j ō[r·H + h, d] + dlogit_j q[r·H + h, d]
// by fp32_partitioned_sum over the query rows r (partitions of C query rows): each partition's
// element (e, d) is the fmaf sequence over r ascending, then h ascending, then j ascending, each
// entry contributing fmaf(P_j, ō_d, ·) and then fmaf(dlogit_j, q_d, ·); a row listed twice receives
// both entries' contributions.
// The sink's gradient is the other cross-row sum: dsink[h] = Σ_r dz[r·H + h], dz = −P_z·D per (query
// row, head) (fp32, per-row work), by the same rule over the query rows: each partition's element h
// the sequence acc = fl32(acc + dz) over r ascending (an fmaf by 1: one rounding). dq is per row.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/model/index_builders.hpp"
#include "dsv4/train/fp32_partitioned_sum.hpp"

namespace dsv4 {

// q, dout [M·H, c]; prob, dlogit [M·H, width] (width = lists.width, M = lists.rows); returns dkv
// [n_kv, c]. std::invalid_argument on a size mismatch or a list entry outside [−1, n_kv).
std::vector<float> sparse_attention_dkv_fp32(std::span<const float> q, std::int64_t n_heads, std::int64_t n_kv,
                                             std::int64_t c, const IndexLists& lists, std::span<const float> dout,
                                             std::span<const float> prob, std::span<const float> dlogit,
                                             const PartitionRule& rule = {});

// dz [M·H] (row r·H + h) → dsink [H]. std::invalid_argument on a size mismatch.
std::vector<float> sparse_attention_dsink_fp32(std::span<const float> dz, std::int64_t rows, std::int64_t n_heads,
                                               const PartitionRule& rule = {});

}  // namespace dsv4
