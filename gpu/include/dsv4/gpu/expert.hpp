// GPU MoE expert (spec 03 §3.2; official code class Expert), bit-exact with the official-mode
// reference (dsv4/model/expert.hpp expert_forward with Precision(Mode::kOfficial) and bf16 weights)
// and batch-invariant: row t of y depends on row t of x (and its routing weight) alone.
//
// A composition of existing device code, no arithmetic of its own:
//   g = W1 x, u = W3 x   the linear kernel's dense code (linear.cu): bf16(C1 Σ), one warp an element;
//   h = bf16(fl(w · fl(silu(min(g, λ)) · clamp(u, −λ, λ))))   the swiglu kernel (swiglu.cu);
//   y = W2 h             the linear kernel's dense code again, bf16.
// A row with any element left undecided by any of the three steps is flagged (an integer OR over
// the row's flags, order-free) and the host entry point recomputes it with the reference.
//
// Plain C++17 header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument (before any CUDA call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

// One expert's bf16 weights (floats holding bf16 values; host pointers for `expert`, device pointers
// for `expert_device`): w1, w3 [inter, dim], w2 [dim, inter]. dim and inter in [1, 2^24].
struct ExpertWeightsView {
  std::int64_t dim = 0;    // d
  std::int64_t inter = 0;  // d_e (moe_inter_dim)
  const float* w1 = nullptr;
  const float* w3 = nullptr;
  const float* w2 = nullptr;
};

struct ExpertBatch {
  std::vector<float> y;         // [tokens, dim], bf16 values
  std::int64_t recomputed = 0;  // rows the device left undecided, recomputed by the CPU reference
};

// x [tokens, dim] (bf16 values); route_weight [tokens] (fp32 values; routed experts) or nullptr (the
// shared expert); limit = swiglu_limit (≤ 0: no clamp).
ExpertBatch expert(const float* x, std::int64_t tokens, const ExpertWeightsView& w, double limit,
                   const float* route_weight);

// The device form's workspace in bytes for `tokens` rows.
std::size_t expert_workspace_bytes(std::int64_t tokens, std::int64_t dim, std::int64_t inter);

// Device-pointer form (asynchronous on `stream`): y [tokens, dim]; undecided [tokens] bytes, 1 where
// row t must be recomputed on the host; workspace of expert_workspace_bytes (device memory, 256-byte
// aligned as cudaMalloc returns it). limit is fl32(swiglu_limit).
void expert_device(const float* x, std::int64_t tokens, const ExpertWeightsView& w, float limit,
                   const float* route_weight, float* y, std::uint8_t* undecided, void* workspace,
                   void* stream = nullptr);

}  // namespace dsv4::gpu
