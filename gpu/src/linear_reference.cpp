// Host fallback of the linear kernels: the official-mode reference (ref/model `linear`) for one
// output element.
#include "linear_reference.hpp"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "dsv4/model/linear.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4::gpu::detail {

static_assert(static_cast<int>(LinearKind::kBF16) == static_cast<int>(WeightKind::kBF16) &&
                  static_cast<int>(LinearKind::kFP32) == static_cast<int>(WeightKind::kFP32) &&
                  static_cast<int>(LinearKind::kFP8) == static_cast<int>(WeightKind::kFP8) &&
                  static_cast<int>(LinearKind::kFP4) == static_cast<int>(WeightKind::kFP4),
              "LinearKind mirrors WeightKind");

namespace {

// Row n of w as a one-row LinearWeight of the same kind (its scale row: tile row ⌊n/128⌋ for fp8,
// row n for fp4).
LinearWeight weight_row(const LinearWeightView& w, std::int64_t n) {
  const std::int64_t k = w.in_features;
  const auto copy_bytes = [](Tensor& t, const std::uint8_t* from) {
    auto to = t.values<std::uint8_t>();
    std::copy(from, from + to.size(), to.begin());
  };
  switch (w.kind) {
    case LinearKind::kBF16:
    case LinearKind::kFP32: {
      Mat row(1, k);
      for (std::int64_t j = 0; j < k; ++j) row(0, j) = w.values[n * k + j];
      return w.kind == LinearKind::kBF16 ? LinearWeight::bf16_from(row) : LinearWeight::fp32_from(row);
    }
    case LinearKind::kFP8: {
      Tensor codes(DType::kE4M3, {1, k}), scale(DType::kE8M0, {1, k / 128});
      copy_bytes(codes, w.codes + n * k);
      copy_bytes(scale, w.scales + (n / 128) * (k / 128));
      return LinearWeight::fp8(std::move(codes), std::move(scale));
    }
    case LinearKind::kFP4: {
      Tensor codes(DType::kE2M1x2, {1, k}), scale(DType::kE8M0, {1, k / 32});
      copy_bytes(codes, w.codes + n * (k / 2));
      copy_bytes(scale, w.scales + n * (k / 32));
      return LinearWeight::fp4(std::move(codes), std::move(scale));
    }
  }
  return {};
}

}  // namespace

float linear_reference_element(const float* x_row, const LinearWeightView& w, std::int64_t n, ScaleFormat act_fmt) {
  Mat x(1, w.in_features);
  for (std::int64_t j = 0; j < w.in_features; ++j) x(0, j) = x_row[j];
  const Mat y = linear(Precision(Mode::kOfficial), x, weight_row(w, n), act_fmt);
  return static_cast<float>(y(0, 0));
}

}  // namespace dsv4::gpu::detail
