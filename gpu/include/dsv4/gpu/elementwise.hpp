// GPU element-wise steps of one rounding each (spec 01 §1.11 C6), bit-exact with the official-mode
// reference (Precision(Mode::kOfficial)'s add, mul, fp32 and bf16, dsv4/model/precision.hpp) and
// batch-invariant (every element from its own operands alone):
//   add:   y = fl32(a + b), then bf16(y) when bf16_out — the compressor's position-biased scores
//          z̃ = fl32(W_gate·x + ape) (spec 02 §2.6.1) and the MTP input's bf16 sum (spec 05 §5.5);
//   scale: y = fl32(x × fl32(c)), then bf16(y) when bf16_out — the indexer's head weights
//          ω = bf16(fl32(W_w·x × fl32(c_I^-1/2 n_I^-1/2))) (spec 02 §2.7 step 3), and with c = 1 the
//          bf16 cast of the compressor's pooled rows (spec 02 §2.6.3 step 1).
// For fp32 operands the double a + b or a × b rounded to fp32 is the fp32 operation's correctly
// rounded result (53 ≥ 2·24 + 2: the double rounding is innocuous), so __fadd_rn / __fmul_rn are the
// reference's arithmetic. Every element is decided on the device.
//
// Plain C++ header (no CUDA types). Operands hold fp32 values; CUDA failures throw
// dsv4::gpu::CudaError.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

// a, b [n] → y [n].
std::vector<float> add(const float* a, const float* b, std::int64_t n, bool bf16_out);
// x [n] → y [n]; c is rounded to fp32 first, as the reference does.
std::vector<float> scale(const float* x, std::int64_t n, double c, bool bf16_out);

// Device-pointer forms; y may equal an operand (in place).
void add_device(const float* a, const float* b, std::int64_t n, bool bf16_out, float* y, void* stream = nullptr);
void scale_device(const float* x, std::int64_t n, float c, bool bf16_out, float* y, void* stream = nullptr);

}  // namespace dsv4::gpu
