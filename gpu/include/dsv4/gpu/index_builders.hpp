// GPU index-list builders of sparse attention (spec 02 §2.8; official code get_window_topk_idxs and
// get_compress_topk_idxs), bit-exact with the reference (dsv4/model/index_builders.hpp: the window
// part ‖ the HCA part of ref/model/src/index_builders.cpp) — integer work, one thread per list entry:
// an entry depends on its query's index in the call, its column and the call's scalars alone.
//
// Per query t of a call (position start_pos + t) the list is the window part, then (ratio m > 0)
// the HCA part:
//   window, prefill (start_pos = 0, s tokens): width W = min(s, n_win); entry j = a + j with
//     a = max(0, t − n_win + 1), −1 where a + j > t;
//   window, decode at p = start_pos ≥ 1 (s = 1): width n_win; p < n_win − 1: [0, …, p, −1, …];
//     else with ρ = p mod n_win: entry j = (ρ + 1 + j) mod n_win (ring slots oldest → newest);
//   HCA, prefill: width ⌊s/m⌋; entry i = i + offset, −1 where i ≥ ⌊(t+1)/m⌋ (spec 02 §2.8.4);
//   HCA, decode: width ⌊(p+1)/m⌋; entry i = i + offset.
// ratio 0 builds the window part alone: a layer without compression, or a CSA layer, whose
// compressed part is the indexer's (indexer_topk writes it beside the window part: see `ld`).
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument (before any CUDA call).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

// The scalars of one call (the official functions' arguments).
struct IndexListsShape {
  std::int64_t start_pos = 0;  // 0: prefill; p ≥ 1: decode at p (then seqlen = 1)
  std::int64_t seqlen = 1;     // s ≥ 1: the call's query tokens
  std::int64_t window = 1;     // n_win ≥ 1
  std::int64_t ratio = 0;      // m ≥ 0: 0 = the window part alone, else the HCA part of ratio m too
  std::int64_t offset = 0;     // ≥ 0, added to the HCA entries (prefill: s; decode: n_win)
};

#if defined(__CUDACC__)
#define DSV4_GPU_HOST_DEVICE __host__ __device__
#else
#define DSV4_GPU_HOST_DEVICE
#endif

// The entry at column j of query t's list, w_win = index_lists_window_width: the kernel's one
// formula (each thread calls it), callable on the host too (tests/gpu_index_builders_test checks it
// against the reference on the CPU).
DSV4_GPU_HOST_DEVICE inline std::int64_t index_list_entry(std::int64_t t, std::int64_t j, std::int64_t w_win,
                                                          std::int64_t start_pos, std::int64_t window,
                                                          std::int64_t ratio, std::int64_t offset) {
  if (j < w_win) {
    if (start_pos == 0) {  // spec 02 §2.8.1 prefill
      const std::int64_t a = t - window + 1 > 0 ? t - window + 1 : 0;
      return a + j > t ? -1 : a + j;
    }
    if (start_pos >= window - 1) return (start_pos % window + 1 + j) % window;  // decode, the ring has wrapped
    return j <= start_pos ? j : -1;                                             // decode, p < n_win − 1
  }
  const std::int64_t i = j - w_win;  // spec 02 §2.8.2 (visibility §2.8.4)
  if (start_pos == 0 && i >= (t + 1) / ratio) return -1;
  return i + offset;
}

// The widths of the two parts and of the whole list (window + compressed). Throw
// std::invalid_argument for a shape outside the domain above (start_pos < 0, seqlen < 1, decode
// with seqlen ≠ 1, window < 1, ratio < 0, offset < 0, an entry beyond int32).
std::int64_t index_lists_window_width(const IndexListsShape& shape);
std::int64_t index_lists_compressed_width(const IndexListsShape& shape);
std::int64_t index_lists_width(const IndexListsShape& shape);

// queries [rows]: each row's query index t in [0, seqlen) (refused otherwise) → lists [rows,
// index_lists_width] (row-major).
std::vector<std::int32_t> index_lists(const std::int32_t* queries, std::int64_t rows, const IndexListsShape& shape);

// Device-pointer form (asynchronous on `stream`): writes columns [0, index_lists_width) of every row
// of lists (row stride ld ≥ the width; columns beyond are left alone — a CSA layer's indexer part).
// queries [rows] on the device, or nullptr: row r is query r mod seqlen (a batch of sequences, each
// seqlen rows). A query outside [0, seqlen) gets −1 in every entry (the host form refuses it first).
void index_lists_device(const std::int32_t* queries, std::int64_t rows, const IndexListsShape& shape,
                        std::int32_t* lists, std::int64_t ld, void* stream = nullptr);

}  // namespace dsv4::gpu
