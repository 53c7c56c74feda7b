// GPU scores and top-k of the Lightning Indexer (spec 02 §2.7 steps 4–7; official code
// Indexer.forward's `index_score` einsum, relu, weights, sum and topk), bit-exact with the
// official-mode reference (dsv4/model/indexer.hpp indexer_select_official, Indexer::run's
// arithmetic) and batch-invariant: a query row's scores and list depend on its own q, ω and visible
// count and the shared cache only.
//
// Per query row and entry τ < visible (τ ≥ visible: I = −∞, masked): per head h, s_h =
// bf16(fl32(C1 Σ_d q_h[d]·K_τ[d])) — the exact double products of the fp32 values summed with their
// TwoSum errors (`SumC1Comp`) over the lanes of a warp, merged (`warp_merge_comp`) and rounded once
// (`round_c1_comp`) —; p_h = bf16(fl32(max(s_h, 0)·ω_h)) (std::max: −0 stays −0); I =
// bf16(fl32(C1 Σ_h p_h)) the same way. Then the top-k: k = the number asked (min(index_topk,
// entries)), the C4 order — larger score first, equal scores (−∞ included) by ascending index —
// decided exactly: each candidate's rank is the count of candidates before it in that order, and a
// candidate of rank < k writes list[rank] = τ + offset, or −1 when τ ≥ visible (prefill: fewer than
// k entries visible). A row with a score the device cannot decide (an undecided rounding, a
// non-finite dot or product: the reference's special values decide) is flagged and the host entry
// point recomputes the whole row — scores and list — with the CPU reference (`recomputed`).
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct IndexerTopkShape {
  std::int64_t rows = 0;      // query rows
  std::int64_t entries = 0;   // candidate entries (cache rows, ⌊e/4⌋)
  std::int64_t heads = 0;     // n_I
  std::int64_t head_dim = 0;  // c_I
  std::int64_t k = 0;         // entries selected per row (≤ entries)
  std::int64_t offset = 0;    // added to a selected entry's index in the list
};

struct IndexerTopkBatch {
  std::vector<float> scores;       // [rows, entries], bf16 values or −∞
  std::vector<std::int32_t> list;  // [rows, k]
  std::int64_t recomputed = 0;     // rows the device left undecided, recomputed by the CPU reference
};

// q [rows, heads·head_dim], w [rows, heads] (ω), visible [rows] (entries each row sees, 0..entries),
// cache [entries, head_dim]; all fp32 values.
IndexerTopkBatch indexer_topk(const float* q, const float* w, const std::int32_t* visible, const float* cache,
                              const IndexerTopkShape& shape);

// Device-pointer form: writes scores, list, score_undecided [rows·entries] (a workspace: 1 where the
// score of (row, τ) is undecided) and undecided [rows] (1 when the row must be recomputed on the
// host; its list is then not the reference's).
void indexer_topk_device(const float* q, const float* w, const std::int32_t* visible, const float* cache,
                         const IndexerTopkShape& shape, float* scores, std::int32_t* list,
                         std::uint8_t* score_undecided, std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
