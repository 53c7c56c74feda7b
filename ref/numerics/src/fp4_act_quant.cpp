// spec 01 §1.5: fp4_act_quant — block FP4 (e2m1fn) quantisation with power-of-two (e8m0) scales,
// as the official TileLang kernel fp4_quant_kernel computes it (block 32, fp32 arithmetic).
#include <algorithm>
#include <cstdint>
#include <span>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "quant_internal.hpp"

namespace dsv4 {

namespace {

constexpr int kFp4ActBlock = 32;

// spec 01 §1.5 steps 1–2: a = max(max_j |x_j|, 6·2^−126); s = pow2(log2ceil(fl32(a × fl32(1/6)))).
float fp4_block_scale(std::span<const float> block) {
  const float amax = std::max(quant_detail::block_absmax(block), kFp4AmaxFloor);
  return round_scale(amax, kInvFp4Max);
}

// spec 01 §1.5 step 3: v = fl32(x / s) clamped to [−6, 6]; q = e2m1 RNE (4-bit code, bit 3 = sign).
std::uint8_t fp4_quantise_element(float x, float s) {
  const float v = x / s;
  const float clamped = std::min(std::max(v, -kFp4Max), kFp4Max);
  return float_to_e2m1(clamped);
}

// spec 01 §1.5 step 4 (in place): x ← bf16(fl32(fp32(q) × s)) — exact for power-of-two s.
float fp4_dequantise_element(std::uint8_t q, float s) {
  const float product = e2m1_to_float(q) * s;
  return round_bf16(product);
}

}  // namespace

// spec 01 §1.5 step 4 (out of place): packed codes (element 2j in the low nibble, spec 01 §1.1)
// and e8m0 scales.
Fp4Blocks fp4_act_quant(std::span<const float> x, std::int64_t cols) {
  const std::int64_t rows = quant_detail::checked_rows("fp4_act_quant", x.size(), cols, kFp4ActBlock);
  const std::int64_t blocks_per_row = cols / kFp4ActBlock;
  Fp4Blocks out;
  out.rows = rows;
  out.cols = cols;
  out.packed.assign(x.size() / 2, 0);
  out.scales.resize(static_cast<std::size_t>(rows * blocks_per_row));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < blocks_per_row; ++b) {
      const std::size_t begin = static_cast<std::size_t>(r * cols + b * kFp4ActBlock);
      const std::span<const float> blk = x.subspan(begin, kFp4ActBlock);
      const float s = fp4_block_scale(blk);
      out.scales[static_cast<std::size_t>(r * blocks_per_row + b)] =
          encode_e8m0(s, E8M0Rounding::kNearestEven, Overflow::kSaturateFinite);  // s is a power of two: exact
      for (std::size_t j = 0; j < blk.size(); ++j) {
        const std::size_t element = begin + j;
        const std::uint8_t code = fp4_quantise_element(blk[j], s);
        out.packed[element / 2] |= static_cast<std::uint8_t>(element % 2 == 0 ? code : code << 4);
      }
    }
  }
  return out;
}

// spec 01 §1.5 step 4 (in place).
void fp4_act_quant_inplace(std::span<float> x, std::int64_t cols) {
  const std::int64_t rows = quant_detail::checked_rows("fp4_act_quant_inplace", x.size(), cols, kFp4ActBlock);
  const std::int64_t blocks_per_row = cols / kFp4ActBlock;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < blocks_per_row; ++b) {
      const std::span<float> blk = x.subspan(static_cast<std::size_t>(r * cols + b * kFp4ActBlock), kFp4ActBlock);
      const float s = fp4_block_scale(blk);
      for (float& v : blk) v = fp4_dequantise_element(fp4_quantise_element(v, s), s);
    }
  }
}

}  // namespace dsv4
