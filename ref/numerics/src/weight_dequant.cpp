// spec 01 §1.6–§1.8: block dequantisation of the stored weights — fp8 e4m3 with one e8m0 scale
// per 128×128 tile (fp8_gemm's B operand, and convert.py's `weight.float() * scale` for wo_a), and
// packed fp4 e2m1 with one e8m0 scale per 1×32 block (fp4_gemm's B operand).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/numerics/tensor.hpp"
#include "quant_internal.hpp"

namespace dsv4 {

namespace quant_detail {

void require_matrix(const char* fn, const char* what, const Tensor& t, DType dtype) {
  if (t.dtype() != dtype) {
    throw std::invalid_argument(std::string(fn) + ": " + what + " must have dtype " + std::string(dtype_name(dtype)) +
                                ", got " + std::string(dtype_name(t.dtype())));
  }
  if (t.rank() != 2) {
    throw std::invalid_argument(std::string(fn) + ": " + what + " must be a matrix, got shape " + t.shape_string());
  }
}

void require_shape(const char* fn, const char* what, const Tensor& t, std::int64_t rows, std::int64_t cols) {
  if (t.dim(0) != rows || t.dim(1) != cols) {
    throw std::invalid_argument(std::string(fn) + ": " + what + " must have shape [" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "], got " + t.shape_string());
  }
}

Fp4WeightShape require_fp4_weight(const char* fn, const Tensor& w, const Tensor& scales) {
  require_matrix(fn, "weight", w, DType::kE2M1x2);
  require_matrix(fn, "scales", scales, DType::kE8M0);
  const std::int64_t n = w.dim(0), k = w.dim(1);
  if (k % kFp4WeightBlock != 0) {
    throw std::invalid_argument(std::string(fn) + ": input features " + std::to_string(k) +
                                " is not a multiple of the fp4 scale block 32");
  }
  require_shape(fn, "scales (one per 1x32 block)", scales, n, k / kFp4WeightBlock);
  return {n, k};
}

}  // namespace quant_detail

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// spec 01 §1.7: w[n, k] × S[⌊n/128⌋, ⌊k/128⌋] in fp32 (exact for every finite result; a product
// beyond the fp32 range becomes inf, as torch's fp32 multiplication would).
float dequant_fp8_element(std::uint8_t w, std::uint8_t scale) {
  const float v = e4m3_to_float(w) * e8m0_to_float(scale);
  return v;
}

// spec 01 §1.8: e2m1 code × S[n, ⌊k/32⌋] in fp32 (exact: fp32 holds 2 significant bits over the
// whole e8m0 range).
float dequant_fp4_element(std::uint8_t code, std::uint8_t scale) {
  const float v = e2m1_to_float(code) * e8m0_to_float(scale);
  return v;
}

}  // namespace

Tensor dequant_fp8_weight(const Tensor& w, const Tensor& scales) {
  constexpr const char* fn = "dequant_fp8_weight";
  quant_detail::require_matrix(fn, "weight", w, DType::kE4M3);
  quant_detail::require_matrix(fn, "scales", scales, DType::kE8M0);
  const std::int64_t n = w.dim(0), k = w.dim(1);
  quant_detail::require_shape(fn, "scales (one per 128x128 tile)", scales, ceil_div(n, kFp8WeightTile),
                              ceil_div(k, kFp8WeightTile));
  Tensor out(DType::kF32, {n, k});
  const auto wv = w.values<std::uint8_t>();
  const auto sv = scales.values<std::uint8_t>();
  const auto ov = out.values<float>();
  const std::int64_t scale_cols = scales.dim(1);
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t c = 0; c < k; ++c) {
      const std::uint8_t s = sv[static_cast<std::size_t>((r / kFp8WeightTile) * scale_cols + c / kFp8WeightTile)];
      ov[static_cast<std::size_t>(r * k + c)] = dequant_fp8_element(wv[static_cast<std::size_t>(r * k + c)], s);
    }
  }
  return out;
}

Tensor dequant_fp4_weight(const Tensor& w, const Tensor& scales) {
  constexpr const char* fn = "dequant_fp4_weight";
  const auto [n, k] = quant_detail::require_fp4_weight(fn, w, scales);
  Tensor out(DType::kF32, {n, k});
  const auto wv = w.values<std::uint8_t>();
  const auto sv = scales.values<std::uint8_t>();
  const auto ov = out.values<float>();
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t c = 0; c < k; ++c) {
      const std::size_t e = static_cast<std::size_t>(r * k + c);
      const std::uint8_t byte = wv[e / 2];
      const std::uint8_t code = static_cast<std::uint8_t>(c % 2 == 0 ? byte & 0xFu : byte >> 4);  // spec 01 §1.1
      const std::uint8_t s = sv[static_cast<std::size_t>(r * (k / kFp4WeightBlock) + c / kFp4WeightBlock)];
      ov[e] = dequant_fp4_element(code, s);
    }
  }
  return out;
}

}  // namespace dsv4
