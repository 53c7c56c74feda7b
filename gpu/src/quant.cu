// act_quant and fp4_act_quant kernels (spec 01 §1.3–§1.5), bit-exact with ref/numerics quant.cpp.
//
// One warp per quantisation block (B = 32, 64 or 128 consecutive elements of a row); lane l holds
// elements l, l+32, l+64, … of its block, so loads and stores are coalesced. The block's amax is a
// warp max-reduction (order-independent and exact), and nothing else crosses blocks: a block's bits
// depend only on its own B inputs, never on the batch size, on its position or on the grid. No
// atomics, no shared memory. Built with --fmad=false -prec-div=true -ftz=false (gpu/CMakeLists.txt):
// x / s is IEEE division, no product is contracted into an FMA, subnormals are kept.
#include <cuda_bf16.h>
#include <cuda_fp4.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/quant.hpp"

namespace dsv4::gpu {
namespace {

using namespace common;  // the format helpers and constants of gpu/common

constexpr int kWarpsPerCta = 8;
constexpr int kThreadsPerCta = 32 * kWarpsPerCta;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;  // grid-stride beyond this

// ---- spec 01 §1.4: act_quant. kElems = B / 32 elements per lane. ----
// kInplace: out[i] = bf16(fl32(fp32(q_i) × s)); else values[i] = q_i and the block's scale is written
// to scales_f32 / scales_e8m0 where non-null. `out` may alias `x` (no __restrict__).
template <int kElems, bool kRoundScale, bool kInplace>
__global__ void __launch_bounds__(kThreadsPerCta)
    act_quant_kernel(const float* x, float* out, std::uint8_t* values, float* scales_f32, std::uint8_t* scales_e8m0,
                     std::int64_t nblocks) {
  constexpr int kBlock = 32 * kElems;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const std::int64_t warp_stride = static_cast<std::int64_t>(gridDim.x) * kWarpsPerCta;
  for (std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32; b < nblocks;
       b += warp_stride) {  // warp-uniform loop: every lane of a warp runs the same iterations
    const std::int64_t base = b * kBlock + lane;
    float v[kElems];
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < kElems; ++k) {
      v[k] = x[base + 32 * k];
      amax = fmaxf(amax, fabsf(v[k]));
    }
    amax = fmaxf(warp_max(amax), kActQuantAmaxFloor);
    const float s = kRoundScale ? round_scale(amax, kInvFp8Max) : amax * kInvFp8Max;
#pragma unroll
    for (int k = 0; k < kElems; ++k) {
      const float t = clamp_std(v[k] / s, -kFp8Max, kFp8Max);
      const std::uint8_t q = static_cast<std::uint8_t>(__nv_cvt_float_to_fp8(t, __NV_SATFINITE, __NV_E4M3));
      if constexpr (kInplace) {
        out[base + 32 * k] = round_to_bf16(e4m3_to_float(q) * s);
      } else {
        values[base + 32 * k] = q;
      }
    }
    if constexpr (!kInplace) {
      if (lane == 0) {
        if (scales_f32 != nullptr) scales_f32[b] = s;
        if (scales_e8m0 != nullptr) scales_e8m0[b] = e8m0_of_pow2(s);
      }
    }
  }
}

// ---- spec 01 §1.5: fp4_act_quant, B = 32 (one element per lane) ----
template <bool kInplace>
__global__ void __launch_bounds__(kThreadsPerCta)
    fp4_act_quant_kernel(const float* x, float* out, std::uint8_t* packed, std::uint8_t* scales, std::int64_t nblocks) {
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const std::int64_t warp_stride = static_cast<std::int64_t>(gridDim.x) * kWarpsPerCta;
  for (std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32; b < nblocks;
       b += warp_stride) {
    const std::int64_t i = b * 32 + lane;
    const float v = x[i];
    const float amax = fmaxf(warp_max(fabsf(v)), kFp4AmaxFloor);
    const float s = round_scale(amax, kInvFp4Max);
    const float t = clamp_std(v / s, -kFp4Max, kFp4Max);
    const std::uint8_t q = static_cast<std::uint8_t>(__nv_cvt_float_to_fp4(t, __NV_E2M1, cudaRoundNearest) & 0xFu);
    if constexpr (kInplace) {
      out[i] = round_to_bf16(e2m1_to_float(q) * s);
    } else {
      const std::uint8_t hi = static_cast<std::uint8_t>(__shfl_down_sync(kFullMask, static_cast<unsigned>(q), 1));
      if ((lane & 1) == 0) packed[i / 2] = static_cast<std::uint8_t>(q | (hi << 4));
      if (lane == 0) scales[b] = e8m0_of_pow2(s);
    }
  }
}

// ---- launch helpers ----
cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

unsigned grid_for(std::int64_t nblocks) {
  return static_cast<unsigned>(std::min(kMaxGrid, (nblocks + kWarpsPerCta - 1) / kWarpsPerCta));
}

void check_shape(std::int64_t rows, std::int64_t cols, int block, const char* fn) {
  if (block != 32 && block != 64 && block != 128)
    throw std::invalid_argument(std::string(fn) + ": block must be 32, 64 or 128, got " + std::to_string(block));
  if (cols <= 0 || cols % block != 0)
    throw std::invalid_argument(std::string(fn) + ": cols = " + std::to_string(cols) +
                                " is not a positive multiple of the block " + std::to_string(block));
  if (rows < 0) throw std::invalid_argument(std::string(fn) + ": rows = " + std::to_string(rows) + " < 0");
}

std::int64_t rows_of(std::size_t n, std::int64_t cols, int block, const char* fn) {
  check_shape(0, cols, block, fn);
  if (n % static_cast<std::size_t>(cols) != 0)
    throw std::invalid_argument(std::string(fn) + ": " + std::to_string(n) +
                                " elements is not a whole number of rows of " + std::to_string(cols));
  return static_cast<std::int64_t>(n / static_cast<std::size_t>(cols));
}

template <int kElems, bool kInplace>
void launch_act_quant(const float* x, float* out, std::uint8_t* values, float* scales_f32, std::uint8_t* scales_e8m0,
                      std::int64_t nblocks, ScaleFormat fmt, cudaStream_t stream) {
  const unsigned grid = grid_for(nblocks);
  if (fmt == ScaleFormat::kUE8M0) {
    act_quant_kernel<kElems, true, kInplace>
        <<<grid, kThreadsPerCta, 0, stream>>>(x, out, values, scales_f32, scales_e8m0, nblocks);
  } else {
    act_quant_kernel<kElems, false, kInplace>
        <<<grid, kThreadsPerCta, 0, stream>>>(x, out, values, scales_f32, scales_e8m0, nblocks);
  }
  DSV4_CUDA_CHECK_LAUNCH("act_quant_kernel");
}

template <bool kInplace>
void dispatch_act_quant(const float* x, float* out, std::uint8_t* values, float* scales_f32, std::uint8_t* scales_e8m0,
                        std::int64_t nblocks, int block, ScaleFormat fmt, cudaStream_t stream) {
  switch (block) {
    case 32:
      launch_act_quant<1, kInplace>(x, out, values, scales_f32, scales_e8m0, nblocks, fmt, stream);
      break;
    case 64:
      launch_act_quant<2, kInplace>(x, out, values, scales_f32, scales_e8m0, nblocks, fmt, stream);
      break;
    default:
      launch_act_quant<4, kInplace>(x, out, values, scales_f32, scales_e8m0, nblocks, fmt, stream);
      break;
  }
}

}  // namespace

// ---- device-pointer API ----
void act_quant_device(const float* x, std::int64_t rows, std::int64_t cols, int block, ScaleFormat fmt,
                      std::uint8_t* values, float* scales_f32, std::uint8_t* scales_e8m0, void* stream) {
  check_shape(rows, cols, block, "act_quant_device");
  if (scales_f32 == nullptr && scales_e8m0 == nullptr)
    throw std::invalid_argument("act_quant_device: no scale output given");
  if (scales_e8m0 != nullptr && fmt != ScaleFormat::kUE8M0)
    throw std::invalid_argument("act_quant_device: e8m0 scales need ScaleFormat::kUE8M0");
  const std::int64_t nblocks = rows * (cols / block);
  if (nblocks == 0) return;
  dispatch_act_quant<false>(x, nullptr, values, scales_f32, scales_e8m0, nblocks, block, fmt, as_stream(stream));
}

void act_quant_inplace_device(float* x, std::int64_t rows, std::int64_t cols, int block, ScaleFormat fmt,
                              void* stream) {
  check_shape(rows, cols, block, "act_quant_inplace_device");
  const std::int64_t nblocks = rows * (cols / block);
  if (nblocks == 0) return;
  dispatch_act_quant<true>(x, x, nullptr, nullptr, nullptr, nblocks, block, fmt, as_stream(stream));
}

void fp4_act_quant_device(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* packed,
                          std::uint8_t* scales, void* stream) {
  check_shape(rows, cols, 32, "fp4_act_quant_device");
  const std::int64_t nblocks = rows * (cols / 32);
  if (nblocks == 0) return;
  fp4_act_quant_kernel<false>
      <<<grid_for(nblocks), kThreadsPerCta, 0, as_stream(stream)>>>(x, nullptr, packed, scales, nblocks);
  DSV4_CUDA_CHECK_LAUNCH("fp4_act_quant_kernel");
}

void fp4_act_quant_inplace_device(float* x, std::int64_t rows, std::int64_t cols, void* stream) {
  check_shape(rows, cols, 32, "fp4_act_quant_inplace_device");
  const std::int64_t nblocks = rows * (cols / 32);
  if (nblocks == 0) return;
  fp4_act_quant_kernel<true>
      <<<grid_for(nblocks), kThreadsPerCta, 0, as_stream(stream)>>>(x, x, nullptr, nullptr, nblocks);
  DSV4_CUDA_CHECK_LAUNCH("fp4_act_quant_kernel");
}

// ---- host API: copy in, run on the default stream, copy out (cudaMemcpy synchronises) ----
Fp8Blocks act_quant(const float* x, std::size_t n, std::int64_t cols, int block, ScaleFormat fmt) {
  const std::int64_t rows = rows_of(n, cols, block, "act_quant");
  Fp8Blocks r;
  r.rows = rows;
  r.cols = cols;
  r.block = block;
  r.values.resize(n);
  r.scales.resize(static_cast<std::size_t>(rows * (cols / block)));
  if (n == 0) return r;
  detail::DeviceBuffer<float> dx(n);
  detail::DeviceBuffer<std::uint8_t> dq(n);
  detail::DeviceBuffer<float> ds(r.scales.size());
  dx.upload(x);
  act_quant_device(dx.get(), rows, cols, block, fmt, dq.get(), ds.get(), nullptr, nullptr);
  dq.download(r.values.data());
  ds.download(r.scales.data());
  return r;
}

void act_quant_inplace(float* x, std::size_t n, std::int64_t cols, int block, ScaleFormat fmt) {
  const std::int64_t rows = rows_of(n, cols, block, "act_quant_inplace");
  if (n == 0) return;
  detail::DeviceBuffer<float> dx(n);
  dx.upload(x);
  act_quant_inplace_device(dx.get(), rows, cols, block, fmt, nullptr);
  dx.download(x);
}

Fp4Blocks fp4_act_quant(const float* x, std::size_t n, std::int64_t cols) {
  const std::int64_t rows = rows_of(n, cols, 32, "fp4_act_quant");
  Fp4Blocks r;
  r.rows = rows;
  r.cols = cols;
  r.packed.resize(n / 2);
  r.scales.resize(n / 32);
  if (n == 0) return r;
  detail::DeviceBuffer<float> dx(n);
  detail::DeviceBuffer<std::uint8_t> dp(r.packed.size());
  detail::DeviceBuffer<std::uint8_t> ds(r.scales.size());
  dx.upload(x);
  fp4_act_quant_device(dx.get(), rows, cols, dp.get(), ds.get(), nullptr);
  dp.download(r.packed.data());
  ds.download(r.scales.data());
  return r;
}

void fp4_act_quant_inplace(float* x, std::size_t n, std::int64_t cols) {
  const std::int64_t rows = rows_of(n, cols, 32, "fp4_act_quant_inplace");
  if (n == 0) return;
  detail::DeviceBuffer<float> dx(n);
  dx.upload(x);
  fp4_act_quant_inplace_device(dx.get(), rows, cols, nullptr);
  dx.download(x);
}

}  // namespace dsv4::gpu
