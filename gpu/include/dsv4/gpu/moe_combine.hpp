// GPU MoE combine for given routing (spec 03 §3.3; official code MoE.forward after the gate),
// bit-exact with the official-mode reference (dsv4/model/moe.hpp Moe::combine with
// Precision(Mode::kOfficial)) for every expert weight kind (bf16, FP8 128×128, FP4 1×32: V4's routed
// experts are FP4 — or FP8 after `--expert-dtype fp8` —, its shared expert FP8) and batch-invariant: token t's output
// depends on its row of x, its k routing weights and expert ids, and the weights alone.
//
// The reference's arithmetic is a fixed-order fp32 accumulation, not a C1 sum: y_t = 0 (fp32); for
// the routed experts in ascending expert id (a token listing one id twice: in slot order) y_t =
// fl32(y_t + E_e(x_t; w_{t,j})), each E_e the expert's bf16 output (routing weight applied inside,
// spec 03 §3.2); then y_t = fl32(y_t + S(x_t)) with the shared expert S; bf16(y_t). Here:
//   1. every (token, slot) pair's routed expert through the expert chain (gpu/expert.hpp: the linear
//      kernel by weight kind with the pair's weight block = its expert id, the swiglu kernel), the
//      shared expert over the tokens likewise — each output element of a bf16 linear one warp's
//      compensated C1 sum, of an fp8 / fp4 linear the fixed-order fp32 block accumulation of
//      fp8_gemm / fp4_gemm over the row's act_quant codes (a token's row quantised once for its k
//      pairs: act_quant is row-wise);
//   2. per token the slots ordered by (expert id, slot) (an exact rank count);
//   3. one thread per output element (t, i) adds the pairs' outputs in that order and the shared
//      expert's with single IEEE fp32 additions (__fadd_rn: fl32 of the exact sum, which the
//      reference's fl32(double a + b) of two floats equals), then bf16.
// A token with any element left undecided in any expert (routed pair or shared) is flagged and the
// host entry point recomputes it with the reference.
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

inline constexpr std::int64_t kMoeMaxTopk = 32;

// The experts' weights (host pointers for `moe_combine`, device pointers for `moe_combine_device`) in
// their storage form (LinearWeightView, linear.hpp; kBF16, kFP8 or kFP4, never kFP32): routed w1, w3
// with the shape of one expert [inter, dim] and w2 [dim, inter], their storage the E experts' stacked
// (expert e is stacked_block(w, e): its values / codes and its own scales after expert e − 1's);
// shared_w1, shared_w3 [inter, dim], shared_w2 [dim, inter]. fp8 / fp4 need their in_features a
// multiple of 128. act_fmt: the activation scales of the fp8 / fp4 linears (config scale_fmt).
struct MoeExpertsView {
  std::int64_t experts = 0;  // E
  std::int64_t dim = 0;      // d, in [1, 2^24]
  std::int64_t inter = 0;    // d_e (moe_inter_dim), in [1, 2^24]
  LinearWeightView w1, w3, w2;
  LinearWeightView shared_w1, shared_w3, shared_w2;
  ScaleFormat act_fmt = ScaleFormat::kUE8M0;
};

struct MoeCombineBatch {
  std::vector<float> y;         // [tokens, dim], bf16 values
  std::int64_t recomputed = 0;  // tokens the device left undecided, recomputed by the CPU reference
};

// x [tokens, dim] (bf16 values); weights [tokens, k] (fp32 routing weights); indices [tokens, k]
// (expert ids in [0, E)); k in [1, kMoeMaxTopk]; limit = swiglu_limit (≤ 0: no clamp).
MoeCombineBatch moe_combine(const float* x, std::int64_t tokens, const float* weights, const std::int64_t* indices,
                            std::int64_t k, const MoeExpertsView& w, double limit);

// The device form's workspace in bytes.
std::size_t moe_combine_workspace_bytes(std::int64_t tokens, std::int64_t k, std::int64_t dim, std::int64_t inter);

// Device-pointer form (asynchronous on `stream`): y [tokens, dim]; undecided [tokens] bytes, 1 where
// token t must be recomputed on the host; workspace of moe_combine_workspace_bytes (device memory,
// 256-byte aligned). indices must lie in [0, E) (the host form checks them; here they are not read
// on the host). limit is fl32(swiglu_limit).
void moe_combine_device(const float* x, std::int64_t tokens, const float* weights, const std::int64_t* indices,
                        std::int64_t k, const MoeExpertsView& w, float limit, float* y, std::uint8_t* undecided,
                        void* workspace, void* stream = nullptr);

}  // namespace dsv4::gpu
