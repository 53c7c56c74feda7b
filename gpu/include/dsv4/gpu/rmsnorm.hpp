// GPU RMSNorm (spec 01 §1.11 C8), bit-exact with the official-mode reference (dsv4/model/rmsnorm.hpp
// rmsnorm with Precision(Mode::kOfficial)) and batch-invariant: one thread block per row computes
// that row from its own elements and the weight alone.
//
// The canonical arithmetic on the device: the squares x_i² are exact in double; their C1 sum is a
// double sum over the block's threads with the TwoSum errors kept and summed (compensated: the exact
// sum is s + Σ err), rounded once to fp32 when s + Σ err within the error sum's bound lies inside
// one float's rounding range (always when every TwoSum error is zero; common::round_c1_comp); v =
// fl(S × fl32(1/dim)); r = C2 rsqrt(fl(v + fl32(eps))) correctly rounded; y_i = bf16(fl(w_i ·
// fl(x_i · r))). A row whose sum or rsqrt the device cannot decide is flagged and the host entry
// point recomputes it with the CPU reference (`recomputed` counts them).
//
// Plain C++ header (no CUDA types). x and weight hold fp32 values (bf16 values widened); CUDA
// failures throw dsv4::gpu::CudaError, bad arguments std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct RmsNormBatch {
  std::vector<float> y;         // [rows, dim], bf16 values
  std::int64_t recomputed = 0;  // rows the device left undecided, recomputed by the CPU reference
};

// x [rows, dim], weight [dim]; eps used as fl32(eps), as the reference does.
RmsNormBatch rmsnorm(const float* x, std::int64_t rows, std::int64_t dim, const float* weight, double eps);

// Device-pointer form: writes y and undecided[r] (1 when row r must be recomputed on the host).
void rmsnorm_device(const float* x, std::int64_t rows, std::int64_t dim, const float* weight, float eps, float* y,
                    std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
