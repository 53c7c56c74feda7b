// GPU linear layer y = x Wᵀ (spec 01 §1.6–§1.8; official code `linear`, fp8_gemm, fp4_gemm),
// bit-exact with the official-mode reference (dsv4/model/linear.hpp `linear` with
// Precision(Mode::kOfficial)) for every weight kind, and batch-invariant: output (m, n) depends on
// row m of x and row n of the weight (with its scales) alone.
//
// Two kernels, the same bits (gpu/src/linear.cu): from 8 rows (DSV4_GPU_LINEAR_TILE_MIN_ROWS) a tiled
// kernel on the FP64 tensor cores (DMMA) — the quantised kinds' exact block sums, the dense kinds'
// double sum with a rigorous bound deciding the rounding — and the warp kernel below for fewer rows
// and for the elements the tiled kernel leaves undecided. The warp kernel: one warp per output
// element (m, n), grid-stride; lanes split K (lane l takes k ≡ l mod 32):
//   kBF16: bf16(C1 Σ_k x_k w_k);  kFP32: C1 Σ_k x_k w_k;
//   kFP8:  act_quant(x, 128, fmt) (gpu/quant.hpp), then acc = fl32(acc + fl32(p_κ·σ_κ)) over the
//          128-K blocks κ in increasing order, p_κ the C1 block sum of e4m3 × e4m3 code values,
//          σ_κ = fl32(s_a[m, κ]·s_b[⌊n/128⌋, κ]); bf16(acc);
//   kFP4:  act_quant(x, 128, fmt), then per 32-K block acc = fl32(acc + fl32(fl32(p_κ·s_a[m, ⌊κ/4⌋])
//          ·s_w[n, κ])), p_κ the C1 block sum of e4m3 × e2m1 code values; bf16(acc).
// Every product is exact in double; every C1 sum is a double sum with its TwoSum errors kept
// (gpu/common SumC1Comp), merged across the warp by butterflies and rounded once (round_c1_comp).
// An element whose rounding the device cannot decide is flagged; the host entry point recomputes
// it with the reference (`LinearBatch::recomputed` counts them). The fp8 / fp4 block sums are
// exact in double (see linear.cu), so those kinds never flag.
//
// Plain C++17 header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument (before any CUDA call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/quant.hpp"

namespace dsv4::gpu {

// The weight kinds of the official Linear, in the order of dsv4::WeightKind (ref/model linear.hpp).
enum class LinearKind { kBF16, kFP32, kFP8, kFP4 };

// A weight [N, K] in its storage form (host pointers for `linear`, device pointers for
// `linear_device`). Which pointers are used depends on the kind:
//   kBF16: values [N, K] (floats holding bf16 values);  kFP32: values [N, K] (fp32);
//   kFP8:  codes [N, K] e4m3fn bytes, scales [⌈N/128⌉, K/128] e8m0 bytes (one per 128×128 tile);
//   kFP4:  codes [N, K/2] packed e2m1 (element 2j in the low nibble), scales [N, K/32] e8m0 bytes.
// kFP8 and kFP4 need K a multiple of 128 (the activation quantiser's block).
struct LinearWeightView {
  LinearKind kind = LinearKind::kBF16;
  std::int64_t out_features = 0;  // N
  std::int64_t in_features = 0;   // K, in [1, 2^24]
  const float* values = nullptr;
  const std::uint8_t* codes = nullptr;
  const std::uint8_t* scales = nullptr;
};

// Block b of a stacked weight (an MoE's routed experts: blocks of w's shape stored one after the
// other, each with its own scales): values + b·N·K; kFP8 codes + b·N·K, scales + b·⌈N/128⌉·(K/128);
// kFP4 codes + b·N·K/2, scales + b·N·(K/32). Pointer arithmetic only (host or device pointers).
inline LinearWeightView stacked_block(const LinearWeightView& w, std::int64_t b) {
  const std::int64_t n = w.out_features, k = w.in_features;
  LinearWeightView v = w;
  switch (w.kind) {
    case LinearKind::kBF16:
    case LinearKind::kFP32:
      v.values = w.values != nullptr ? w.values + b * n * k : nullptr;
      break;
    case LinearKind::kFP8:
      v.codes = w.codes != nullptr ? w.codes + b * n * k : nullptr;
      v.scales = w.scales != nullptr ? w.scales + b * ((n + 127) / 128) * (k / 128) : nullptr;
      break;
    case LinearKind::kFP4:
      v.codes = w.codes != nullptr ? w.codes + b * n * (k / 2) : nullptr;
      v.scales = w.scales != nullptr ? w.scales + b * n * (k / 32) : nullptr;
      break;
  }
  return v;
}

// The element counts of one block's storage: values (floats), codes and scales (bytes).
struct LinearWeightSizes {
  std::size_t values = 0, codes = 0, scales = 0;
};
LinearWeightSizes linear_weight_sizes(const LinearWeightView& w);

struct LinearBatch {
  std::vector<float> y;         // [rows, N]: bf16 values (kBF16, kFP8, kFP4) or fp32 (kFP32)
  std::int64_t recomputed = 0;  // elements the device left undecided, recomputed by the CPU reference
};

// x [rows, K] host floats (bf16 values for kBF16 / kFP8 / kFP4, fp32 values for kFP32); act_fmt is
// the activation scale format of kFP8 / kFP4 (config.scale_fmt: kUE8M0 = "ue8m0", kFP32 = "").
LinearBatch linear(const float* x, std::int64_t rows, const LinearWeightView& w,
                   ScaleFormat act_fmt = ScaleFormat::kUE8M0);

// Device-pointer form (asynchronous on `stream`): y [rows, N]; undecided [rows, N] bytes, 1 where
// element (m, n) must be recomputed on the host. act_codes [rows, K] bytes and act_scales
// [rows, K/128] floats are the activation quantiser's workspace, required for kFP8 and kFP4 (may be
// nullptr otherwise).
void linear_device(const float* x, std::int64_t rows, const LinearWeightView& w, ScaleFormat act_fmt, float* y,
                   std::uint8_t* undecided, std::uint8_t* act_codes, float* act_scales, void* stream = nullptr);

}  // namespace dsv4::gpu
