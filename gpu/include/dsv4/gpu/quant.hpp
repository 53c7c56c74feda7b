// GPU act_quant and fp4_act_quant (spec 01 §1.3–§1.5), bit-exact with the CPU reference
// (dsv4/numerics/quant.hpp) and batch-invariant: every quantisation block is computed by one warp
// from that block's elements alone, so a row's bits never depend on the batch size, on the row's
// position in the batch or on the launch configuration.
//
// Inputs are fp32 values (every bf16 value is one; the official kernels widen bf16 to fp32 before
// any arithmetic). Rows are contiguous, `cols` elements each; blocks start at element 0 of a row.
//
// This header is plain C++17 (no CUDA types): host code compiled by g++ includes it. Two kinds of
// entry points:
// - host functions take host memory, copy it to the device, run the kernel, copy the result back
//   and synchronise;
// - *_device functions take device pointers and a stream (a cudaStream_t passed as void*, nullptr =
//   the default stream); they only enqueue work (asynchronous).
// Every CUDA failure throws dsv4::gpu::CudaError naming the call; bad shapes throw
// std::invalid_argument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/numerics/quant_blocks.hpp"

namespace dsv4::gpu {

// The result types are the reference's own (dsv4/numerics/quant_blocks.hpp, C++17-clean).
using dsv4::Fp4Blocks;
using dsv4::Fp8Blocks;
using dsv4::ScaleFormat;

// ---- spec 01 §1.4: act_quant (block 128 or 64; 32 is accepted too) ----
// (values, scales) form. x holds n = rows × cols host floats.
Fp8Blocks act_quant(const float* x, std::size_t n, std::int64_t cols, int block, ScaleFormat fmt);
inline Fp8Blocks act_quant(const std::vector<float>& x, std::int64_t cols, int block, ScaleFormat fmt) {
  return act_quant(x.data(), x.size(), cols, block, fmt);
}
// In-place form: x ← bf16(fl32(fp32(q) × s)) (every output is a bf16 value, stored as float).
void act_quant_inplace(float* x, std::size_t n, std::int64_t cols, int block, ScaleFormat fmt);
inline void act_quant_inplace(std::vector<float>& x, std::int64_t cols, int block, ScaleFormat fmt) {
  act_quant_inplace(x.data(), x.size(), cols, block, fmt);
}

// ---- spec 01 §1.5: fp4_act_quant (block 32, power-of-two e8m0 scales) ----
Fp4Blocks fp4_act_quant(const float* x, std::size_t n, std::int64_t cols);
inline Fp4Blocks fp4_act_quant(const std::vector<float>& x, std::int64_t cols) {
  return fp4_act_quant(x.data(), x.size(), cols);
}
void fp4_act_quant_inplace(float* x, std::size_t n, std::int64_t cols);
inline void fp4_act_quant_inplace(std::vector<float>& x, std::int64_t cols) {
  fp4_act_quant_inplace(x.data(), x.size(), cols);
}

// ---- device-pointer variants (asynchronous on `stream`) ----
// values: rows × cols bytes. scales_f32 (rows × cols/block floats) and scales_e8m0 (rows × cols/block
// bytes, kUE8M0 only) may each be nullptr; at least one must be given.
void act_quant_device(const float* x, std::int64_t rows, std::int64_t cols, int block, ScaleFormat fmt,
                      std::uint8_t* values, float* scales_f32, std::uint8_t* scales_e8m0, void* stream = nullptr);
void act_quant_inplace_device(float* x, std::int64_t rows, std::int64_t cols, int block, ScaleFormat fmt,
                              void* stream = nullptr);
// packed: rows × cols/2 bytes; scales: rows × cols/32 e8m0 bytes.
void fp4_act_quant_device(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* packed,
                          std::uint8_t* scales, void* stream = nullptr);
void fp4_act_quant_inplace_device(float* x, std::int64_t rows, std::int64_t cols, void* stream = nullptr);

}  // namespace dsv4::gpu
