// spec 01 §1.9: FP4 → FP8 re-quantisation of expert weights, as the official converter's
// cast_e2m1fn_to_e4m3fn (inference/convert.py) computes it, with a per-tile report of the
// losslessness condition and a list of every element whose value changed.
//
// Faithful to the converter's arithmetic (torch, fp32 on the host):
//   * codes are decoded through its 16-entry table, where code 8 (−0) is +0.0;
//   * per 128×128 tile: S = fl32(max s / 64) (s the fp32 values of the tile's 1×32 e8m0 scales),
//     offset = fl32(s / S), value = fl32(w × offset), stored as torch's e4m3fn cast (RNE, not
//     saturating — irrelevant, |value| ≤ 6·2^6 = 384), tile scale S stored as e8m0 (exact).
// Partial tiles (assumption; the converter itself asserts N % 128 == 0 and K % 128 == 0): a tile
// at the bottom / right edge covers only the rows and 1×32 blocks that exist, and its e_max is the
// maximum over those blocks — exactly what the converter would compute on the weight padded to a
// multiple of 128 with extra blocks whose scales do not exceed that maximum. K must be a multiple
// of 32 (the 1×32 scale grid).
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/numerics/tensor.hpp"
#include "quant_internal.hpp"

namespace dsv4 {

namespace {

constexpr int kMaxOffsetBits = 6;  // 6 · 2^6 = 384 ≤ 448 < 6 · 2^7 (the converter's MAX_OFFSET_BITS)

// The converter's FP4_TABLE: code → fp32 value; code 8 ("−0") is +0.0 there.
float converter_fp4_value(std::uint8_t code) {
  if ((code & 0xFu) == 0x8u) return 0.0f;
  return e2m1_to_float(code);
}

std::uint8_t fp4_code_at(std::span<const std::uint8_t> packed, std::int64_t k, std::int64_t row, std::int64_t col) {
  const std::uint8_t byte = packed[static_cast<std::size_t>((row * k + col) / 2)];
  return static_cast<std::uint8_t>(col % 2 == 0 ? byte & 0xFu : byte >> 4);  // spec 01 §1.1 packing
}

// spec 01 §1.9 step 1: S = 2^(e_max − 6) = fl32(max_{r,j} s_{r,j} / 2^6).
float tile_scale(float max_block_scale) {
  const float s = max_block_scale / static_cast<float>(1 << kMaxOffsetBits);
  return s;
}

// spec 01 §1.9 step 2: offset 2^(e − e_max + 6) = fl32(s / S); e4m3(fl32(w × offset)).
std::uint8_t requantise_element(float w, float block_scale, float tile_s) {
  const float offset = block_scale / tile_s;
  const float v = w * offset;
  return float_to_e4m3(v, Overflow::kToSpecial);
}

}  // namespace

Fp4ToFp8Result requantize_fp4_to_fp8(const Tensor& w, const Tensor& scales) {
  constexpr const char* fn = "requantize_fp4_to_fp8";
  const auto [n, k] = quant_detail::require_fp4_weight(fn, w, scales);
  const std::int64_t blocks_per_row = k / kFp4WeightBlock;
  const auto packed = w.values<std::uint8_t>();
  const auto sv = scales.values<std::uint8_t>();
  for (std::size_t i = 0; i < sv.size(); ++i) {
    if (sv[i] == 0xFF) {
      throw std::invalid_argument(std::string(fn) + ": scale " + std::to_string(i) + " is the e8m0 NaN pattern 0xFF");
    }
  }
  const std::int64_t tile_rows = (n + kFp8WeightTile - 1) / kFp8WeightTile;
  const std::int64_t tile_cols = (k + kFp8WeightTile - 1) / kFp8WeightTile;
  constexpr std::int64_t kBlocksPerTile = kFp8WeightTile / kFp4WeightBlock;

  Fp4ToFp8Result result;
  result.weight = Tensor(DType::kE4M3, {n, k});
  result.scales = Tensor(DType::kE8M0, {tile_rows, tile_cols});
  const auto out_w = result.weight.values<std::uint8_t>();
  const auto out_s = result.scales.values<std::uint8_t>();
  std::vector<std::vector<LossyElement>> lossy_by_row(static_cast<std::size_t>(n));

  for (std::int64_t tr = 0; tr < tile_rows; ++tr) {
    for (std::int64_t tc = 0; tc < tile_cols; ++tc) {
      const std::int64_t r0 = tr * kFp8WeightTile, r1 = std::min(n, r0 + kFp8WeightTile);
      const std::int64_t b0 = tc * kBlocksPerTile, b1 = std::min(blocks_per_row, b0 + kBlocksPerTile);
      std::uint8_t e_max = 0, e_min = 0xFE;
      for (std::int64_t r = r0; r < r1; ++r) {
        for (std::int64_t b = b0; b < b1; ++b) {
          const std::uint8_t e = sv[static_cast<std::size_t>(r * blocks_per_row + b)];
          e_max = std::max(e_max, e);
          e_min = std::min(e_min, e);
        }
      }
      if (static_cast<int>(e_max) - kMaxOffsetBits < 0) {
        throw std::domain_error(std::string(fn) + ": tile (" + std::to_string(tr) + ", " + std::to_string(tc) +
                                ") has largest scale 2^" + std::to_string(static_cast<int>(e_max) - 127) +
                                ", so its fp8 scale 2^(e_max-6) is below the e8m0 range");
      }
      const float tile_s = tile_scale(e8m0_to_float(e_max));
      out_s[static_cast<std::size_t>(tr * tile_cols + tc)] =
          encode_e8m0(tile_s, E8M0Rounding::kNearestEven, Overflow::kSaturateFinite);  // exact power of two
      TileReport report;
      report.tile_row = tr;
      report.tile_col = tc;
      report.scale_ratio_log2 = static_cast<int>(e_max) - static_cast<int>(e_min);
      report.condition_holds = report.scale_ratio_log2 <= kFp4ToFp8MaxScaleRatioLog2;
      for (std::int64_t r = r0; r < r1; ++r) {
        for (std::int64_t b = b0; b < b1; ++b) {
          const std::uint8_t e = sv[static_cast<std::size_t>(r * blocks_per_row + b)];
          const float block_scale = e8m0_to_float(e);
          for (std::int64_t c = b * kFp4WeightBlock; c < (b + 1) * kFp4WeightBlock; ++c) {
            const float wv = converter_fp4_value(fp4_code_at(packed, k, r, c));
            const std::uint8_t q = requantise_element(wv, block_scale, tile_s);
            out_w[static_cast<std::size_t>(r * k + c)] = q;
            // Exact values in double: both are (≤ 4 significant bits) × a power of two ≥ 2^−136.
            const double exact = static_cast<double>(wv) * static_cast<double>(block_scale);
            const double represented = static_cast<double>(e4m3_to_float(q)) * static_cast<double>(tile_s);
            if (exact != represented) {
              lossy_by_row[static_cast<std::size_t>(r)].push_back(LossyElement{r, c, exact, represented});
              ++report.lossy_count;
            }
          }
        }
      }
      result.tiles.push_back(report);
    }
  }
  for (auto& row : lossy_by_row) {
    std::sort(row.begin(), row.end(), [](const LossyElement& a, const LossyElement& b) { return a.col < b.col; });
    result.lossy.insert(result.lossy.end(), row.begin(), row.end());
  }
  return result;
}

}  // namespace dsv4
