// Linear layers y = x Wᵀ with the official dispatch by weight dtype (spec 01 §1.6–§1.8).
#pragma once

#include <cstdint>
#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

enum class WeightKind {
  kBF16,  // bf16 [N, K]: bf16 F.linear (C1 fp32 accumulation), bf16 out
  kFP32,  // fp32 [N, K]: fp32 F.linear on the fp32-widened input, fp32 out (compressor, gate, head, hc)
  kFP8,   // e4m3 [N, K] + e8m0 [ceil(N/128), ceil(K/128)]: act_quant(128) → fp8_gemm → bf16
  kFP4,   // packed e2m1 [N, K] (dtype kE2M1x2) + e8m0 [N, K/32]: act_quant(128) → fp4_gemm → bf16
};
std::string weight_kind_name(WeightKind k);

// A weight as the official Linear holds it: in its storage precision only (codes and scales for
// the quantised kinds). Its exact value is decoded where it is used, one weight at a time (issue 13
// item 9: a float64 copy of every weight took 8 bytes per parameter, 11 GB for flash-slice).
struct LinearWeight {
  WeightKind kind = WeightKind::kBF16;
  Tensor weight;  // see WeightKind for dtype and shape
  Tensor scale;   // e8m0 scales for kFP8 / kFP4; empty otherwise

  std::int64_t out_features() const { return weight.rank() == 2 ? weight.dim(0) : 0; }
  std::int64_t in_features() const { return weight.rank() == 2 ? weight.dim(1) : 0; }
  // The exact value of every element [N, K] (code × scale for the quantised kinds, spec 01
  // §1.7–§1.8), decoded on each call: callers that use it more than once keep the result.
  Mat values() const;

  // Validating constructors (std::invalid_argument naming the tensor and dimension on a dtype or
  // shape mismatch; fp8 and fp4 need K a multiple of 128, the activation quantiser's block).
  static LinearWeight bf16(Tensor w);
  static LinearWeight fp32(Tensor w);
  static LinearWeight fp8(Tensor w, Tensor scale);
  static LinearWeight fp4(Tensor w, Tensor scale);
  // Convenience for tests and synthetic weights: round a double matrix RNE to bf16 / fp32.
  static LinearWeight bf16_from(const Mat& w);
  static LinearWeight fp32_from(const Mat& w);
};

// The activation scale format of act_quant in linear layers (config.scale_fmt: "ue8m0" →
// power-of-two scales, "" → fp32 scales).
ScaleFormat linear_scale_format(const ModelConfig& c);

// spec 01 §1.6–§1.8: y [M, N] = x [M, K] · Wᵀ.
// Official mode (x must hold bf16 values for kBF16/kFP8/kFP4, fp32 values for kFP32):
//   kBF16: bf16(C1 Σ_k x_k w_k);  kFP32: C1 Σ_k x_k w_k (fp32);
//   kFP8: act_quant(x, 128, fmt) then, per output, acc = fl32(acc + fl32(p_κ·σ_κ)) over 128-K
//         blocks κ in increasing order (p_κ the C1 block sum, σ_κ = fl32(s_a·s_b)), bf16(acc);
//   kFP4: act_quant(x, 128, fmt) then per 32-K block acc = fl32(acc + fl32(fl32(p_κ·s_a)·s_w)),
//         bf16(acc).
// Exact mode: x · values ᵀ in double (no activation quantisation, no rounding).
// Throws std::invalid_argument when x.cols() != in_features().
Mat linear(const Precision& p, const Mat& x, const LinearWeight& w, ScaleFormat act_scale_fmt = ScaleFormat::kUE8M0);

}  // namespace dsv4
