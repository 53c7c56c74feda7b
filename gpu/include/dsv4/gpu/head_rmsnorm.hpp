// GPU per-head RMS normalisation of the queries (spec 02 §2.4 step 3; official code
// `q *= torch.rsqrt(q.square().mean(-1, keepdim=True) + eps)` on bf16 q), bit-exact with the
// official-mode reference (dsv4/model/rmsnorm.hpp head_rmsnorm_inplace with
// Precision(Mode::kOfficial)) and batch-invariant: one thread block per (row, head) segment computes
// that segment from its own elements alone.
//
// The arithmetic, each step a bf16 op (C6, C7): u_i = bf16(fl(q_i · q_i)); S the C1 sum of the u_i
// (each a bf16 value, exact in double: a compensated double sum rounded once to fp32,
// common::round_c1_comp); μ = bf16(fl(S × fl32(1/c))); v = bf16(fl(μ + fl32(eps))); r = bf16(C2
// rsqrt(v)); y_i = bf16(fl(q_i · r)). A segment whose sum or rsqrt the device cannot decide is
// flagged and the host entry point recomputes it with the CPU reference (`recomputed` counts them).
//
// Plain C++ header (no CUDA types). x holds fp32 values (bf16 values widened); CUDA failures throw
// dsv4::gpu::CudaError, bad arguments std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct HeadRmsNormBatch {
  std::vector<float> y;         // [rows, cols], bf16 values
  std::int64_t recomputed = 0;  // segments the device left undecided, recomputed by the CPU reference
};

// x [rows, cols], cols a multiple of head_dim: every contiguous head_dim-wide segment normalised;
// eps used as fl32(eps), as the reference does.
HeadRmsNormBatch head_rmsnorm(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim, double eps);

// Device-pointer form over `segments` contiguous segments of head_dim elements: writes y and
// undecided[g] (1 when segment g must be recomputed on the host).
void head_rmsnorm_device(const float* x, std::int64_t segments, std::int64_t head_dim, float eps, float* y,
                         std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
