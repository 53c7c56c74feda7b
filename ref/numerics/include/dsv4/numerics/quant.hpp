// The QAT quantisers exactly as the official TileLang kernels compute them (spec 01 §1.3–§1.5,
// §1.9), and block dequantisation of fp8 / fp4 weights.
//
// Inputs are fp32 values (every bf16 value is one; the official kernels widen bf16 to fp32 before
// any arithmetic). Rows are contiguous, `cols` elements each, blocks start at element 0 of a row.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dsv4/numerics/quant_blocks.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

// ---- spec 01 §1.3: power-of-two scale helpers (fast_log2_ceil, fast_pow2, fast_round_scale) ----
// Constants, one definition each.
inline constexpr float kInvFp8Max = 1.0f / 448.0f;  // fp32 nearest to 1/448 = 0x3B124925
inline constexpr float kInvFp4Max = 1.0f / 6.0f;    // fp32 nearest to 1/6
inline constexpr float kFp8Max = 448.0f;
inline constexpr float kFp4Max = 6.0f;
inline constexpr float kActQuantAmaxFloor = 1e-4f;          // spec 01 §1.4 step 1
inline constexpr float kFp4AmaxFloor = 6.0f * 0x1.0p-126f;  // spec 01 §1.5 step 1
inline constexpr int kFp4WeightBlock = 32;                  // 1×32 fp4 weight scales
inline constexpr int kFp8WeightTile = 128;                  // 128×128 fp8 weight scales

// E_t − 127 + [M_t ≠ 0] for fp32 t > 0 (exponent-bits ceil of log2).
int log2_ceil_fp32(float t);
// The fp32 with bit pattern (n + 127) << 23 (32-bit wrap, as the kernel): 2^n for −126 ≤ n ≤ 127,
// +0 for n = −127, +inf for n = 128, −0 for n = 129; throws std::domain_error outside [−127, 129].
float pow2_fp32(int n);
// pow2(log2ceil(fl32(amax × inv))) — the product rounded to fp32 first.
float round_scale(float amax, float inv);

// ---- spec 01 §1.4: act_quant (ScaleFormat, Fp8Blocks: quant_blocks.hpp) ----
// (values, scales) form. Throws std::invalid_argument if cols % block != 0 or x.size() % cols != 0.
Fp8Blocks act_quant(std::span<const float> x, std::int64_t cols, int block, ScaleFormat fmt);
// In-place form: x ← bf16(fl32(fp32(q) × s)), the KV QAT simulation. Values stay fp32-typed but
// every output is a bf16 value.
void act_quant_inplace(std::span<float> x, std::int64_t cols, int block, ScaleFormat fmt);

// ---- spec 01 §1.5: fp4_act_quant (block 32, power-of-two scales) ----
Fp4Blocks fp4_act_quant(std::span<const float> x, std::int64_t cols);
void fp4_act_quant_inplace(std::span<float> x, std::int64_t cols);

// ---- weight dequantisation (spec 01 §1.6–§1.8) ----
// w: e4m3 [N, K]; scales: e8m0 [ceil(N/128), ceil(K/128)]. Returns float32 [N, K] (exact).
Tensor dequant_fp8_weight(const Tensor& w, const Tensor& scales);
// w: packed e2m1 [N, K] (dtype kE2M1x2); scales: e8m0 [N, K/32]. Returns float32 [N, K] (exact).
Tensor dequant_fp4_weight(const Tensor& w, const Tensor& scales);
// The same dequantisations in double, written row-major into out (N·K values): code × scale is
// exact in double for every code and scale (the one decode of a stored weight; the model's
// LinearWeight holds these values). Throws std::invalid_argument like the float forms, or when out
// has not N·K elements.
void dequant_fp8_weight_exact(const Tensor& w, const Tensor& scales, std::span<double> out);
void dequant_fp4_weight_exact(const Tensor& w, const Tensor& scales, std::span<double> out);
// The exact value of every e4m3 / e8m0 / e2m1 code (spec 01 §1.1), decoded once: the tables of the
// weight dequantisation and of the official block-scaled GEMMs (ref/model linear.cpp).
const std::array<double, 256>& e4m3_code_values();
const std::array<double, 256>& e8m0_code_values();
const std::array<double, 16>& e2m1_code_values();

// ---- spec 01 §1.9: the official converter's FP4 → FP8 re-quantisation ----
// Lossless for every code of a 128×128 tile iff max/min of its 1×32 scales ≤ 2^14
// (kFp4ToFp8MaxScaleRatioLog2). Lossy elements are reported, never hidden.
inline constexpr int kFp4ToFp8MaxScaleRatioLog2 = 14;
struct LossyElement {
  std::int64_t row = 0, col = 0;
  double fp4_value = 0;  // exact w × s of the FP4 weight
  double fp8_value = 0;  // what the FP8 form represents
};
struct TileReport {
  std::int64_t tile_row = 0, tile_col = 0;
  int scale_ratio_log2 = 0;      // log2(max scale / min scale) over the tile's 1×32 blocks
  bool condition_holds = false;  // scale_ratio_log2 ≤ 14: lossless for every possible code
  std::int64_t lossy_count = 0;  // elements of *these* codes that changed
};
struct Fp4ToFp8Result {
  Tensor weight;  // e4m3 [N, K]
  Tensor scales;  // e8m0 [ceil(N/128), ceil(K/128)]
  std::vector<TileReport> tiles;
  std::vector<LossyElement> lossy;  // every changed element, in row-major order
};
// w: packed e2m1 [N, K], K % 32 == 0; scales: e8m0 [N, K/32]. Arithmetic as convert.py (fp32; code 8
// decodes to +0). Edge tiles of N, K not multiples of 128 cover only the existing rows / 1×32 blocks
// (the converter itself asserts multiples of 128). Throws std::invalid_argument for bad
// dtypes/shapes or a NaN (0xFF) scale, std::domain_error when a tile's largest scale is below 2^-121
// (its fp8 scale 2^(e_max-6) would leave the e8m0 range).
Fp4ToFp8Result requantize_fp4_to_fp8(const Tensor& w, const Tensor& scales);

// ---- named in-place quantisers, for `dsv4 quant` and the property suites ----
struct QuantKind {
  std::string name;         // e.g. "fp8-act-128-ue8m0"
  std::string description;  // one line for `dsv4 quant --list`
  int block;                // the row length must be a multiple of this (1 for element-wise kinds)
  void (*apply)(std::span<float> x, std::int64_t cols);
};
const std::vector<QuantKind>& quant_kinds();
// nullptr when unknown.
const QuantKind* find_quant_kind(const std::string& name);

}  // namespace dsv4
