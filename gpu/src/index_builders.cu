// Index-list builders (spec 02 §2.8), bit-exact with the reference (ref/model/src/index_builders.cpp)
// — see dsv4/gpu/index_builders.hpp. One thread per list entry (row, column), grid-stride over rows ×
// width, each computing index_list_entry (the header's one formula, also run on the CPU by
// tests/gpu_index_builders_test); integer arithmetic only (int64, every value fits int32 by the host's checks), no
// shared memory, no atomics: an entry's value depends on its query and column alone.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/index_builders.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;
constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();

__global__ void __launch_bounds__(kThreads)
    index_lists_kernel(const std::int32_t* __restrict__ queries, std::int64_t rows, std::int64_t width,
                       std::int64_t w_win, std::int64_t start_pos, std::int64_t seqlen, std::int64_t window,
                       std::int64_t ratio, std::int64_t offset, std::int32_t* __restrict__ lists, std::int64_t ld) {
  const std::int64_t total = rows * width;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    const std::int64_t r = e / width, j = e % width;
    const std::int64_t t = queries != nullptr ? queries[r] : r % seqlen;
    const bool valid = t >= 0 && t < seqlen;
    lists[r * ld + j] =
        valid ? static_cast<std::int32_t>(index_list_entry(t, j, w_win, start_pos, window, ratio, offset)) : -1;
  }
}

void require(bool ok, const std::string& why) {
  if (!ok) throw std::invalid_argument("index_lists: " + why);
}

// The domain of the reference's builders; every entry must fit int32 (the reference's to_i32).
void check_shape(const IndexListsShape& s) {
  require(s.start_pos >= 0, "start_pos must be ≥ 0, got " + std::to_string(s.start_pos));
  require(s.seqlen >= 1 && s.seqlen <= kInt32Max, "seqlen must be in [1, 2^31), got " + std::to_string(s.seqlen));
  require(s.start_pos == 0 || s.seqlen == 1, "decode (start_pos > 0) takes one token, got seqlen " +
                                                 std::to_string(s.seqlen) +
                                                 " (chunked prefill is not supported, spec 02 §2.11.2)");
  require(s.window >= 1 && s.window <= kInt32Max, "window_size must be in [1, 2^31), got " + std::to_string(s.window));
  require(s.ratio >= 0, "compress_ratio must be ≥ 0, got " + std::to_string(s.ratio));
  require(s.offset >= 0, "offset must be ≥ 0, got " + std::to_string(s.offset));
  if (s.ratio > 0) {
    const std::int64_t w = s.start_pos == 0 ? s.seqlen / s.ratio : (s.start_pos + 1) / s.ratio;
    require(w == 0 || s.offset <= kInt32Max - (w - 1),
            "compressed entry " + std::to_string(s.offset) + " + " + std::to_string(w - 1) + " does not fit int32");
  }
}

}  // namespace

std::int64_t index_lists_window_width(const IndexListsShape& shape) {
  check_shape(shape);
  return shape.start_pos == 0 ? std::min(shape.seqlen, shape.window) : shape.window;
}

std::int64_t index_lists_compressed_width(const IndexListsShape& shape) {
  check_shape(shape);
  if (shape.ratio == 0) return 0;
  return shape.start_pos == 0 ? shape.seqlen / shape.ratio : (shape.start_pos + 1) / shape.ratio;
}

std::int64_t index_lists_width(const IndexListsShape& shape) {
  return index_lists_window_width(shape) + index_lists_compressed_width(shape);
}

void index_lists_device(const std::int32_t* queries, std::int64_t rows, const IndexListsShape& shape,
                        std::int32_t* lists, std::int64_t ld, void* stream) {
  const std::int64_t w_win = index_lists_window_width(shape), width = w_win + index_lists_compressed_width(shape);
  require(rows >= 0, "rows must be ≥ 0, got " + std::to_string(rows));
  require(ld >= width, "row stride ld = " + std::to_string(ld) + " below the list width " + std::to_string(width));
  if (rows == 0) return;
  require(lists != nullptr, "lists is null");
  const unsigned grid = static_cast<unsigned>(std::min((rows * width + kThreads - 1) / kThreads, kMaxGrid));
  index_lists_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      queries, rows, width, w_win, shape.start_pos, shape.seqlen, shape.window, shape.ratio, shape.offset, lists, ld);
  DSV4_CUDA_CHECK_LAUNCH("index_lists_kernel");
}

std::vector<std::int32_t> index_lists(const std::int32_t* queries, std::int64_t rows, const IndexListsShape& shape) {
  const std::int64_t width = index_lists_width(shape);
  require(rows >= 0, "rows must be ≥ 0, got " + std::to_string(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    require(queries[r] >= 0 && queries[r] < shape.seqlen,
            "query " + std::to_string(queries[r]) + " of row " + std::to_string(r) +
                " outside [0, seqlen = " + std::to_string(shape.seqlen) + ")");
  }
  const std::size_t n = static_cast<std::size_t>(rows * width);
  std::vector<std::int32_t> out(n);
  if (n == 0) return out;
  detail::DeviceBuffer<std::int32_t> d_q(static_cast<std::size_t>(rows)), d_lists(n);
  d_q.upload(queries);
  index_lists_device(d_q.get(), rows, shape, d_lists.get(), width, nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_lists.download(out.data());
  return out;
}

}  // namespace dsv4::gpu
