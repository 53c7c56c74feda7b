// spec 01 §1.6–§1.8: block dequantisation of the stored weights — fp8 e4m3 with one e8m0 scale
// per 128×128 tile (fp8_gemm's B operand, and convert.py's `weight.float() * scale` for wo_a), and
// packed fp4 e2m1 with one e8m0 scale per 1×32 block (fp4_gemm's B operand).
#include <array>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

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

// Exact values of every code, decoded once (spec 01 §1.1).
template <std::size_t N>
std::array<double, N> decode_table(const MinifloatFormat& f) {
  std::array<double, N> t{};
  for (std::size_t i = 0; i < N; ++i) t[i] = decode_minifloat(f, static_cast<std::uint32_t>(i));
  return t;
}

// spec 01 §1.7: the shape [N, K] of a valid fp8 weight and its tile scales.
std::pair<std::int64_t, std::int64_t> fp8_weight_shape(const char* fn, const Tensor& w, const Tensor& scales) {
  quant_detail::require_matrix(fn, "weight", w, DType::kE4M3);
  quant_detail::require_matrix(fn, "scales", scales, DType::kE8M0);
  const std::int64_t n = w.dim(0), k = w.dim(1);
  quant_detail::require_shape(fn, "scales (one per 128x128 tile)", scales, ceil_div(n, kFp8WeightTile),
                              ceil_div(k, kFp8WeightTile));
  return {n, k};
}

// spec 01 §1.7: element (r, c) = e4m3 code × S[⌊r/128⌋, ⌊c/128⌋], exact in double (3 significant
// bits times a power of two), handed to store(index, value) in row-major order. w and scales
// validated (fp8_weight_shape).
template <class Store>
void dequant_fp8(const Tensor& w, const Tensor& scales, Store store) {
  const std::int64_t n = w.dim(0), k = w.dim(1);
  const auto wv = w.values<std::uint8_t>();
  const auto sv = scales.values<std::uint8_t>();
  const auto& e4m3 = e4m3_code_values();
  const auto& e8m0 = e8m0_code_values();
  const std::int64_t scale_cols = scales.dim(1);
  for (std::int64_t r = 0; r < n; ++r) {
    const std::uint8_t* s_row = sv.data() + (r / kFp8WeightTile) * scale_cols;
    for (std::int64_t c = 0; c < k; ++c) {
      const auto e = static_cast<std::size_t>(r * k + c);
      store(e, e4m3[wv[e]] * e8m0[s_row[c / kFp8WeightTile]]);
    }
  }
}

// spec 01 §1.8: element (r, c) = e2m1 code (element 2j in the low nibble of byte j, spec 01 §1.1)
// × S[r, ⌊c/32⌋], exact in double. w and scales validated (require_fp4_weight).
template <class Store>
void dequant_fp4(const Tensor& w, const Tensor& scales, Store store) {
  const std::int64_t n = w.dim(0), k = w.dim(1);
  const auto wv = w.values<std::uint8_t>();
  const auto sv = scales.values<std::uint8_t>();
  const auto& e2m1 = e2m1_code_values();
  const auto& e8m0 = e8m0_code_values();
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t c = 0; c < k; ++c) {
      const auto e = static_cast<std::size_t>(r * k + c);
      const std::uint8_t byte = wv[e / 2];
      const std::uint8_t code = static_cast<std::uint8_t>(c % 2 == 0 ? byte & 0xFu : byte >> 4);
      store(e, e2m1[code] * e8m0[sv[static_cast<std::size_t>(r * (k / kFp4WeightBlock) + c / kFp4WeightBlock)]]);
    }
  }
}

void require_out(const char* fn, std::int64_t n, std::int64_t k, std::span<double> out) {
  if (static_cast<std::int64_t>(out.size()) != n * k) {
    throw std::invalid_argument(std::string(fn) + ": output has " + std::to_string(out.size()) +
                                " elements, the weight " + std::to_string(n * k));
  }
}

}  // namespace

// The fp32 forms: the exact double value rounded to fp32 — the fp32 product code × scale of
// convert.py's `weight.float() * scale` (an exact product that overflows fp32 becomes inf).
Tensor dequant_fp8_weight(const Tensor& w, const Tensor& scales) {
  const auto [n, k] = fp8_weight_shape("dequant_fp8_weight", w, scales);
  Tensor out(DType::kF32, {n, k});
  const auto ov = out.values<float>();
  dequant_fp8(w, scales, [&](std::size_t e, double v) { ov[e] = static_cast<float>(v); });
  return out;
}

Tensor dequant_fp4_weight(const Tensor& w, const Tensor& scales) {
  const auto [n, k] = quant_detail::require_fp4_weight("dequant_fp4_weight", w, scales);
  Tensor out(DType::kF32, {n, k});
  const auto ov = out.values<float>();
  dequant_fp4(w, scales, [&](std::size_t e, double v) { ov[e] = static_cast<float>(v); });
  return out;
}

void dequant_fp8_weight_exact(const Tensor& w, const Tensor& scales, std::span<double> out) {
  constexpr const char* fn = "dequant_fp8_weight_exact";
  const auto [n, k] = fp8_weight_shape(fn, w, scales);
  require_out(fn, n, k, out);
  dequant_fp8(w, scales, [&](std::size_t e, double v) { out[e] = v; });
}

void dequant_fp4_weight_exact(const Tensor& w, const Tensor& scales, std::span<double> out) {
  constexpr const char* fn = "dequant_fp4_weight_exact";
  const auto [n, k] = quant_detail::require_fp4_weight(fn, w, scales);
  require_out(fn, n, k, out);
  dequant_fp4(w, scales, [&](std::size_t e, double v) { out[e] = v; });
}

const std::array<double, 256>& e4m3_code_values() {
  static const auto t = decode_table<256>(kFormatE4M3);
  return t;
}
const std::array<double, 256>& e8m0_code_values() {
  static const auto t = decode_table<256>(kFormatE8M0);
  return t;
}
const std::array<double, 16>& e2m1_code_values() {
  static const auto t = decode_table<16>(kFormatE2M1);
  return t;
}

}  // namespace dsv4
