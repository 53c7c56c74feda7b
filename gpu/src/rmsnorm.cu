// RMSNorm kernel (spec 01 §1.11 C8), bit-exact with the official-mode reference
// (ref/model/src/rmsnorm.cpp) — see dsv4/gpu/rmsnorm.hpp for the arithmetic.
//
// One thread block of 256 threads per row (grid-stride over rows): thread t accumulates the squares
// of elements t, t + 256, … in double with their TwoSum errors kept (SumC1Comp), the block's parts
// are merged by warp butterflies and then in warp order by thread 0 (sum_c1_comp_block), thread 0
// computes r, then every thread writes its elements. A row's bits depend only on that row and the
// weight: no atomics, nothing across rows.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/rmsnorm.hpp"
#include "rmsnorm_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    rmsnorm_kernel(const float* __restrict__ x, std::int64_t rows, std::int64_t dim, const float* __restrict__ weight,
                   float inv_dim, float eps, float* __restrict__ y, std::uint8_t* __restrict__ undecided) {
  __shared__ float r_shared;
  __shared__ int ok_shared;
  const int tid = static_cast<int>(threadIdx.x);
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* xr = x + row * dim;
    common::SumC1Comp part;
    for (std::int64_t i = tid; i < dim; i += kThreads) {
      const double v = static_cast<double>(xr[i]);
      part.add(__dmul_rn(v, v));  // exact: a bf16 (or fp32) value squared fits a double
    }
    float sum = 0.0f;
    const bool sum_ok = common::sum_c1_comp_block<kThreads>(part, dim, &sum);
    if (tid == 0) {
      const float v = __fadd_rn(__fmul_rn(sum, inv_dim), eps);
      float r = 0.0f;
      const bool r_ok = common::rsqrt_c2_dev(v, &r);
      r_shared = r;
      ok_shared = sum_ok && r_ok ? 1 : 0;
    }
    __syncthreads();
    const float r = r_shared;
    for (std::int64_t i = tid; i < dim; i += kThreads) {
      const float z = __fmul_rn(xr[i], r);
      y[row * dim + i] = __bfloat162float(__float2bfloat16_rn(__fmul_rn(weight[i], z)));
    }
    if (tid == 0) undecided[row] = ok_shared != 0 ? 0 : 1;
    __syncthreads();  // r_shared / ok_shared are rewritten for the next row
  }
}

void check_args(std::int64_t rows, std::int64_t dim, const char* who) {
  if (rows < 0) throw std::invalid_argument(std::string(who) + ": rows must be non-negative");
  if (dim < 1 || dim > (std::int64_t{1} << 30))
    throw std::invalid_argument(std::string(who) + ": dim must be in [1, 2^30], got " + std::to_string(dim));
}

}  // namespace

void rmsnorm_device(const float* x, std::int64_t rows, std::int64_t dim, const float* weight, float eps, float* y,
                    std::uint8_t* undecided, void* stream) {
  check_args(rows, dim, "rmsnorm_device");
  if (rows == 0) return;
  const float inv_dim = static_cast<float>(1.0 / static_cast<double>(dim));  // fl32(1/dim), as the reference
  const unsigned grid = static_cast<unsigned>(rows < kMaxGrid ? rows : kMaxGrid);
  rmsnorm_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, rows, dim, weight, inv_dim, eps, y,
                                                                           undecided);
  DSV4_CUDA_CHECK_LAUNCH("rmsnorm_kernel");
}

RmsNormBatch rmsnorm(const float* x, std::int64_t rows, std::int64_t dim, const float* weight, double eps) {
  check_args(rows, dim, "rmsnorm");
  const std::size_t n = static_cast<std::size_t>(rows * dim), r = static_cast<std::size_t>(rows);
  RmsNormBatch out;
  out.y.resize(n);
  if (rows == 0) return out;
  detail::DeviceBuffer<float> d_x(n), d_w(static_cast<std::size_t>(dim)), d_y(n);
  detail::DeviceBuffer<std::uint8_t> d_u(r);
  d_x.upload(x);
  d_w.upload(weight);
  rmsnorm_device(d_x.get(), rows, dim, d_w.get(), static_cast<float>(eps), d_y.get(), d_u.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  out.recomputed = detail::recompute_undecided(d_u, [&](std::size_t i) {
    detail::rmsnorm_reference(x + i * static_cast<std::size_t>(dim), dim, weight, eps,
                              &out.y[i * static_cast<std::size_t>(dim)]);
  });
  return out;
}

}  // namespace dsv4::gpu
