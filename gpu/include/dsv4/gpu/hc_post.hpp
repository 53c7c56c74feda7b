// GPU hc_post (spec 04 §4.4; official code Block.hc_post), bit-exact with the official-mode
// reference (dsv4/model/mhc.hpp hc_post / hc_post_rows with Precision(Mode::kOfficial)) and
// batch-invariant: one thread block per token computes that token's new state from its own f,
// residual, post and comb alone.
//
// Per token and output element (stream k, feature δ): the n products fl32(comb[j, k] · X_j[δ]) (comb
// [j, k] carries stream j into stream k); their C1 sum — a double sum with its TwoSum errors kept
// and summed (compensated: the exact sum is s + Σ err), rounded once to fp32 when s + c within the
// bound of c lies strictly inside one float's rounding range (always when every TwoSum error is
// zero) —; X'_k[δ] = bf16(fl(fl(post_k · f[δ]) + sum)). A token with an
// element the device cannot decide is flagged and the host entry point recomputes it with the CPU
// reference (`recomputed` counts them).
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct HcPostBatch {
  std::vector<float> y;         // [tokens, n·d], bf16 values
  std::int64_t recomputed = 0;  // tokens the device left undecided, recomputed by the CPU reference
};

// f [tokens, d] (sublayer output), residual [tokens, n·d] (the state before hc_pre), post
// [tokens, n], comb [tokens, n·n] (row-major comb[j, k] at j·n + k) → new state [tokens, n·d].
HcPostBatch hc_post(const float* f, const float* residual, const float* post, const float* comb, std::int64_t tokens,
                    std::int64_t n, std::int64_t d);

// Device-pointer form: writes y and undecided[t] (1 when token t must be recomputed on the host).
void hc_post_device(const float* f, const float* residual, const float* post, const float* comb, std::int64_t tokens,
                    std::int64_t n, std::int64_t d, float* y, std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
