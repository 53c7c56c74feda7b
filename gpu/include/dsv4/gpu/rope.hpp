// GPU interleaved partial RoPE and its inverse (spec 02 §2.3; official code apply_rotary_emb),
// bit-exact with the official-mode reference (dsv4/model/rope.hpp apply_rope_inplace with
// Precision(Mode::kOfficial)) and batch-invariant: every output element depends on its own pair of
// inputs, the row's position and the table alone.
//
// The table is the reference's (rope_table: YaRN frequencies, θ = fl32(fp32(t)·f_i), C2 cos and
// sin correctly rounded), computed once on the host like the official precompute_freqs_cis and
// passed in as fp32 [positions, r_d/2] cos and sin. Per pair (a, b) = (x[2i], x[2i+1]) of the last
// r_d dims of every head_dim-wide head, with c = cos[t, i] and s = sin[t, i] (s = −sin[t, i] for
// the inverse): a' = bf16(fl(fl(a·c) − fl(b·s))), b' = bf16(fl(fl(a·s) + fl(b·c))) — each product
// and the sum a separate fp32 rounding (no FMA). The first head_dim − r_d dims are copied unchanged.
// Every element is decided on the device.
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument, a position outside the table std::out_of_range (as the reference).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

// x [rows, cols] (fp32 values; bf16 in the model), positions [rows], cos / sin [table_positions,
// rope_head_dim / 2] → y [rows, cols]. head_dim ≥ rope_head_dim must divide cols; rope_head_dim
// positive and even.
std::vector<float> rope(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim,
                        const std::int64_t* positions, const float* cos, const float* sin, std::int64_t table_positions,
                        std::int64_t rope_head_dim, bool inverse);

// Device-pointer form; y may equal x (in place). A position outside [0, table_positions) is not
// read from the table: its row's rotated dims are written as NaN (the host form refuses it first).
void rope_device(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim,
                 const std::int64_t* positions, const float* cos, const float* sin, std::int64_t table_positions,
                 std::int64_t rope_head_dim, bool inverse, float* y, void* stream = nullptr);

}  // namespace dsv4::gpu
