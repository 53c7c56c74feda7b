// GPU SwiGLU with the clamp, the element-wise part of an MoE expert (spec 03 §3.2 steps 2–4 and the
// bf16 cast of step 5; official code Expert.forward), bit-exact with the official-mode reference
// (dsv4/model/expert.hpp clamped_swiglu / clamped_swiglu_rows with Precision(Mode::kOfficial)).
//
// Per element, λ = fl32(limit): when λ > 0, u ← min(max(u, −λ), λ) and g ← min(g, λ) (the gate only
// capped above; std::min / std::max semantics); h = fl(silu(g) · u) with C2 silu fl(g / fl(1 +
// exp(−g))); routed experts h = fl(w · h) with the token's routing weight; output bf16(h). One
// thread per element, each output depends on its own g, u (and w) only. An element whose exp the
// device cannot decide is flagged and the host entry point recomputes it with the CPU reference.
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct SwigluBatch {
  std::vector<float> h;         // [tokens, de], bf16 values
  std::int64_t recomputed = 0;  // elements the device left undecided, recomputed by the CPU reference
};

// g, u [tokens, de] (bf16 values), route_weight [tokens] (fp32 values) or nullptr (shared expert),
// limit = swiglu_limit (≤ 0: no clamp).
SwigluBatch clamped_swiglu(const float* g, const float* u, std::int64_t tokens, std::int64_t de, double limit,
                           const float* route_weight);

// Device-pointer form: writes h and undecided[i] (1 when element i must be recomputed on the host).
void clamped_swiglu_device(const float* g, const float* u, std::int64_t tokens, std::int64_t de, float limit,
                           const float* route_weight, float* h, std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
