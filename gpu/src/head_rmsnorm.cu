// Per-head query RMS normalisation kernel (spec 02 §2.4 step 3), bit-exact with the official-mode
// reference (ref/model/src/rmsnorm.cpp head_rmsnorm_inplace) — see dsv4/gpu/head_rmsnorm.hpp for the
// arithmetic.
//
// One thread block of 128 threads per segment (grid-stride over the rows × cols / head_dim
// segments): thread t accumulates u_t, u_{t+128}, … in double with their TwoSum errors kept
// (SumC1Comp), the block's parts are merged by sum_c1_comp_block, thread 0 computes r, then every
// thread writes its elements. A segment's bits depend only on that segment: no atomics, nothing
// across segments.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/head_rmsnorm.hpp"
#include "rmsnorm_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 128;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    head_rmsnorm_kernel(const float* __restrict__ x, std::int64_t segments, std::int64_t head_dim, float inv_c,
                        float eps, float* __restrict__ y, std::uint8_t* __restrict__ undecided) {
  __shared__ float r_shared;
  __shared__ int ok_shared;
  const int tid = static_cast<int>(threadIdx.x);
  for (std::int64_t seg = blockIdx.x; seg < segments; seg += gridDim.x) {
    const float* q = x + seg * head_dim;
    common::SumC1Comp part;
    for (std::int64_t i = tid; i < head_dim; i += kThreads)
      part.add(static_cast<double>(common::round_to_bf16(__fmul_rn(q[i], q[i]))));  // u_i, a bf16 value
    float sum = 0.0f;
    const bool sum_ok = common::sum_c1_comp_block<kThreads>(part, head_dim, &sum);
    if (tid == 0) {
      const float mu = common::round_to_bf16(__fmul_rn(sum, inv_c));
      const float v = common::round_to_bf16(__fadd_rn(mu, eps));
      float r = 0.0f;
      const bool r_ok = common::rsqrt_c2_dev(v, &r);
      r_shared = common::round_to_bf16(r);
      ok_shared = sum_ok && r_ok ? 1 : 0;
    }
    __syncthreads();
    const float r = r_shared;
    for (std::int64_t i = tid; i < head_dim; i += kThreads)
      y[seg * head_dim + i] = common::round_to_bf16(__fmul_rn(q[i], r));
    if (tid == 0) undecided[seg] = ok_shared != 0 ? 0 : 1;
    __syncthreads();  // r_shared / ok_shared are rewritten for the next segment
  }
}

void check_args(std::int64_t rows, std::int64_t cols, std::int64_t head_dim, const char* who) {
  if (rows < 0 || cols < 0) throw std::invalid_argument(std::string(who) + ": rows and cols must be non-negative");
  if (head_dim < 1 || head_dim > (std::int64_t{1} << 30) || cols % head_dim != 0)
    throw std::invalid_argument(std::string(who) + ": head_dim " + std::to_string(head_dim) +
                                " must be in [1, 2^30] and divide the row length " + std::to_string(cols));
}

}  // namespace

void head_rmsnorm_device(const float* x, std::int64_t segments, std::int64_t head_dim, float eps, float* y,
                         std::uint8_t* undecided, void* stream) {
  check_args(segments, head_dim, head_dim, "head_rmsnorm_device");
  if (segments == 0) return;
  const float inv_c = static_cast<float>(1.0 / static_cast<double>(head_dim));  // fl32(1/c), as the reference
  const unsigned grid = static_cast<unsigned>(segments < kMaxGrid ? segments : kMaxGrid);
  head_rmsnorm_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, segments, head_dim, inv_c, eps, y,
                                                                                undecided);
  DSV4_CUDA_CHECK_LAUNCH("head_rmsnorm_kernel");
}

HeadRmsNormBatch head_rmsnorm(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim, double eps) {
  check_args(rows, cols, head_dim, "head_rmsnorm");
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  const std::int64_t segments = rows * (cols / head_dim);
  HeadRmsNormBatch out;
  out.y.resize(n);
  if (segments == 0) return out;
  detail::DeviceBuffer<float> d_x(n), d_y(n);
  detail::DeviceBuffer<std::uint8_t> d_u(static_cast<std::size_t>(segments));
  d_x.upload(x);
  head_rmsnorm_device(d_x.get(), segments, head_dim, static_cast<float>(eps), d_y.get(), d_u.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  const auto c = static_cast<std::size_t>(head_dim);
  out.recomputed = detail::recompute_undecided(
      d_u, [&](std::size_t g) { detail::head_rmsnorm_reference(x + g * c, head_dim, eps, &out.y[g * c]); });
  return out;
}

}  // namespace dsv4::gpu
