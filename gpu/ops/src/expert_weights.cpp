// Expert weights among an op's inputs (expert_weights.hpp).
#include "expert_weights.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "dsv4/model/indexer.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"

namespace dsv4::ops::detail {
namespace {

constexpr std::int64_t kTile = 128;  // fp8 weight scale tile, activation quantiser block
constexpr std::int64_t kFp4Block = 32;

std::int64_t code_cols(WeightKind kind, std::int64_t k) { return kind == WeightKind::kFP4 ? k / 2 : k; }
std::int64_t scale_rows(WeightKind kind, std::int64_t n) {
  return kind == WeightKind::kFP8 ? (n + kTile - 1) / kTile : n;
}
std::int64_t scale_cols(WeightKind kind, std::int64_t k) {
  return kind == WeightKind::kFP8 ? k / kTile : k / kFp4Block;
}

Tensor byte_tensor(dsv4::DType t, std::vector<std::int64_t> shape, const std::uint8_t* from) {
  Tensor out(t, std::move(shape));
  auto to = out.values<std::uint8_t>();
  std::copy(from, from + to.size(), to.begin());
  return out;
}

}  // namespace

WeightKind expert_weight_kind(std::int64_t code, const char* op) {
  if (code != 0 && code != 2 && code != 3) {
    throw std::invalid_argument(std::string(op) + ": an expert weight kind is 0 (bf16), 2 (fp8) or 3 (fp4), got " +
                                std::to_string(code));
  }
  return static_cast<WeightKind>(code);
}

WeightInput read_weight(const Call& c, std::size_t& at, WeightKind kind, std::int64_t blocks, std::int64_t n,
                        std::int64_t k, const char* op) {
  const auto need = [&](std::size_t i, ops::DType t, std::int64_t rows, std::int64_t cols) -> const Array& {
    if (i >= c.inputs.size()) throw std::invalid_argument(std::string(op) + ": missing a weight array");
    const Array& a = c.inputs[i];
    if (a.dtype != t || a.rows != rows || a.cols != cols || a.per_row) {
      throw std::invalid_argument(std::string(op) + ": input " + a.name + " must be a shared " + dtype_name(t) + " [" +
                                  std::to_string(rows) + ", " + std::to_string(cols) + "] array");
    }
    return a;
  };
  WeightInput w;
  w.kind = kind;
  w.blocks = blocks;
  w.n = n;
  w.k = k;
  if (kind == WeightKind::kBF16) {
    w.data = &need(at++, ops::DType::kF32, blocks * n, k);
    return w;
  }
  if (k % kTile != 0) throw std::invalid_argument(std::string(op) + ": fp8 / fp4 weights need K a multiple of 128");
  w.data = &need(at++, ops::DType::kU8, blocks * n, code_cols(kind, k));
  w.scale = &need(at++, ops::DType::kU8, blocks * scale_rows(kind, n), scale_cols(kind, k));
  return w;
}

LinearWeight WeightInput::block(std::int64_t b) const {
  switch (kind) {
    case WeightKind::kBF16: {
      const std::vector<float> v(data->f32.begin() + b * n * k, data->f32.begin() + (b + 1) * n * k);
      return LinearWeight::bf16_from(to_mat(std::vector<double>(v.begin(), v.end()), n, k));
    }
    case WeightKind::kFP8:
    case WeightKind::kFP4: {
      const bool fp8 = kind == WeightKind::kFP8;
      const std::int64_t codes = n * code_cols(kind, k), scales = scale_rows(kind, n) * scale_cols(kind, k);
      return fp8 ? LinearWeight::fp8(byte_tensor(dsv4::DType::kE4M3, {n, k}, data->u8.data() + b * codes),
                                     byte_tensor(dsv4::DType::kE8M0, {scale_rows(kind, n), scale_cols(kind, k)},
                                                 scale->u8.data() + b * scales))
                 : LinearWeight::fp4(
                       byte_tensor(dsv4::DType::kE2M1x2, {n, k}, data->u8.data() + b * codes),
                       byte_tensor(dsv4::DType::kE8M0, {n, k / kFp4Block}, scale->u8.data() + b * scales));
    }
    case WeightKind::kFP32:
      break;
  }
  throw std::invalid_argument("expert weight: fp32 is not an expert weight kind");
}

gpu::LinearWeightView WeightInput::view(std::vector<float>& bf16) const {
  gpu::LinearWeightView v;
  v.kind = static_cast<gpu::LinearKind>(static_cast<int>(kind));
  v.out_features = n;
  v.in_features = k;
  if (kind == WeightKind::kBF16) {
    bf16.clear();
    for (const float x : data->f32) bf16.push_back(round_bf16(x));
    v.values = bf16.data();
  } else {
    v.codes = data->u8.data();
    v.scales = scale->u8.data();
  }
  return v;
}

std::vector<Array> quantised_weight_arrays(WeightKind kind, const std::string& name, std::int64_t blocks,
                                           std::int64_t n, std::int64_t k, double sigma, WeightValues values,
                                           std::uint64_t seed) {
  if (kind != WeightKind::kFP8 && kind != WeightKind::kFP4) {
    throw std::invalid_argument("quantised_weight_arrays: fp8 or fp4");
  }
  const bool fp8 = kind == WeightKind::kFP8;
  std::vector<std::uint8_t> codes, scales;
  if (values == WeightValues::kNormals) {
    for (std::int64_t b = 0; b < blocks; ++b) {
      const std::string block = name + "." + std::to_string(b);
      const LinearWeight w = fp8 ? synthetic_fp8_weight(seed, block.c_str(), n, k, sigma)
                                 : synthetic_fp4_weight(seed, block.c_str(), n, k, sigma);
      const auto c = w.weight.values<std::uint8_t>();
      const auto s = w.scale.values<std::uint8_t>();
      codes.insert(codes.end(), c.begin(), c.end());
      scales.insert(scales.end(), s.begin(), s.end());
    }
  } else {
    codes = fp8 ? edge_fp8_codes(blocks * n, k, seed) : edge_fp4_codes(blocks * n, k, seed);
    // Scales: one in 16 the smallest 2^-127, one in 16 tiny 2^-126..2^-119, one in 16 2^4, the rest
    // 2^-10..2^-5 (the models' range); with 8 scales or more the last two are 2^-127 and 2^4 (fewer:
    // a forced 2^-127 would zero a whole weight). Small enough that no expert output overflows.
    const CounterRng rng(seed, stream_id("ops.expert_weights.scales"));
    scales.resize(static_cast<std::size_t>(blocks * scale_rows(kind, n) * scale_cols(kind, k)));
    for (std::size_t i = 0; i < scales.size(); ++i) {
      const auto u = rng.words(i);
      const std::size_t from_end = scales.size() - i;
      const std::uint64_t pick = scales.size() >= 8 && from_end <= 2 ? 2 - from_end : u[0] % 16;
      scales[i] = pick == 0   ? std::uint8_t{0}
                  : pick == 1 ? std::uint8_t{127 + 4}
                  : pick == 2 ? static_cast<std::uint8_t>(1 + u[1] % 8)
                              : static_cast<std::uint8_t>(117 + u[1] % 6);
    }
  }
  Array a = Array::bytes(name, blocks * n, code_cols(kind, k), std::move(codes));
  Array s = Array::bytes(name + "_scale", blocks * scale_rows(kind, n), scale_cols(kind, k), std::move(scales));
  a.per_row = false;
  s.per_row = false;
  return {std::move(a), std::move(s)};
}

}  // namespace dsv4::ops::detail
