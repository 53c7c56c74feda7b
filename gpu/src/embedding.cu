// Embedding row gather (spec 05 §5.1), bit-exact with the reference (ref/model/src/head.cpp
// embed_tokens): one thread per output element, grid-stride over rows × dim; each element is a
// copy of its table element (no arithmetic, so no rounding).
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/embedding.hpp"
#include "dsv4/gpu/resident.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    embedding_kernel(const std::int64_t* __restrict__ ids, std::int64_t rows, const float* __restrict__ embed,
                     std::int64_t vocab, std::int64_t dim, float* __restrict__ h) {
  const std::int64_t n = rows * dim;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = e / dim;
    const std::int64_t j = e - r * dim;
    const std::int64_t id = ids[r];
    h[e] = id >= 0 && id < vocab ? embed[id * dim + j] : __int_as_float(0x7fc00000);
  }
}

void check_args(std::int64_t rows, std::int64_t vocab, std::int64_t dim, const char* who) {
  if (rows < 0) throw std::invalid_argument(std::string(who) + ": rows must be non-negative");
  if (vocab < 1 || dim < 1) throw std::invalid_argument(std::string(who) + ": vocab and dim must be positive");
}

}  // namespace

void embedding_device(const std::int64_t* ids, std::int64_t rows, const float* embed, std::int64_t vocab,
                      std::int64_t dim, float* h, void* stream) {
  check_args(rows, vocab, dim, "embedding_device");
  const std::int64_t n = rows * dim;
  if (n == 0) return;
  const std::int64_t blocks = (n + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid);
  embedding_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(ids, rows, embed, vocab, dim, h);
  DSV4_CUDA_CHECK_LAUNCH("embedding_kernel");
}

namespace {

// The host forms' checks: the arguments and every id inside the vocabulary.
void check_host_args(const std::int64_t* ids, std::int64_t rows, std::int64_t vocab, std::int64_t dim) {
  check_args(rows, vocab, dim, "embedding");
  for (std::int64_t t = 0; t < rows; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      throw std::invalid_argument("token_ids: id " + std::to_string(ids[t]) + " at position " + std::to_string(t) +
                                  " outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
}

}  // namespace

std::vector<float> embedding_resident(const std::int64_t* ids, std::int64_t rows, const float* device_embed,
                                      std::int64_t vocab, std::int64_t dim) {
  check_host_args(ids, rows, vocab, dim);
  const std::size_t n = static_cast<std::size_t>(rows * dim);
  std::vector<float> h(n);
  if (n == 0) return h;
  detail::DeviceBuffer<std::int64_t> d_ids(static_cast<std::size_t>(rows));
  detail::DeviceBuffer<float> d_h(n);
  d_ids.upload(ids);
  embedding_device(d_ids.get(), rows, device_embed, vocab, dim, d_h.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_h.download(h.data());
  return h;
}

// The table uploaded for this call, then embedding_resident.
std::vector<float> embedding(const std::int64_t* ids, std::int64_t rows, const float* embed, std::int64_t vocab,
                             std::int64_t dim) {
  check_host_args(ids, rows, vocab, dim);  // before any CUDA call
  detail::DeviceBuffer<float> d_embed(rows * dim == 0 ? 0 : static_cast<std::size_t>(vocab * dim));
  d_embed.upload(embed);
  return embedding_resident(ids, rows, d_embed.get(), vocab, dim);
}

}  // namespace dsv4::gpu
