// GPU model head (spec 05 §5.3; official code ParallelHead.forward), bit-exact with the
// official-mode reference (dsv4/model/head.hpp head_forward / head_rows with
// Precision(Mode::kOfficial)) for every row taken as the last position, and batch-invariant: each
// row's outputs depend on that row and the shared weights alone.
//
// Per row: hc_head (dsv4/gpu/hc_head.hpp), the final RMSNorm (dsv4/gpu/rmsnorm.hpp), then the fp32
// logits ℓ_v = C1 Σ_i norm_i · W_vi (bf16 × fp32 products, exact in double; one warp per logit, a
// double sum with its TwoSum errors kept, merged by butterflies and rounded once by round_c1_comp).
// A row with an undecided step (in any of the three) is recomputed on the host by the reference.
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct HeadBatch {
  std::vector<float> hc_head;   // [rows, d], bf16 values
  std::vector<float> norm;      // [rows, d], bf16 values
  std::vector<float> logits;    // [rows, V] fp32
  std::int64_t recomputed = 0;  // rows the device left undecided, recomputed by the CPU reference
  // What left them undecided: rows flagged by hc_head, by the RMSNorm, and logits flagged.
  std::int64_t undecided_hc_head = 0, undecided_norm = 0, undecided_logits = 0;
};

// x [rows, n·d] (bf16 values), hc_fn [n, n·d], hc_base [n], hc_scale (fp32 values), norm [d] (bf16
// values), head [V, d] (fp32 values); n ∈ [1, 64].
HeadBatch head(const float* x, std::int64_t rows, std::int64_t n, std::int64_t d, const float* hc_fn,
               const float* hc_base, float hc_scale, const float* norm, const float* head_w, std::int64_t vocab,
               double hc_eps, double norm_eps);

// Device-pointer form of the logits step: logits [rows, V] = C1 x·weightᵀ rounded to fp32, x [rows, d];
// undecided[r·V + v] = 1 when logit (r, v) must be recomputed on the host.
void head_logits_device(const float* x, std::int64_t rows, std::int64_t d, const float* weight, std::int64_t vocab,
                        float* logits, std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
