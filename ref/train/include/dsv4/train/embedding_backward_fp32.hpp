// The gradient of a row gather as an official-style backward reduces it (spec 06 §6.14; exact
// backward: embedding_backward.hpp, spec 06 §6.12): the embedding (table [vocab, d], row id_t of
// token t) and the compressors' `ape` (table [ratio, proj], row t mod ratio: a positional table
// indexed like the embedding, spec 06 §6.13). dE[v] = Σ_{t : id_t = v} dh[t] is a sum over the
// tokens — a scatter-add a GPU must not do with atomicAdd (spec 07 R-5…R-7). From the per-token
// rows dh (bf16 or fp32 values) by fp32_partitioned_sum over the tokens (partitions of C consecutive
// tokens, S = table_rows · d): each partition's element (v, i) the sequence fmaf(dh[t, i], 1, acc)
// (one rounding: acc + dh) over the partition's tokens t with id_t = v ascending, then the fixed
// pairwise tree (c = min(C, R) roundings at most). Rows no token of a partition names stay +0.0 in
// its buffer, and fl32(a + (+0.0)) = a for every buffer value (a buffer that starts at +0.0 never
// holds −0.0 under round-to-nearest), so a kernel that touches only the named rows gets the same
// bits.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/train/fp32_partitioned_sum.hpp"

namespace dsv4 {

// ids [tokens] in [0, table_rows); dh [tokens, d] row-major; returns dE [table_rows, d].
// std::invalid_argument on a size mismatch or an id outside [0, table_rows).
std::vector<float> embedding_dtable_fp32(std::span<const std::int64_t> ids, std::span<const float> dh,
                                         std::int64_t table_rows, std::int64_t d, const PartitionRule& rule = {});

}  // namespace dsv4
