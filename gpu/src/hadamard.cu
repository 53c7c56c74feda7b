// Walsh–Hadamard rotation kernel (spec 01 §1.10), bit-exact with the official-mode reference
// (ref/model/src/hadamard.cpp) — see dsv4/gpu/hadamard.hpp for the arithmetic.
//
// One thread block per segment of N elements (grid-stride over the rows × cols / N segments): the
// block loads its segment (into shared memory when N ≤ 8192, else it works in its own slice of y),
// then runs the log2 N butterfly stages in increasing order with a barrier after each; in a stage
// the N/2 pairs are disjoint, so which thread computes a pair changes no bit. A segment's bits
// depend only on that segment: no atomics, nothing across segments.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/hadamard.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kMaxThreads = 256;
constexpr std::int64_t kMaxShared = 8192;  // floats: 32 KiB of dynamic shared memory
constexpr std::int64_t kMaxSize = std::int64_t{1} << 24;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

// x and y may alias (in place): every element is read by the thread that later writes it, or read
// before a barrier that precedes every write.
template <bool kShared>
__global__ void __launch_bounds__(kMaxThreads)
    hadamard_kernel(const float* x, float* y, std::int64_t segments, std::int64_t n, float scale) {
  extern __shared__ float sh[];
  const std::int64_t tid = threadIdx.x, nt = blockDim.x, half = n / 2;
  for (std::int64_t seg = blockIdx.x; seg < segments; seg += gridDim.x) {
    const float* xs = x + seg * n;
    float* ys = y + seg * n;
    float* u = kShared ? sh : ys;
    for (std::int64_t i = tid; i < n; i += nt) u[i] = xs[i];
    __syncthreads();
    for (std::int64_t h = 1; h < n; h *= 2) {  // stage s: stride h = 2^s, increasing
      for (std::int64_t p = tid; p < half; p += nt) {
        const std::int64_t i = ((p & ~(h - 1)) << 1) | (p & (h - 1));  // the p-th index with bit s clear
        const float a = u[i];
        const float b = u[i + h];
        u[i] = __fadd_rn(a, b);
        u[i + h] = __fsub_rn(a, b);
      }
      __syncthreads();
    }
    for (std::int64_t i = tid; i < n; i += nt) ys[i] = common::round_to_bf16(__fmul_rn(u[i], scale));
    __syncthreads();  // the shared segment is rewritten by the next iteration
  }
}

std::int64_t check_args(std::int64_t rows, std::int64_t cols, std::int64_t size, const char* who) {
  if (rows < 0 || cols < 0) throw std::invalid_argument(std::string(who) + ": rows and cols must be non-negative");
  const std::int64_t n = size <= 0 ? cols : size;
  if (n <= 0 || (n & (n - 1)) != 0 || n > kMaxSize) {
    throw std::invalid_argument(std::string(who) + ": size " + std::to_string(n) +
                                " is not a power of two in [1, 2^24]");
  }
  if (cols % n != 0) {
    throw std::invalid_argument(std::string(who) + ": size " + std::to_string(n) + " does not divide the row length " +
                                std::to_string(cols));
  }
  return n;
}

}  // namespace

float hadamard_scale(std::int64_t size) {
  return static_cast<float>(std::pow(static_cast<double>(size), -0.5));  // the reference's p.fp32(pow(N, −0.5))
}

void hadamard_device(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t size, float* y, void* stream) {
  if (size <= 0) throw std::invalid_argument("hadamard_device: size must be positive");
  const std::int64_t n = check_args(rows, cols, size, "hadamard_device");
  const std::int64_t segments = rows * (cols / n);
  if (segments == 0) return;
  const std::int64_t pairs = n / 2;
  const int threads = static_cast<int>(pairs < 32 ? 32 : (pairs > kMaxThreads ? kMaxThreads : pairs));
  const unsigned grid = static_cast<unsigned>(segments < kMaxGrid ? segments : kMaxGrid);
  const float scale = hadamard_scale(n);
  auto* s = static_cast<cudaStream_t>(stream);
  if (n <= kMaxShared) {
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
    hadamard_kernel<true><<<grid, threads, bytes, s>>>(x, y, segments, n, scale);
  } else {
    hadamard_kernel<false><<<grid, threads, 0, s>>>(x, y, segments, n, scale);
  }
  DSV4_CUDA_CHECK_LAUNCH("hadamard_kernel");
}

std::vector<float> hadamard(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t size) {
  const std::int64_t n = check_args(rows, cols, size, "hadamard");
  const std::size_t count = static_cast<std::size_t>(rows * cols);
  std::vector<float> y(count);
  if (count == 0) return y;
  detail::DeviceBuffer<float> d_x(count), d_y(count);
  d_x.upload(x);
  hadamard_device(d_x.get(), rows, cols, n, d_y.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(y.data());
  return y;
}

}  // namespace dsv4::gpu
