// Scores and top-k of the Lightning Indexer (spec 02 §2.7 steps 4–7), bit-exact with the
// official-mode reference (ref/model/src/indexer.cpp indexer_select_official) — see
// dsv4/gpu/indexer_topk.hpp for the arithmetic.
//
// Two launches on one stream:
// - indexer_scores_kernel: one warp per (row, entry), grid-stride; per head the lanes split the
//   head_dim products (lane l takes d = l, l + 32, …), merge their compensated parts by butterflies
//   and round once; every lane then holds the same head score and adds the same product to its own
//   compensated head sum (the heads in increasing order), rounded once; lane 0 writes. A masked
//   entry (τ ≥ visible) is −∞, never flagged.
// - indexer_topk_kernel: one block per row; each thread ranks its candidates by counting, over the
//   whole row, the candidates before them in the C4 order (exact comparisons; the ranks are a
//   permutation, so every list slot is written once); the row's score flags are OR-ed
//   (__syncthreads_or) into its row flag. O(entries²) comparisons a row.
// No reduction depends on the launch configuration: an output's bits depend on its row's inputs and
// the cache only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/indexer_topk.hpp"
#include "indexer_topk_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    indexer_scores_kernel(const float* __restrict__ q, const float* __restrict__ w,
                          const std::int32_t* __restrict__ visible, const float* __restrict__ cache, std::int64_t rows,
                          std::int64_t entries, int heads, int head_dim, float* __restrict__ scores,
                          std::uint8_t* __restrict__ score_undecided) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t count = rows * entries;
  for (std::int64_t p = blockIdx.x * static_cast<std::int64_t>(kWarps) + threadIdx.x / 32; p < count;
       p += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    const std::int64_t row = p / entries, tau = p % entries;
    if (tau >= visible[row]) {  // masked (warp-uniform)
      if (lane == 0) {
        scores[p] = -__int_as_float(0x7f800000);
        score_undecided[p] = 0;
      }
      continue;
    }
    const float* qr = q + row * heads * head_dim;
    const float* kr = cache + tau * head_dim;
    const float* wr = w + row * heads;
    bool ok = true;
    common::SumC1Comp total;
    for (int h = 0; h < heads; ++h) {
      common::SumC1Comp part;
      for (int d = lane; d < head_dim; d += 32) {
        part.add(__dmul_rn(static_cast<double>(qr[h * head_dim + d]), static_cast<double>(kr[d])));
      }
      const common::SumC1Comp all = common::warp_merge_comp(part);
      float dot = 0.0f;
      ok = common::round_c1_comp(all, head_dim + 32, &dot) && ok;
      if (!isfinite(all.s)) ok = false;
      const float s = common::round_to_bf16(dot);
      const float relu = s < 0.0f ? 0.0f : s;  // std::max(s, 0): −0 stays −0
      const float prod = common::round_to_bf16(__fmul_rn(relu, wr[h]));
      if (!isfinite(prod)) ok = false;
      total.add(static_cast<double>(prod));
    }
    float sum = 0.0f;
    ok = common::round_c1_comp(total, heads, &sum) && ok;
    if (lane == 0) {
      scores[p] = common::round_to_bf16(sum);
      score_undecided[p] = ok ? 0 : 1;
    }
  }
}

// The C4 key of a score: a NaN (only in a flagged row, recomputed on the host) ranks as −∞ so the
// ranks stay a permutation.
__device__ __forceinline__ float rank_key(float s) { return isnan(s) ? -__int_as_float(0x7f800000) : s; }

__global__ void __launch_bounds__(kThreads)
    indexer_topk_kernel(const float* __restrict__ scores, const std::uint8_t* __restrict__ score_undecided,
                        const std::int32_t* __restrict__ visible, std::int64_t rows, std::int64_t entries,
                        std::int64_t k, std::int64_t offset, std::int32_t* __restrict__ list,
                        std::uint8_t* __restrict__ undecided) {
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* s = scores + row * entries;
    const std::int64_t vis = visible[row];
    int flag = 0;
    for (std::int64_t i = threadIdx.x; i < entries; i += kThreads) {
      flag |= score_undecided[row * entries + i];
      const float si = rank_key(s[i]);
      std::int64_t rank = 0;
      for (std::int64_t j = 0; j < entries; ++j) {
        const float sj = rank_key(s[j]);
        rank += (sj > si || (sj == si && j < i)) ? 1 : 0;
      }
      if (rank < k) list[row * k + rank] = i >= vis ? -1 : static_cast<std::int32_t>(i + offset);
    }
    const int any = __syncthreads_or(flag);
    if (threadIdx.x == 0) undecided[row] = any != 0 ? 1 : 0;
  }
}

void check_shape(const IndexerTopkShape& s, const char* who) {
  const std::int64_t i32 = std::numeric_limits<std::int32_t>::max();
  if (s.rows < 0 || s.entries < 0 || s.heads < 1 || s.head_dim < 1 || s.heads > i32 || s.head_dim > i32 || s.k < 0 ||
      s.k > s.entries || s.offset < 0 || s.offset + s.entries > i32) {
    throw std::invalid_argument(std::string(who) +
                                ": need rows, entries ≥ 0, heads, head_dim ≥ 1, 0 ≤ k ≤ entries and "
                                "0 ≤ offset, offset + entries < 2^31");
  }
}

}  // namespace

void indexer_topk_device(const float* q, const float* w, const std::int32_t* visible, const float* cache,
                         const IndexerTopkShape& shape, float* scores, std::int32_t* list,
                         std::uint8_t* score_undecided, std::uint8_t* undecided, void* stream) {
  check_shape(shape, "indexer_topk_device");
  if (shape.rows == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  const std::int64_t pairs = shape.rows * shape.entries;
  if (pairs > 0) {
    const std::int64_t blocks = std::min((pairs + kWarps - 1) / kWarps, kMaxGrid);
    indexer_scores_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(
        q, w, visible, cache, shape.rows, shape.entries, static_cast<int>(shape.heads),
        static_cast<int>(shape.head_dim), scores, score_undecided);
    DSV4_CUDA_CHECK_LAUNCH("indexer_scores_kernel");
  }
  const std::int64_t blocks = std::min(shape.rows, kMaxGrid);
  indexer_topk_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, st>>>(
      scores, score_undecided, visible, shape.rows, shape.entries, shape.k, shape.offset, list, undecided);
  DSV4_CUDA_CHECK_LAUNCH("indexer_topk_kernel");
}

IndexerTopkBatch indexer_topk(const float* q, const float* w, const std::int32_t* visible, const float* cache,
                              const IndexerTopkShape& shape) {
  check_shape(shape, "indexer_topk");
  for (std::int64_t r = 0; r < shape.rows; ++r) {
    if (visible[r] < 0 || visible[r] > shape.entries) {
      throw std::invalid_argument("indexer_topk: visible[" + std::to_string(r) + "] = " + std::to_string(visible[r]) +
                                  " outside [0, entries = " + std::to_string(shape.entries) + "]");
    }
  }
  const auto R = static_cast<std::size_t>(shape.rows), E = static_cast<std::size_t>(shape.entries),
             H = static_cast<std::size_t>(shape.heads), D = static_cast<std::size_t>(shape.head_dim),
             K = static_cast<std::size_t>(shape.k);
  IndexerTopkBatch out;
  out.scores.resize(R * E);
  out.list.resize(R * K);
  if (R == 0) return out;
  detail::DeviceBuffer<float> d_q(R * H * D), d_w(R * H), d_cache(E * D), d_scores(R * E);
  detail::DeviceBuffer<std::int32_t> d_visible(R), d_list(R * K);
  detail::DeviceBuffer<std::uint8_t> d_score_undecided(R * E), d_undecided(R);
  d_q.upload(q);
  d_w.upload(w);
  d_cache.upload(cache);
  d_visible.upload(visible);
  indexer_topk_device(d_q.get(), d_w.get(), d_visible.get(), d_cache.get(), shape, d_scores.get(), d_list.get(),
                      d_score_undecided.get(), d_undecided.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_scores.download(out.scores.data());
  d_list.download(out.list.data());
  out.recomputed = detail::recompute_undecided(d_undecided, [&](std::size_t r) {
    detail::indexer_topk_reference(q + r * H * D, w + r * H, visible[r], cache, shape, out.scores.data() + r * E,
                                   out.list.data() + r * K);
  });
  return out;
}

}  // namespace dsv4::gpu
