// GPU sparse attention with the attention sink (spec 02 §2.9; official kernel sparse_attn_kernel),
// bit-exact with the official-mode reference (dsv4/model/sparse_attention.hpp sparse_attention with
// Precision(Mode::kOfficial)) and batch-invariant: token t's output depends on its q row, its index
// list, the kv rows it names and the sinks alone. Prefill and decode are the same call: a decode
// step passes its one query row per sequence and the cache's rows as kv (the lists index them).
//
// The reference's arithmetic is a fixed-order fp32 recurrence over chunks of 64 list positions
// (dsv4/gpu/sparse_attention_steps.hpp states it and holds the one copy of its order); its dot
// products and chunk sums are C1 sums (exact sums rounded once) and its exps C2. Three kernels: the
// logits per (token, chunk, 64 heads) on the FP64 tensor cores (the gathered kv rows shared by the
// heads), the softmax steps per (token, head) over the chunks in order, P·V per (token, 64 heads, 64
// columns) on the tensor cores with o ← fl(fl(o·α) + pv) in registers in chunk order; each dot decided
// by a rigorous bound or recomputed by a warp with the compensated sum (gpu/src/sparse_attention.cu).
// A token with any C1 rounding or exp left undecided is flagged and the host entry point recomputes
// it with the reference.
//
// Plain C++17 header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument (before any CUDA call).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

inline constexpr std::int64_t kSparseAttentionMaxHeads = 128;  // V4-Pro's 128 heads; V4-Flash has 64

struct SparseAttentionBatch {
  std::vector<float> o;              // [tokens, heads·c], bf16 values
  std::int64_t recomputed = 0;       // tokens the device left undecided, recomputed by the CPU reference
  std::int64_t warp_recomputed = 0;  // dots (logits, P·V) the bound left undecided, recomputed on the device
};

// q [tokens, heads·c] (head h of token t: columns h·c..; bf16 values), lists [tokens, width] (kv row
// indices, −1 = no entry; the first 64 positions of every list must hold a valid entry, as the
// reference requires), kv [n_kv, c] (bf16 values), sink [heads] (fp32), scale the softmax scale
// (used as fl32(scale)). heads in [1, kSparseAttentionMaxHeads], c in [1, 2^16], width ≥ 1.
SparseAttentionBatch sparse_attention(const float* q, std::int64_t tokens, std::int64_t heads, std::int64_t c,
                                      const std::int32_t* lists, std::int64_t width, const float* kv, std::int64_t n_kv,
                                      const float* sink, double scale);

// Device-pointer form (asynchronous on `stream`): o [tokens, heads·c]; undecided [tokens] bytes, 1
// where token t must be recomputed on the host — also a token whose list has an entry outside
// [−1, n_kv) or a first chunk of 64 entries all −1 (never read out of bounds; the reference refuses
// it). tau = fl32(scale). Its workspace (≤ 64 MiB, token batches beyond) comes from the device's
// default memory pool, stream-ordered (cudaMallocAsync / cudaFreeAsync on `stream`). warp_recomputed:
// null, or a device array of 2 counters to which the call adds the logit dots and the P·V dots its
// bound left undecided and a warp recomputed on the device (how rare the slow path is; no value
// depends on it).
void sparse_attention_device(const float* q, std::int64_t tokens, std::int64_t heads, std::int64_t c,
                             const std::int32_t* lists, std::int64_t width, const float* kv, std::int64_t n_kv,
                             const float* sink, float tau, float* o, std::uint8_t* undecided, void* stream = nullptr,
                             std::uint64_t* warp_recomputed = nullptr);

}  // namespace dsv4::gpu
