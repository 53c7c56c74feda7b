// GPU hc_head (spec 04 §4.5; official code ParallelHead.hc_head), bit-exact with the official-mode
// reference (dsv4/model/mhc.hpp hc_head / hc_head_rows with Precision(Mode::kOfficial)) and
// batch-invariant: one thread block per token computes it from that token's state and the shared
// weights alone.
//
// Per token, on its flattened state x [n·d] (bf16 values): the n RMS-scaled mixes μ exactly as in
// hc_pre (dsv4/gpu/hc_pre.hpp steps 1–2, with fn [n, n·d]); pre_k = fl(σ(fl(fl(μ_k·α) + b_k)) + ε)
// as separate fp32 operations (C2 sigmoid, no FMA); y_δ = bf16(C1 Σ_k fl(pre_k · x[k·d + δ])). A
// token with an undecided rounding is flagged and the host entry point recomputes it with the CPU
// reference (`recomputed` counts them).
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct HcHeadBatch {
  std::vector<float> y;         // [tokens, d], bf16 values
  std::int64_t recomputed = 0;  // tokens the device left undecided, recomputed by the CPU reference
};

// x [tokens, n·d], fn [n, n·d], base [n] (fp32 values), scale = hc_head_scale[0]; n = hc_mult ∈
// [1, 64]; hc_eps and norm_eps used as fl32 values, as the reference does.
HcHeadBatch hc_head(const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d, const float* fn,
                    const float* base, float scale, double hc_eps, double norm_eps);

// Device-pointer form: writes y and undecided[t] (1 when token t must be recomputed on the host).
void hc_head_device(const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d, const float* fn,
                    const float* base, float scale, float hc_eps, float norm_eps, float* y, std::uint8_t* undecided,
                    void* stream = nullptr);

}  // namespace dsv4::gpu
