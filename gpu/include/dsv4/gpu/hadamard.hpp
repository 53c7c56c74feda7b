// GPU Walsh–Hadamard rotation (spec 01 §1.10; official code rotate_activation), bit-exact with the
// official-mode reference (dsv4/model/hadamard.hpp hadamard with Precision(Mode::kOfficial)) and
// batch-invariant: one thread block per size-N segment computes that segment from its own elements.
//
// The arithmetic is the reference's fixed fp32 order, not a C1 sum: u = fp32(x); radix-2 butterfly
// stages s = 0, 1, …, log2 N − 1 in increasing order, (u_i, u_{i+2^s}) ← (fl32(u_i + u_{i+2^s}),
// fl32(u_i − u_{i+2^s})) for every i with bit s clear; y = bf16(fl32(u × fl32(N^−1/2))). Every
// output element is decided on the device (nothing is recomputed on the host).
//
// Plain C++ header (no CUDA types). x holds fp32 values (bf16 values widened); CUDA failures throw
// dsv4::gpu::CudaError, bad arguments std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

// fl32(N^−1/2) exactly as the reference computes it (fp32 of the double std::pow(N, −0.5)).
float hadamard_scale(std::int64_t size);

// x [rows, cols] → y [rows, cols] (bf16 values): the rotation of every contiguous size-wide segment
// of every row; size ≤ 0 means cols. size must be a power of two dividing cols, ≤ 2^24.
std::vector<float> hadamard(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t size = 0);

// Device-pointer form; y may equal x (in place). size must be positive here.
void hadamard_device(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t size, float* y,
                     void* stream = nullptr);

}  // namespace dsv4::gpu
