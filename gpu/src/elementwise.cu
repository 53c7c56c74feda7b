// Element-wise kernels of one rounding (spec 01 §1.11 C6), bit-exact with the official-mode
// reference — see dsv4/gpu/elementwise.hpp for the arithmetic. One thread per element (grid-stride):
// an element's bits depend on its own operands alone.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/elementwise.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    add_kernel(const float* a, const float* b, std::int64_t n, bool bf16_out, float* y) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float v = __fadd_rn(a[i], b[i]);
    y[i] = bf16_out ? common::round_to_bf16(v) : v;
  }
}

__global__ void __launch_bounds__(kThreads)
    scale_kernel(const float* x, std::int64_t n, float c, bool bf16_out, float* y) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float v = __fmul_rn(x[i], c);
    y[i] = bf16_out ? common::round_to_bf16(v) : v;
  }
}

unsigned grid_of(std::int64_t n) {
  const std::int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid);
}

void check_n(std::int64_t n, const char* who) {
  if (n < 0) throw std::invalid_argument(std::string(who) + ": negative element count");
}

}  // namespace

void add_device(const float* a, const float* b, std::int64_t n, bool bf16_out, float* y, void* stream) {
  check_n(n, "add_device");
  if (n == 0) return;
  add_kernel<<<grid_of(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a, b, n, bf16_out, y);
  DSV4_CUDA_CHECK_LAUNCH("add_kernel");
}

void scale_device(const float* x, std::int64_t n, float c, bool bf16_out, float* y, void* stream) {
  check_n(n, "scale_device");
  if (n == 0) return;
  scale_kernel<<<grid_of(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, n, c, bf16_out, y);
  DSV4_CUDA_CHECK_LAUNCH("scale_kernel");
}

std::vector<float> add(const float* a, const float* b, std::int64_t n, bool bf16_out) {
  check_n(n, "add");
  std::vector<float> y(static_cast<std::size_t>(n));
  if (n == 0) return y;
  detail::DeviceBuffer<float> d_a(y.size()), d_b(y.size()), d_y(y.size());
  d_a.upload(a);
  d_b.upload(b);
  add_device(d_a.get(), d_b.get(), n, bf16_out, d_y.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(y.data());
  return y;
}

std::vector<float> scale(const float* x, std::int64_t n, double c, bool bf16_out) {
  check_n(n, "scale");
  std::vector<float> y(static_cast<std::size_t>(n));
  if (n == 0) return y;
  detail::DeviceBuffer<float> d_x(y.size()), d_y(y.size());
  d_x.upload(x);
  scale_device(d_x.get(), n, static_cast<float>(c), bf16_out, d_y.get(), nullptr);  // fl32(c), as the reference
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(y.data());
  return y;
}

}  // namespace dsv4::gpu
