// spec 01 §1.4: act_quant — block FP8 (e4m3fn) quantisation of activations, as the official
// TileLang kernel act_quant_kernel computes it. All arithmetic is fp32 (float variables; the build
// uses -ffp-contract=off, so no product is fused into anything).
#include <algorithm>
#include <cstdint>
#include <span>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "quant_internal.hpp"

namespace dsv4 {

namespace {

// spec 01 §1.4 step 1: a = max(max_j |x_j|, fl32(1e-4)).
float act_block_amax(std::span<const float> block) {
  return std::max(quant_detail::block_absmax(block), kActQuantAmaxFloor);
}

// spec 01 §1.4 step 2: s = pow2(log2ceil(fl32(a × fl32(1/448)))) when the scale is rounded to a
// power of two (ue8m0), else s = fl32(a × fl32(1/448)) — multiplication by the rounded reciprocal,
// never division by 448.
float act_block_scale(float amax, ScaleFormat fmt) {
  if (fmt == ScaleFormat::kUE8M0) return round_scale(amax, kInvFp8Max);
  const float s = amax * kInvFp8Max;
  return s;
}

// spec 01 §1.4 step 3: v = fl32(x / s) (IEEE fp32 division), clamped to [−448, 448], then
// e4m3fn RNE (satfinite; the clamp makes saturation moot).
std::uint8_t act_quantise_element(float x, float s) {
  const float v = x / s;
  const float clamped = std::min(std::max(v, -kFp8Max), kFp8Max);
  return float_to_e4m3(clamped, Overflow::kSaturateFinite);
}

// spec 01 §1.4 step 5: x ← bf16(fl32(fp32(q) × s)).
float act_dequantise_element(std::uint8_t q, float s) {
  const float product = e4m3_to_float(q) * s;
  return round_bf16(product);
}

}  // namespace

// spec 01 §1.4 steps 1–4: the out-of-place (values, scales) form.
Fp8Blocks act_quant(std::span<const float> x, std::int64_t cols, int block, ScaleFormat fmt) {
  const std::int64_t rows = quant_detail::checked_rows("act_quant", x.size(), cols, block);
  const std::int64_t blocks_per_row = cols / block;
  Fp8Blocks out;
  out.rows = rows;
  out.cols = cols;
  out.block = block;
  out.values.resize(x.size());
  out.scales.resize(static_cast<std::size_t>(rows * blocks_per_row));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < blocks_per_row; ++b) {
      const std::size_t begin = static_cast<std::size_t>(r * cols + b * block);
      const std::span<const float> blk = x.subspan(begin, static_cast<std::size_t>(block));
      const float s = act_block_scale(act_block_amax(blk), fmt);
      out.scales[static_cast<std::size_t>(r * blocks_per_row + b)] = s;
      for (std::size_t j = 0; j < blk.size(); ++j) out.values[begin + j] = act_quantise_element(blk[j], s);
    }
  }
  return out;
}

// spec 01 §1.4 step 5: the in-place quant-dequant simulation (fused in the kernel: the fp8 code
// never leaves registers, but its value is the same as the out-of-place code's).
void act_quant_inplace(std::span<float> x, std::int64_t cols, int block, ScaleFormat fmt) {
  const std::int64_t rows = quant_detail::checked_rows("act_quant_inplace", x.size(), cols, block);
  const std::int64_t blocks_per_row = cols / block;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < blocks_per_row; ++b) {
      const std::span<float> blk =
          x.subspan(static_cast<std::size_t>(r * cols + b * block), static_cast<std::size_t>(block));
      const float s = act_block_scale(act_block_amax(blk), fmt);
      for (float& v : blk) v = act_dequantise_element(act_quantise_element(v, s), s);
    }
  }
}

}  // namespace dsv4
