// Interleaved partial RoPE kernel (spec 02 §2.3), bit-exact with the official-mode reference
// (ref/model/src/rope.cpp apply_rope_inplace) — see dsv4/gpu/rope.hpp for the arithmetic.
//
// One thread per unit, grid-stride over the rows × heads × (head_dim − r_d + r_d/2) units of the
// batch: a unit is one untouched dim (copied) or one rotated pair (both of its outputs). A unit
// reads only the elements it writes, so y may alias x, and which thread computes a unit changes no
// bit: no shared memory, no atomics, nothing across rows.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/resident.hpp"
#include "dsv4/gpu/rope.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    rope_kernel(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim,
                const std::int64_t* __restrict__ positions, const float* __restrict__ cos_t,
                const float* __restrict__ sin_t, std::int64_t table_positions, std::int64_t pairs, bool inverse,
                float* y) {
  const std::int64_t nope = head_dim - 2 * pairs;
  const std::int64_t per_head = nope + pairs;
  const std::int64_t per_row = (cols / head_dim) * per_head;
  const std::int64_t units = rows * per_row;
  for (std::int64_t u = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < units;
       u += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = u / per_row;
    const std::int64_t rest = u - row * per_row;
    const std::int64_t head = rest / per_head;
    const std::int64_t v = rest - head * per_head;
    const std::int64_t base = row * cols + head * head_dim;
    if (v < nope) {
      y[base + v] = x[base + v];
      continue;
    }
    const std::int64_t i = v - nope;
    const std::int64_t ia = base + nope + 2 * i;
    const std::int64_t t = positions[row];
    if (t < 0 || t >= table_positions) {
      y[ia] = __int_as_float(0x7fc00000);
      y[ia + 1] = __int_as_float(0x7fc00000);
      continue;
    }
    const float c = cos_t[t * pairs + i];
    const float s0 = sin_t[t * pairs + i];
    const float s = inverse ? -s0 : s0;
    const float a = x[ia];
    const float b = x[ia + 1];
    y[ia] = common::round_to_bf16(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
    y[ia + 1] = common::round_to_bf16(__fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c)));
  }
}

void check_args(std::int64_t rows, std::int64_t cols, std::int64_t head_dim, std::int64_t table_positions,
                std::int64_t rope_head_dim, const char* who) {
  const std::string w(who);
  if (rows < 0 || cols < 0 || table_positions < 0) {
    throw std::invalid_argument(w + ": rows, cols and table positions must be non-negative");
  }
  if (rope_head_dim <= 0 || rope_head_dim % 2 != 0) {
    throw std::invalid_argument(w + ": rope_head_dim " + std::to_string(rope_head_dim) + " must be positive and even");
  }
  if (head_dim < rope_head_dim || cols % head_dim != 0) {
    throw std::invalid_argument(w + ": head_dim " + std::to_string(head_dim) + " must be ≥ rope_head_dim " +
                                std::to_string(rope_head_dim) + " and divide the row length " + std::to_string(cols));
  }
}

}  // namespace

void rope_device(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim,
                 const std::int64_t* positions, const float* cos, const float* sin, std::int64_t table_positions,
                 std::int64_t rope_head_dim, bool inverse, float* y, void* stream) {
  check_args(rows, cols, head_dim, table_positions, rope_head_dim, "rope_device");
  const std::int64_t pairs = rope_head_dim / 2;
  const std::int64_t units = rows * (cols / head_dim) * (head_dim - pairs);
  if (units == 0) return;
  const std::int64_t blocks = (units + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid);
  rope_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, rows, cols, head_dim, positions, cos, sin,
                                                                        table_positions, pairs, inverse, y);
  DSV4_CUDA_CHECK_LAUNCH("rope_kernel");
}

namespace {

// The host forms' checks: the arguments and every position inside the table.
void check_host_args(std::int64_t rows, std::int64_t cols, std::int64_t head_dim, const std::int64_t* positions,
                     std::int64_t table_positions, std::int64_t rope_head_dim) {
  check_args(rows, cols, head_dim, table_positions, rope_head_dim, "rope");
  for (std::int64_t r = 0; r < rows; ++r) {
    if (positions[r] < 0 || positions[r] >= table_positions) {
      throw std::out_of_range("rope: position " + std::to_string(positions[r]) + " outside the table (" +
                              std::to_string(table_positions) + " positions)");
    }
  }
}

}  // namespace

std::vector<float> rope_resident(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim,
                                 const std::int64_t* positions, const float* device_cos, const float* device_sin,
                                 std::int64_t table_positions, std::int64_t rope_head_dim, bool inverse) {
  check_host_args(rows, cols, head_dim, positions, table_positions, rope_head_dim);
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  std::vector<float> y(n);
  if (n == 0) return y;
  detail::DeviceBuffer<float> d_x(n), d_y(n);
  detail::DeviceBuffer<std::int64_t> d_pos(static_cast<std::size_t>(rows));
  d_x.upload(x);
  d_pos.upload(positions);
  rope_device(d_x.get(), rows, cols, head_dim, d_pos.get(), device_cos, device_sin, table_positions, rope_head_dim,
              inverse, d_y.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(y.data());
  return y;
}

// The tables uploaded for this call, then rope_resident.
std::vector<float> rope(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim,
                        const std::int64_t* positions, const float* cos, const float* sin, std::int64_t table_positions,
                        std::int64_t rope_head_dim, bool inverse) {
  check_host_args(rows, cols, head_dim, positions, table_positions, rope_head_dim);  // before any CUDA call
  const std::size_t table = rows * cols == 0 ? 0 : static_cast<std::size_t>(table_positions * (rope_head_dim / 2));
  detail::DeviceBuffer<float> d_cos(table), d_sin(table);
  d_cos.upload(cos);
  d_sin.upload(sin);
  return rope_resident(x, rows, cols, head_dim, positions, d_cos.get(), d_sin.get(), table_positions, rope_head_dim,
                       inverse);
}

}  // namespace dsv4::gpu
