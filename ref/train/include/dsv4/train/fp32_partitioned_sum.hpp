// FP32-partitioned reductions of the official-style backward (spec 06 §6.14; issue 16 item 3): a
// sum over the rows (tokens) of a call, written as the GPU does it — fixed-size FP32 partial
// buffers over a fixed partition of the rows, reduced in a fixed order — so that the result is a
// function of the shapes and values only, never of the thread count, and a CUDA kernel can
// reproduce it bit for bit.
//
// The rule, for R rows and an output of S fp32 elements:
//   1. Partition. P = ⌈R / C⌉ partitions of C consecutive rows (C = rule.chunk_rows, a constant of
//      the reduction site, kTokenChunkRows unless stated); partition p holds rows
//      [p·C, min((p+1)·C, R)), the last one possibly shorter. R = 0 gives the zero output.
//   2. Partial buffers. Each partition has its own S-element fp32 buffer, starting at +0.0f; the
//      caller's `accumulate(r0, r1, buffer)` adds that partition's terms into it, each element a
//      sequence of fp32 fused multiply-adds acc = fmaf(a, b, acc) (one rounding, round to nearest
//      even, subnormals kept) in the order the caller's site documents (for dW: rows ascending).
//   3. Fixed pairwise tree over the partition index. For s = 1, 2, 4, … while s < P: for every
//      i ≡ 0 (mod 2s) with i + s < P, buffer[i] ← fl32(buffer[i] + buffer[i + s]) element by
//      element. The result is buffer[0].
// Threads (parallel_rows, gemm_threads()) take whole partitions, and each tree level is element
// by element, so no thread count changes a bit.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace dsv4 {

// The partition constant of a reduction site (spec 06 §6.14). 128 rows: one M tile of the GPU's
// backward GEMM (DeepGEMM's block M), so a CTA's tile is exactly one partition.
inline constexpr std::int64_t kTokenChunkRows = 128;

struct PartitionRule {
  std::int64_t chunk_rows = kTokenChunkRows;  // C ≥ 1
  // Not the rule: the training catalogue's legitimate variant (Deviation::kReductionShuffled, spec
  // 06 §6.17), an atomicAdd schedule — one fp32 buffer for all R rows, `accumulate(r, r + 1, buffer)`
  // called row by row in the order r = (i · σ) mod R, i = 0 … R−1, with σ the smallest stride
  // ≥ ⌊R/2⌋ + 1 coprime with R (σ = 1 for R ≤ 2); no tree. chunk_rows is then unused. Every site on
  // the rule takes it through its `rule` argument, so each reduces its rows in that order (within a
  // row, the site's own order).
  bool shuffled = false;
  // P = ⌈rows / C⌉ (0 for rows = 0). std::invalid_argument on rows < 0 or C < 1.
  [[nodiscard]] std::int64_t partitions(std::int64_t rows) const;
  // Depth of the pairwise tree: ⌈log₂ P⌉ (0 for P ≤ 1) — the additions an element of a partial
  // buffer goes through after its partition.
  [[nodiscard]] std::int64_t tree_depth(std::int64_t rows) const;
};

// Adds the terms of rows [r0, r1) into `partial` (S elements, zero on entry), each element in
// its site's documented fmaf order. Called once per partition, from any thread; it must write
// `partial` only. (Under `shuffled`: once per row, on one buffer holding the earlier rows' sum.)
using PartitionAccumulate = std::function<void(std::int64_t r0, std::int64_t r1, std::span<float> partial)>;

// The rule above: the S-element fp32 result. std::invalid_argument on negative sizes.
std::vector<float> fp32_partitioned_sum(std::int64_t rows, std::int64_t out_size, const PartitionRule& rule,
                                        const PartitionAccumulate& accumulate);

// Step 3 alone, on P = partials.size() / out_size buffers laid out one after another: the fixed
// pairwise tree, in place; buffer 0 holds the result.
void fp32_pairwise_tree(std::span<float> partials, std::int64_t out_size);

}  // namespace dsv4
