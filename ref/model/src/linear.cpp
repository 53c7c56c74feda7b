// Linear layers (spec 01 §1.6 dispatch, §1.7 fp8_gemm, §1.8 fp4_gemm).
#include "dsv4/model/linear.hpp"

#include <array>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

constexpr std::int64_t kActBlock = 128;  // act_quant block of every quantised linear (spec 01 §1.6)
constexpr std::int64_t kFp8Tile = kFp8WeightTile;
constexpr std::int64_t kFp4Block = kFp4WeightBlock;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

void require(const Tensor& t, const char* kind, const char* what, DType dtype) {
  if (t.dtype() != dtype || t.rank() != 2) {
    throw std::invalid_argument(std::string(kind) + " linear: " + what + " must be a " +
                                std::string(dtype_name(dtype)) + " matrix, got " + std::string(dtype_name(t.dtype())) +
                                " " + t.shape_string());
  }
}

void require_shape(const Tensor& t, const char* kind, const char* what, std::int64_t rows, std::int64_t cols) {
  if (t.dim(0) != rows || t.dim(1) != cols) {
    throw std::invalid_argument(std::string(kind) + " linear: " + what + " must have shape [" + std::to_string(rows) +
                                ", " + std::to_string(cols) + "], got " + t.shape_string());
  }
}

void require_act_block(const char* kind, std::int64_t k) {
  if (k % kActBlock != 0) {
    throw std::invalid_argument(std::string(kind) + " linear: in_features K = " + std::to_string(k) +
                                " is not a multiple of the activation quantisation block " + std::to_string(kActBlock));
  }
}

// The fp4 code of logical element (n, k) of a packed [N, K] weight (spec 01 §1.1: element 2j in
// the low nibble of byte j).
std::uint8_t fp4_code(std::span<const std::uint8_t> packed, std::int64_t k_total, std::int64_t n, std::int64_t k) {
  const std::uint8_t byte = packed[static_cast<std::size_t>((n * k_total + k) / 2)];
  return (k % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
}

// act_quant(x, 128, fmt) out of place (spec 01 §1.4) → (code values [M, K], scales [M, K/128]).
std::pair<Mat, Mat> quantise_activations(const Mat& x, ScaleFormat fmt) {
  std::vector<float> xf(static_cast<std::size_t>(x.size()));
  for (Eigen::Index i = 0; i < x.size(); ++i) xf[static_cast<std::size_t>(i)] = static_cast<float>(x.data()[i]);
  const Fp8Blocks q = act_quant(xf, x.cols(), static_cast<int>(kActBlock), fmt);
  const auto& lut = e4m3_code_values();
  Mat a(x.rows(), x.cols());
  for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = lut[q.values[static_cast<std::size_t>(i)]];
  Mat s(x.rows(), x.cols() / kActBlock);
  for (Eigen::Index i = 0; i < s.size(); ++i) s.data()[i] = q.scales[static_cast<std::size_t>(i)];
  return {std::move(a), std::move(s)};
}

// spec 01 §1.7 fp8_gemm: acc = fl32(acc + fl32(p_κ · fl32(s_a · s_b))) over 128-K blocks κ in
// increasing order, p_κ the C1 block sum; C = bf16(acc).
Mat fp8_gemm_official(const Precision& p, const Mat& x, const LinearWeight& w, ScaleFormat fmt) {
  const std::int64_t n_out = w.out_features(), k_in = w.in_features();
  const auto [a, sa] = quantise_activations(x, fmt);
  const auto codes = w.weight.values<std::uint8_t>();
  const auto wscale = w.scale.values<std::uint8_t>();
  const std::int64_t scale_cols = ceil_div(k_in, kFp8Tile);
  const auto& e4m3 = e4m3_code_values();
  const auto& e8m0 = e8m0_code_values();
  Mat acc = Mat::Zero(x.rows(), n_out);
  Mat b(n_out, kFp8Tile);
  for (std::int64_t kb = 0; kb < k_in / kFp8Tile; ++kb) {
    for (std::int64_t n = 0; n < n_out; ++n) {
      for (std::int64_t j = 0; j < kFp8Tile; ++j)
        b(n, j) = e4m3[codes[static_cast<std::size_t>(n * k_in + kb * kFp8Tile + j)]];
    }
    const Mat a_block = a.middleCols(kb * kFp8Tile, kFp8Tile);
    const Mat partial = p.matmul_nt(a_block, b);  // p_κ, one C1 rounding to fp32 each
    for (Eigen::Index m = 0; m < acc.rows(); ++m) {
      for (std::int64_t n = 0; n < n_out; ++n) {
        const double sb = e8m0[wscale[static_cast<std::size_t>((n / kFp8Tile) * scale_cols + kb)]];
        const double sigma = p.mul(sa(m, kb), sb);
        acc(m, n) = p.add(acc(m, n), p.mul(partial(m, n), sigma));
      }
    }
  }
  p.bf16_inplace(acc);
  return acc;
}

// spec 01 §1.8 fp4_gemm: acc = fl32(acc + fl32(fl32(p_κ · s_a[m, ⌊κ/4⌋]) · s_w[n, κ])) over 32-K
// blocks κ in increasing order; C = bf16(acc).
Mat fp4_gemm_official(const Precision& p, const Mat& x, const LinearWeight& w, ScaleFormat fmt) {
  const std::int64_t n_out = w.out_features(), k_in = w.in_features();
  const auto [a, sa] = quantise_activations(x, fmt);
  const auto packed = w.weight.values<std::uint8_t>();
  const auto wscale = w.scale.values<std::uint8_t>();
  const std::int64_t scale_cols = k_in / kFp4Block;
  const auto& e2m1 = e2m1_code_values();
  const auto& e8m0 = e8m0_code_values();
  Mat acc = Mat::Zero(x.rows(), n_out);
  Mat b(n_out, kFp4Block);
  for (std::int64_t kb = 0; kb < k_in / kFp4Block; ++kb) {
    for (std::int64_t n = 0; n < n_out; ++n) {
      for (std::int64_t j = 0; j < kFp4Block; ++j) b(n, j) = e2m1[fp4_code(packed, k_in, n, kb * kFp4Block + j)];
    }
    const Mat a_block = a.middleCols(kb * kFp4Block, kFp4Block);
    const Mat partial = p.matmul_nt(a_block, b);
    const std::int64_t a_scale_col = kb * kFp4Block / kActBlock;
    for (Eigen::Index m = 0; m < acc.rows(); ++m) {
      for (std::int64_t n = 0; n < n_out; ++n) {
        const double sw = e8m0[wscale[static_cast<std::size_t>(n * scale_cols + kb)]];
        acc(m, n) = p.add(acc(m, n), p.mul(p.mul(partial(m, n), sa(m, a_scale_col)), sw));
      }
    }
  }
  p.bf16_inplace(acc);
  return acc;
}

}  // namespace

std::string weight_kind_name(WeightKind k) {
  switch (k) {
    case WeightKind::kBF16:
      return "bf16";
    case WeightKind::kFP32:
      return "fp32";
    case WeightKind::kFP8:
      return "fp8";
    case WeightKind::kFP4:
      return "fp4";
  }
  return "?";
}

LinearWeight LinearWeight::bf16(Tensor w) {
  require(w, "bf16", "weight", DType::kBF16);
  return {WeightKind::kBF16, std::move(w), Tensor{}};
}

LinearWeight LinearWeight::fp32(Tensor w) {
  require(w, "fp32", "weight", DType::kF32);
  return {WeightKind::kFP32, std::move(w), Tensor{}};
}

namespace {

// The block-scaled kinds (spec 01 §1.7–§1.8): `code` weights [N, K] with K a multiple of the
// activation block, and e8m0 scales of shape scale_shape(N, K).
template <class ScaleShape>
LinearWeight block_scaled(WeightKind kind, DType code, Tensor w, Tensor scale, ScaleShape scale_shape) {
  const std::string name = weight_kind_name(kind);
  require(w, name.c_str(), "weight", code);
  require(scale, name.c_str(), "scale", DType::kE8M0);
  const std::int64_t n = w.dim(0), k = w.dim(1);
  require_act_block(name.c_str(), k);
  const auto [rows, cols] = scale_shape(n, k);
  require_shape(scale, name.c_str(), "scale", rows, cols);
  return {kind, std::move(w), std::move(scale)};
}

}  // namespace

LinearWeight LinearWeight::fp8(Tensor w, Tensor scale) {
  return block_scaled(WeightKind::kFP8, DType::kE4M3, std::move(w), std::move(scale),
                      [](std::int64_t n, std::int64_t k) {
                        return std::pair{ceil_div(n, kFp8Tile), ceil_div(k, kFp8Tile)};
                      });
}

LinearWeight LinearWeight::fp4(Tensor w, Tensor scale) {
  return block_scaled(WeightKind::kFP4, DType::kE2M1x2, std::move(w), std::move(scale),
                      [](std::int64_t n, std::int64_t k) {
                        return std::pair{n, k / kFp4Block};
                      });
}

// The exact value of every element: bf16 and fp32 widened, FP8 and FP4 code × scale in double
// (spec 01 §1.7–§1.8; numerics' dequant_fp8_weight_exact / dequant_fp4_weight_exact).
Mat LinearWeight::values() const {
  const std::int64_t n = out_features(), k = in_features();
  Mat v(n, k);
  const std::span<double> out(v.data(), static_cast<std::size_t>(n * k));
  switch (kind) {
    case WeightKind::kBF16: {
      const auto bits = weight.values<std::uint16_t>();
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(bits[i]);
      break;
    }
    case WeightKind::kFP32: {
      const auto f = weight.values<float>();
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = f[i];
      break;
    }
    case WeightKind::kFP8:
      dequant_fp8_weight_exact(weight, scale, out);
      break;
    case WeightKind::kFP4:
      dequant_fp4_weight_exact(weight, scale, out);
      break;
  }
  return v;
}

LinearWeight LinearWeight::bf16_from(const Mat& w) {
  Tensor t(DType::kBF16, {w.rows(), w.cols()});
  auto bits = t.values<std::uint16_t>();
  for (Eigen::Index i = 0; i < w.size(); ++i) bits[static_cast<std::size_t>(i)] = double_to_bf16(w.data()[i]);
  return bf16(std::move(t));
}

LinearWeight LinearWeight::fp32_from(const Mat& w) {
  Tensor t(DType::kF32, {w.rows(), w.cols()});
  t.matrix<float>() = w.cast<float>();
  return fp32(std::move(t));
}

ScaleFormat linear_scale_format(const ModelConfig& c) {
  return c.scale_fmt == "ue8m0" ? ScaleFormat::kUE8M0 : ScaleFormat::kFP32;
}

// spec 01 §1.6: dispatch by weight dtype.
Mat linear(const Precision& p, const Mat& x, const LinearWeight& w, ScaleFormat act_scale_fmt) {
  if (x.cols() != w.in_features()) {
    throw std::invalid_argument("linear: input has " + std::to_string(x.cols()) + " features, the " +
                                weight_kind_name(w.kind) +
                                " weight expects in_features = " + std::to_string(w.in_features()));
  }
  if (!p.official()) {
    // exact: x · dequant(W)ᵀ in double, whatever the storage. Through matmul_nt, whose order of
    // summation is fixed per element: a row's bits do not depend on how many rows share the call
    // (decode ≡ prefill, batch invariance).
    return p.matmul_nt(x, w.values());
  }
  switch (w.kind) {
    case WeightKind::kBF16: {
      Mat y = p.matmul_nt(x, w.values());
      p.bf16_inplace(y);
      return y;
    }
    case WeightKind::kFP32:
      return p.matmul_nt(x, w.values());
    case WeightKind::kFP8:
      return fp8_gemm_official(p, x, w, act_scale_fmt);
    case WeightKind::kFP4:
      return fp4_gemm_official(p, x, w, act_scale_fmt);
  }
  throw std::logic_error("linear: unknown weight kind");
}

}  // namespace dsv4
