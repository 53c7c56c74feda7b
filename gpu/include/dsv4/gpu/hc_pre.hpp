// GPU hc_pre (spec 04 §4.2; official code Block.hc_pre), bit-exact with the official-mode reference
// (dsv4/model/mhc.hpp hc_pre / hc_pre_rows with Precision(Mode::kOfficial)) and batch-invariant:
// every value of a token is computed from that token's state and the shared weights alone.
//
// Per token, on its flattened state x [n·d] (bf16 values):
// 1. r = C2 rsqrt(fl(fl(S × fl32(1/(n·d))) + fl32(norm_eps))), S the C1 sum of the fp32 squares;
// 2. μ_m = fl(fl32(C1 Σ_i x_i·fn[m, i]) × r) for the (2+n)n mixes (exact products in double);
// 3. pre, post, comb from μ by the hc_split_sinkhorn kernel (dsv4/gpu/mhc.hpp);
// 4. y_δ = bf16(C1 Σ_k fl(pre_k · x[k·d + δ])).
// Each C1 sum is a double sum with its TwoSum errors kept (one thread block per token, 256 threads
// and their parts merged; gpu/src/hc_mixes.cuh), rounded once when s + Σ err within the error
// sum's bound lies inside one float's rounding range. A token with any undecided rounding (a sum,
// the rsqrt, a Sinkhorn step) is flagged and the host entry point recomputes it with the CPU
// reference (`recomputed` counts them).
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct HcPreBatch {
  std::vector<float> y;         // [tokens, d] layer input, bf16 values
  std::vector<float> post;      // [tokens, n]
  std::vector<float> comb;      // [tokens, n·n] row-major comb[j, k] at j·n + k
  std::vector<float> mixes;     // [tokens, (2+n)n] μ
  std::int64_t recomputed = 0;  // tokens the device left undecided, recomputed by the CPU reference
};

// x [tokens, n·d] (stream-major: column k·d + δ), fn [(2+n)n, n·d], base [(2+n)n], scale [3] (fp32
// values); n = hc_mult ∈ [1, 8] (the Sinkhorn kernel's limit), iters ≥ 1, hc_eps ≥ 0 and norm_eps
// used as fl32 values, as the reference does.
HcPreBatch hc_pre(const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d, const float* fn,
                  const float* base, const float* scale, int iters, double hc_eps, double norm_eps);

// Device-pointer form: writes y, post, comb, mixes and undecided[t] (1 when token t must be
// recomputed on the host); pre [tokens, n] and sinkhorn_undecided [tokens] are scratch.
void hc_pre_device(const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d, const float* fn,
                   const float* base, const float* scale, int iters, float hc_eps, float norm_eps, float* y,
                   float* post, float* comb, float* mixes, float* pre, std::uint8_t* sinkhorn_undecided,
                   std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
