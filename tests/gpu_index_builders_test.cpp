// GPU index-list builders (gpu/src/index_builders.cu) beyond the op registry's harness
// (tests/ops_test.cpp checks the lists bit for bit against the reference on every case, with batch
// invariance and reruns, when a GPU is present): the kernel's one formula (index_list_entry, which
// every thread calls) against the reference on the CPU over a grid of shapes — prefill and decode,
// the ring before, at and after its wrap, lengths shorter than the window and the ratio, ratio 4,
// 128 and none —; the widths and the argument checks (host code, no GPU needed); the device-pointer
// form with a row stride and implicit queries on a stream.
//
// Without a CUDA device the device test skips (CI has none); the others run anyway.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/index_builders.hpp"
#include "dsv4/model/index_builders.hpp"

namespace dsv4 {
namespace {

// The reference's lists of a call (as Attention composes them, spec 02 §2.11.2–§2.11.3).
IndexLists reference_lists(const gpu::IndexListsShape& s) {
  const bool prefill = s.start_pos == 0;
  IndexLists l = prefill ? window_lists_prefill(s.seqlen, s.window) : window_lists_decode(s.start_pos, s.window);
  if (s.ratio > 0) {
    l = concat_lists(
        l, prefill ? hca_lists_prefill(s.seqlen, s.ratio, s.offset) : hca_lists_decode(s.start_pos, s.ratio, s.offset));
  }
  return l;
}

std::vector<gpu::IndexListsShape> shapes() {
  std::vector<gpu::IndexListsShape> out;
  for (const std::int64_t window : {1, 4, 16, 128}) {
    for (const std::int64_t ratio : {0, 4, 128}) {
      for (const std::int64_t s : {1, 2, 3, 10, 15, 16, 17, 40, 127, 128, 129, 300}) {
        out.push_back({0, s, window, ratio, s});
      }
      for (const std::int64_t p : {1, 2, 3, 5, 14, 15, 16, 17, 126, 127, 128, 129, 255, 256, 1000, 4095}) {
        out.push_back({p, 1, window, ratio, window});
      }
    }
  }
  return out;
}

TEST(GpuIndexBuilders, TheKernelsFormulaIsTheReferenceOnTheCpu) {
  std::int64_t entries = 0, mismatches = 0, wrapped = 0, empty_compressed = 0;
  for (const gpu::IndexListsShape& s : shapes()) {
    const IndexLists want = reference_lists(s);
    const std::int64_t w_win = gpu::index_lists_window_width(s);
    ASSERT_EQ(gpu::index_lists_width(s), want.width) << s.start_pos << " " << s.seqlen << " " << s.window;
    ASSERT_EQ(w_win + gpu::index_lists_compressed_width(s), want.width);
    wrapped += s.start_pos >= s.window - 1 && s.start_pos > 0 ? 1 : 0;
    empty_compressed += s.ratio > 0 && gpu::index_lists_compressed_width(s) == 0 ? 1 : 0;
    for (std::int64_t t = 0; t < want.rows; ++t) {
      for (std::int64_t j = 0; j < want.width; ++j) {
        ++entries;
        const std::int64_t got = gpu::index_list_entry(t, j, w_win, s.start_pos, s.window, s.ratio, s.offset);
        if (got != want.at(t, j) && mismatches++ == 0) {
          ADD_FAILURE() << "start_pos " << s.start_pos << ", seqlen " << s.seqlen << ", window " << s.window
                        << ", ratio " << s.ratio << ": query " << t << ", column " << j << ": " << got << " vs "
                        << want.at(t, j);
        }
      }
    }
  }
  std::printf("%lld entries, %lld mismatches (%lld decode shapes after the wrap, %lld with no compressed entry)\n",
              static_cast<long long>(entries), static_cast<long long>(mismatches), static_cast<long long>(wrapped),
              static_cast<long long>(empty_compressed));
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(entries, 100000);
  EXPECT_GT(wrapped, 20);
  EXPECT_GT(empty_compressed, 20);
}

TEST(GpuIndexBuilders, WidthsAndArgumentChecks) {
  EXPECT_EQ(gpu::index_lists_width({0, 10, 16, 4, 10}), 10 + 2);    // s < n_win: width s
  EXPECT_EQ(gpu::index_lists_width({0, 100, 128, 128, 100}), 100);  // s < m: no compressed entry
  EXPECT_EQ(gpu::index_lists_width({1000, 1, 128, 128, 128}), 128 + 7);
  EXPECT_EQ(gpu::index_lists_width({5, 1, 16, 0, 16}), 16);
  const auto refused = [](gpu::IndexListsShape s) {
    EXPECT_THROW((void)gpu::index_lists_width(s), std::invalid_argument)
        << s.start_pos << " " << s.seqlen << " " << s.window << " " << s.ratio << " " << s.offset;
  };
  refused({-1, 1, 16, 4, 16});
  refused({0, 0, 16, 4, 0});
  refused({5, 2, 16, 4, 16});  // chunked prefill
  refused({0, 8, 0, 4, 8});
  refused({0, 8, 16, -1, 8});
  refused({0, 8, 16, 4, -1});
  refused({0, 8, 16, 4, std::int64_t{1} << 31});                                        // entries beyond int32
  EXPECT_NO_THROW((void)gpu::index_lists_width({0, 3, 16, 4, std::int64_t{1} << 31}));  // no compressed entry
  // Queries outside [0, seqlen) are refused by the host form before any CUDA call.
  const std::vector<std::int32_t> q = {0, 5};
  EXPECT_THROW((void)gpu::index_lists(q.data(), 2, {0, 5, 16, 4, 5}), std::invalid_argument);
}

// The device-pointer form: prefill lists of 3 sequences (queries nullptr: row r is query r mod s)
// into a buffer of row stride width + 5, on a stream — the first width columns equal the host
// form's (the reference's: ops_test), the others untouched; decode likewise; an explicit query
// outside [0, s) gives a row of −1.
TEST(GpuIndexBuilders, DevicePointerFormWithAStrideAndImplicitQueries) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  constexpr std::int32_t kSentinel = 0x5a5a5a5a;
  for (const gpu::IndexListsShape s :
       {gpu::IndexListsShape{0, 300, 128, 4, 300}, gpu::IndexListsShape{1000, 1, 128, 128, 128}}) {
    const std::int64_t seqs = 3, rows = seqs * s.seqlen, width = gpu::index_lists_width(s), ld = width + 5;
    std::vector<std::int32_t> queries(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r)
      queries[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(r % s.seqlen);
    const std::vector<std::int32_t> want = gpu::index_lists(queries.data(), rows, s);
    std::vector<std::int32_t> got(static_cast<std::size_t>(rows * ld), kSentinel);
    std::int32_t* d = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), got.size() * sizeof(std::int32_t)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d, got.data(), got.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice), cudaSuccess);
    gpu::index_lists_device(nullptr, rows, s, d, ld, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(got.data(), d, got.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost), cudaSuccess);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < ld; ++j) {
        const std::int32_t g = got[static_cast<std::size_t>(r * ld + j)];
        ASSERT_EQ(g, j < width ? want[static_cast<std::size_t>(r * width + j)] : kSentinel) << r << ", " << j;
      }
    }
    // An explicit query outside [0, s): a row of −1.
    std::int32_t* dq = nullptr;
    const std::int32_t bad = static_cast<std::int32_t>(s.seqlen);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dq), sizeof(std::int32_t)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dq, &bad, sizeof(std::int32_t), cudaMemcpyHostToDevice), cudaSuccess);
    gpu::index_lists_device(dq, 1, s, d, ld, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(got.data(), d, static_cast<std::size_t>(width) * sizeof(std::int32_t), cudaMemcpyDeviceToHost),
              cudaSuccess);
    for (std::int64_t j = 0; j < width; ++j) EXPECT_EQ(got[static_cast<std::size_t>(j)], -1) << j;
    EXPECT_EQ(cudaFree(dq), cudaSuccess);
    EXPECT_EQ(cudaFree(d), cudaSuccess);
  }
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

}  // namespace
}  // namespace dsv4
