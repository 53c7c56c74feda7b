// GPU indexer scores and top-k (gpu/src/indexer_topk.cu) beyond the op registry's harness
// (tests/ops_test.cpp checks the scores and the lists bit for bit against the official-mode
// reference on every case of the registry, with batch invariance and reruns):
// - a host port of the two kernels' operation sequence (the 32 lanes of a warp and their butterfly
//   merges simulated; tests/support/canonical_port.hpp for the canonical helpers) against the
//   reference on the registry's cases of seeds 1–2, bit for bit on every row it decides, and how
//   many rows it leaves to the host — the kernels' arithmetic checked without a GPU;
// - the reference's tie rule and masks on a hand-made case (equal scores by ascending index,
//   fewer visible entries than k: −1);
// - on a device: the rate of host-recomputed rows, the device-pointer form on a stream;
// - the argument checks.
//
// Without a CUDA device the GPU tests skip (CI has none); the port, the tie rule and the argument
// checks run anyway.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/indexer_topk.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/canonical_port.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

namespace port = test::port;

// canonical.cuh merge_comp.
port::SumC1Comp merge_comp(const port::SumC1Comp& a, const port::SumC1Comp& b) {
  port::SumC1Comp r = a;
  r.add(b.s);
  r.c = r.c + b.c;
  r.cmag = r.cmag + b.cmag;
  r.exact = r.exact && b.exact;
  return r;
}

// canonical.cuh warp_merge_comp as lane 0 sees it: the 32 lanes' parts merged by xor butterflies.
port::SumC1Comp warp_merge_lane0(std::array<port::SumC1Comp, 32> p) {
  for (int m = 16; m > 0; m >>= 1) {
    std::array<port::SumC1Comp, 32> next;
    for (int l = 0; l < 32; ++l)
      next[static_cast<std::size_t>(l)] =
          merge_comp(p[static_cast<std::size_t>(l)], p[static_cast<std::size_t>(l ^ m)]);
    p = next;
  }
  return p[0];
}

float bf16(float v) { return round_bf16(static_cast<double>(v)); }

struct PortScore {
  float score = 0.0f;
  bool decided = true;
};

// indexer_scores_kernel for one (row, visible entry), lane 0's view.
PortScore score_port(const float* qr, const float* wr, const float* kr, int heads, int head_dim) {
  bool ok = true;
  port::SumC1Comp total;
  for (int h = 0; h < heads; ++h) {
    std::array<port::SumC1Comp, 32> parts;
    for (int lane = 0; lane < 32; ++lane) {
      for (int d = lane; d < head_dim; d += 32) {
        parts[static_cast<std::size_t>(lane)].add(static_cast<double>(qr[h * head_dim + d]) *
                                                  static_cast<double>(kr[d]));
      }
    }
    const port::SumC1Comp all = warp_merge_lane0(parts);
    float dot = 0.0f;
    ok = port::round_c1_comp(all, head_dim + 32, &dot) && ok;
    if (!std::isfinite(all.s)) ok = false;
    const float s = bf16(dot);
    const float relu = s < 0.0f ? 0.0f : s;
    const float prod = bf16(relu * wr[h]);
    if (!std::isfinite(prod)) ok = false;
    total.add(static_cast<double>(prod));
  }
  PortScore r;
  float sum = 0.0f;
  ok = port::round_c1_comp(total, heads, &sum) && ok;
  r.score = bf16(sum);
  r.decided = ok;
  return r;
}

// indexer_topk_kernel for one row: each candidate's rank by counting.
std::vector<float> topk_port(const std::vector<float>& s, std::int64_t k, std::int64_t visible, std::int64_t offset) {
  std::vector<float> list(static_cast<std::size_t>(k), NAN);
  const auto key = [](float v) { return std::isnan(v) ? -INFINITY : v; };
  for (std::size_t i = 0; i < s.size(); ++i) {
    std::int64_t rank = 0;
    for (std::size_t j = 0; j < s.size(); ++j)
      rank += (key(s[j]) > key(s[i]) || (key(s[j]) == key(s[i]) && j < i)) ? 1 : 0;
    if (rank < k) {
      list[static_cast<std::size_t>(rank)] =
          static_cast<std::int64_t>(i) >= visible ? -1.0f : static_cast<float>(static_cast<std::int64_t>(i) + offset);
    }
  }
  return list;
}

TEST(GpuIndexerTopk, HostPortOfTheKernelsMatchesTheReference) {
  const ops::Op& op = *ops::find_op("indexer_topk");
  std::int64_t rows = 0, undecided_rows = 0, scores = 0, tied_cuts = 0, masked_slots = 0;
  for (const std::uint64_t seed : {1u, 2u}) {
    for (const ops::Case& c : op.cases(seed)) {
      const ops::Outputs want = op.reference(c.call);
      const std::int64_t heads = c.call.ints[0], offset = c.call.ints[2];
      const ops::Array &q = c.call.inputs[0], &w = c.call.inputs[1], &vis = c.call.inputs[2], &cache = c.call.inputs[3];
      const std::int64_t E = cache.rows, D = cache.cols, k = want[1].cols;
      std::int64_t case_undecided = 0;
      for (std::int64_t r = 0; r < q.rows; ++r) {
        const auto visible = static_cast<std::int64_t>(vis.f32[static_cast<std::size_t>(r)]);
        std::vector<float> s(static_cast<std::size_t>(E), -INFINITY);
        bool decided = true;
        for (std::int64_t tau = 0; tau < std::min(visible, E); ++tau) {
          const PortScore p = score_port(q.f32.data() + r * q.cols, w.f32.data() + r * heads,
                                         cache.f32.data() + tau * D, static_cast<int>(heads), static_cast<int>(D));
          s[static_cast<std::size_t>(tau)] = p.score;
          decided = decided && p.decided;
        }
        if (!decided) {
          ++case_undecided;
          continue;
        }
        for (std::int64_t tau = 0; tau < E; ++tau) {
          ASSERT_EQ(std::bit_cast<std::uint32_t>(s[static_cast<std::size_t>(tau)]),
                    std::bit_cast<std::uint32_t>(want[0].f32[static_cast<std::size_t>(r * E + tau)]))
              << c.label << " (seed " << seed << "): row " << r << " entry " << tau;
        }
        std::vector<float> sorted = s;
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        if (k < E && sorted[static_cast<std::size_t>(k - 1)] == sorted[static_cast<std::size_t>(k)] &&
            std::isfinite(sorted[static_cast<std::size_t>(k)])) {
          ++tied_cuts;  // the tie rule decides the set
        }
        const std::vector<float> list = topk_port(s, k, visible, offset);
        masked_slots += std::count(list.begin(), list.end(), -1.0f);
        for (std::int64_t j = 0; j < k; ++j) {
          ASSERT_EQ(list[static_cast<std::size_t>(j)], want[1].f32[static_cast<std::size_t>(r * k + j)])
              << c.label << " (seed " << seed << "): row " << r << " slot " << j;
        }
      }
      std::printf("seed %llu, %s: %lld of %lld rows undecided\n", static_cast<unsigned long long>(seed),
                  c.label.c_str(), static_cast<long long>(case_undecided), static_cast<long long>(q.rows));
      rows += q.rows;
      scores += q.rows * E;
      undecided_rows += case_undecided;
    }
  }
  std::printf(
      "%lld rows, %lld scores: %lld rows undecided (recomputed on the host); %lld rows with a tie at the cut, "
      "%lld list slots −1\n",
      static_cast<long long>(rows), static_cast<long long>(scores), static_cast<long long>(undecided_rows),
      static_cast<long long>(tied_cuts), static_cast<long long>(masked_slots));
  EXPECT_GT(rows, 400);
  EXPECT_GT(tied_cuts, 10);  // the cases reach the tie rule and the masks
  EXPECT_GT(masked_slots, 100);
  EXPECT_LE(undecided_rows * 100, rows);
}

// The reference's C4 rule on a hand-made case (1 head of 32 dims, 5 entries, k = 4, offset 10):
// entries 0–3 equal (0.5 everywhere), entry 4 larger in dim 0. Row 0 (q all 1, 4 visible): the tie
// by ascending index; row 1 (2 visible): the masked entries 2, 3 fill slots 2, 3 as −1; row 2 (none
// visible): all −1; row 3 (q = e_0, all visible): entry 4 first, then the tie. The device (when
// present) gives the same lists.
TEST(GpuIndexerTopk, TieRuleAndMasks) {
  const ops::Op& op = *ops::find_op("indexer_topk");
  ops::Call c;
  c.ints = {1, 4, 10};  // 1 head, top 4, offset 10
  std::vector<float> cache(5 * 32, 0.5f);
  std::vector<float> q(4 * 32, 1.0f);
  for (int d = 0; d < 32; ++d) q[3 * 32 + static_cast<std::size_t>(d)] = d == 0 ? 1.0f : 0.0f;
  cache[4 * 32] = 2.0f;
  ops::Array ca = ops::Array::floats("cache", 5, 32, cache);
  ca.per_row = false;
  c.inputs = {ops::Array::floats("q", 4, 32, q), ops::Array::floats("weights", 4, 1, {1.0f, 1.0f, 1.0f, 1.0f}),
              ops::Array::floats("visible", 4, 1, {4.0f, 2.0f, 0.0f, 5.0f}), std::move(ca)};
  const ops::Outputs out = op.reference(c);
  ASSERT_EQ(out[1].cols, 4);
  const std::vector<float> want = {10, 11, 12, 13,   // entries 0..3 tie, entry 4 masked
                                   10, 11, -1, -1,   // two visible
                                   -1, -1, -1, -1,   // none visible
                                   14, 10, 11, 12};  // entry 4 first, the rest tied
  EXPECT_EQ(out[1].f32, want);
  EXPECT_EQ(out[0].f32[4], -INFINITY);
  EXPECT_EQ(out[0].f32[0], bf16(16.0f));  // 32 · 0.5
  if (gpu::gpu_available()) {
    const std::vector<std::int32_t> vis = {4, 2, 0, 5};
    gpu::IndexerTopkShape shape{4, 5, 1, 32, 4, 10};
    const gpu::IndexerTopkBatch g =
        gpu::indexer_topk(q.data(), c.inputs[1].f32.data(), vis.data(), cache.data(), shape);
    EXPECT_EQ(std::vector<float>(g.list.begin(), g.list.end()), want);
  }
}

TEST(GpuIndexerTopk, DeviceDecidesNearlyEveryRow) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  test::expect_device_decides("indexer_topk", "rows", 200, 100, [](const ops::Case& c) {
    const ops::Array& q = c.call.inputs[0];
    const ops::Array& cache = c.call.inputs[3];
    std::vector<std::int32_t> vis;
    for (const float v : c.call.inputs[2].f32) vis.push_back(static_cast<std::int32_t>(v));
    gpu::IndexerTopkShape shape{
        q.rows, cache.rows, c.call.ints[0], cache.cols, std::min(c.call.ints[1], cache.rows), c.call.ints[2]};
    const gpu::IndexerTopkBatch out =
        gpu::indexer_topk(q.f32.data(), c.call.inputs[1].f32.data(), vis.data(), cache.f32.data(), shape);
    return std::pair{out.recomputed, q.rows};
  });
}

// indexer_topk_device on device pointers and a stream: every row it decides equals the host form's
// (which is the reference's, ops_test).
TEST(GpuIndexerTopk, DevicePointerFormOnAStream) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const ops::Case& c : ops::find_op("indexer_topk")->cases(2)) {
    const ops::Array &q = c.call.inputs[0], &w = c.call.inputs[1], &cache = c.call.inputs[3];
    std::vector<std::int32_t> vis;
    for (const float v : c.call.inputs[2].f32) vis.push_back(static_cast<std::int32_t>(v));
    const gpu::IndexerTopkShape shape{
        q.rows, cache.rows, c.call.ints[0], cache.cols, std::min(c.call.ints[1], cache.rows), c.call.ints[2]};
    const gpu::IndexerTopkBatch want =
        gpu::indexer_topk(q.f32.data(), w.f32.data(), vis.data(), cache.f32.data(), shape);
    const std::size_t R = static_cast<std::size_t>(q.rows), E = static_cast<std::size_t>(cache.rows),
                      K = static_cast<std::size_t>(shape.k);
    float *d_q = nullptr, *d_w = nullptr, *d_cache = nullptr, *d_scores = nullptr;
    std::int32_t *d_vis = nullptr, *d_list = nullptr;
    std::uint8_t *d_sflags = nullptr, *d_flags = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_q), q.f32.size() * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_w), w.f32.size() * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_cache), cache.f32.size() * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_scores), R * E * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_vis), R * sizeof(std::int32_t)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_list), R * K * sizeof(std::int32_t)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_sflags), R * E), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_flags), R), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_q, q.f32.data(), q.f32.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_w, w.f32.data(), w.f32.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_cache, cache.f32.data(), cache.f32.size() * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_vis, vis.data(), R * sizeof(std::int32_t), cudaMemcpyHostToDevice), cudaSuccess);
    gpu::indexer_topk_device(d_q, d_w, d_vis, d_cache, shape, d_scores, d_list, d_sflags, d_flags, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<float> scores(R * E);
    std::vector<std::int32_t> list(R * K);
    std::vector<std::uint8_t> flags(R);
    ASSERT_EQ(cudaMemcpy(scores.data(), d_scores, R * E * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(list.data(), d_list, R * K * sizeof(std::int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(flags.data(), d_flags, R, cudaMemcpyDeviceToHost), cudaSuccess);
    for (std::size_t r = 0; r < R; ++r) {
      if (flags[r] != 0) continue;
      for (std::size_t t = 0; t < E; ++t) {
        ASSERT_EQ(std::bit_cast<std::uint32_t>(scores[r * E + t]), std::bit_cast<std::uint32_t>(want.scores[r * E + t]))
            << c.label << " row " << r << " entry " << t;
      }
      for (std::size_t j = 0; j < K; ++j) ASSERT_EQ(list[r * K + j], want.list[r * K + j]) << c.label << " row " << r;
    }
    for (void* p : {static_cast<void*>(d_q), static_cast<void*>(d_w), static_cast<void*>(d_cache),
                    static_cast<void*>(d_scores), static_cast<void*>(d_vis), static_cast<void*>(d_list),
                    static_cast<void*>(d_sflags), static_cast<void*>(d_flags)}) {
      ASSERT_EQ(cudaFree(p), cudaSuccess);
    }
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(GpuIndexerTopk, BadArgumentsNamed) {
  const std::vector<float> v(256, 1.0f);
  const std::vector<std::int32_t> vis = {1, 9};
  EXPECT_THROW(gpu::indexer_topk(v.data(), v.data(), vis.data(), v.data(), {-1, 4, 1, 32, 2, 0}),
               std::invalid_argument);
  EXPECT_THROW(gpu::indexer_topk(v.data(), v.data(), vis.data(), v.data(), {1, 4, 0, 32, 2, 0}), std::invalid_argument);
  EXPECT_THROW(gpu::indexer_topk(v.data(), v.data(), vis.data(), v.data(), {1, 4, 1, 32, 5, 0}),
               std::invalid_argument);  // k > entries
  EXPECT_THROW(gpu::indexer_topk(v.data(), v.data(), vis.data(), v.data(), {1, 4, 1, 32, 2, -1}),
               std::invalid_argument);
  EXPECT_THROW(gpu::indexer_topk(v.data(), v.data(), vis.data(), v.data(), {2, 4, 1, 32, 2, 0}),
               std::invalid_argument);  // visible[1] = 9 > entries
  EXPECT_NO_THROW(gpu::indexer_topk(v.data(), v.data(), vis.data(), v.data(), {0, 4, 1, 32, 2, 0}));  // no rows
}

}  // namespace
}  // namespace dsv4
