// GPU MoE expert (spec 03 §3.2; official code class Expert), bit-exact with the official-mode
// reference (dsv4/model/expert.hpp expert_forward with Precision(Mode::kOfficial)) for every expert
// weight kind — bf16, FP8 128×128 block-scaled (the shared expert; routed experts converted by
// `--expert-dtype fp8`, spec 01 §1.9) and FP4 1×32 (V4's routed experts) — and batch-invariant: row t
// of y depends on row t of x (and its routing weight) alone.
//
// A composition of existing device code, no arithmetic of its own:
//   g = W1 x, u = W3 x   the linear kernel (linear.cu) by weight kind: bf16(C1 Σ), or act_quant(x, 128)
//                        then fp8_gemm / fp4_gemm's fixed-order fp32 block accumulation, bf16;
//   h = bf16(fl(w · fl(silu(min(g, λ)) · clamp(u, −λ, λ))))   the swiglu kernel (swiglu.cu);
//   y = W2 h             the linear kernel again (act_quant(h, 128) for fp8 / fp4), bf16.
// A row with any element left undecided by any of the three steps is flagged (an integer OR over
// the row's flags, order-free) and the host entry point recomputes it with the reference. (The fp8 /
// fp4 linears never flag: their block sums are exact in double, linear.cu.)
//
// Plain C++17 header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument (before any CUDA call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/linear.hpp"

namespace dsv4::gpu {

// One expert's weights (host pointers for `expert`, device pointers for `expert_device`): w1, w3
// [inter, dim], w2 [dim, inter] in their storage form (LinearWeightView, linear.hpp), each kBF16,
// kFP8 or kFP4 (never kFP32), with the view's shape; fp8 / fp4 need their in_features (dim for w1,
// w3, inter for w2) a multiple of 128. dim and inter in [1, 2^24]. act_fmt: the activation scales of
// the fp8 / fp4 linears (config scale_fmt: kUE8M0 = "ue8m0", kFP32 = "").
struct ExpertWeightsView {
  std::int64_t dim = 0;    // d
  std::int64_t inter = 0;  // d_e (moe_inter_dim)
  LinearWeightView w1, w3, w2;
  ScaleFormat act_fmt = ScaleFormat::kUE8M0;
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
