// Host fallback of the linear kernels: the official-mode reference (ref/model `linear`) for one
// output element.
#include "linear_reference.hpp"

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <utility>
#include <vector>

#include "dsv4/model/linear.hpp"
#include "dsv4/model/precision.hpp"
#include "reference_weight.hpp"

namespace dsv4::gpu::detail {

static_assert(static_cast<int>(LinearKind::kBF16) == static_cast<int>(WeightKind::kBF16) &&
                  static_cast<int>(LinearKind::kFP32) == static_cast<int>(WeightKind::kFP32) &&
                  static_cast<int>(LinearKind::kFP8) == static_cast<int>(WeightKind::kFP8) &&
                  static_cast<int>(LinearKind::kFP4) == static_cast<int>(WeightKind::kFP4),
              "LinearKind mirrors WeightKind");

LinearWeight reference_weight(const LinearWeightView& w) {
  const std::int64_t n = w.out_features, k = w.in_features;
  const auto bytes = [](DType t, std::vector<std::int64_t> shape, const std::uint8_t* from) {
    Tensor out(t, std::move(shape));
    auto to = out.values<std::uint8_t>();
    std::copy(from, from + to.size(), to.begin());
    return out;
  };
  switch (w.kind) {
    case LinearKind::kBF16:
    case LinearKind::kFP32: {
      Mat v(n, k);
      for (std::int64_t i = 0; i < n * k; ++i) v.data()[i] = w.values[i];
      return w.kind == LinearKind::kBF16 ? LinearWeight::bf16_from(v) : LinearWeight::fp32_from(v);
    }
    case LinearKind::kFP8:
      return LinearWeight::fp8(bytes(DType::kE4M3, {n, k}, w.codes),
                               bytes(DType::kE8M0, {(n + 127) / 128, k / 128}, w.scales));
    case LinearKind::kFP4:
      return LinearWeight::fp4(bytes(DType::kE2M1x2, {n, k}, w.codes), bytes(DType::kE8M0, {n, k / 32}, w.scales));
  }
  throw std::invalid_argument("reference_weight: unknown weight kind");
}

namespace {

// Row n of w as a one-row weight of the same kind (its scale row: tile row ⌊n/128⌋ for fp8, row n
// for fp4).
LinearWeight weight_row(const LinearWeightView& w, std::int64_t n) {
  const std::int64_t k = w.in_features;
  LinearWeightView row = w;
  row.out_features = 1;
  switch (w.kind) {
    case LinearKind::kBF16:
    case LinearKind::kFP32:
      row.values = w.values + n * k;
      break;
    case LinearKind::kFP8:
      row.codes = w.codes + n * k;
      row.scales = w.scales + (n / 128) * (k / 128);
      break;
    case LinearKind::kFP4:
      row.codes = w.codes + n * (k / 2);
      row.scales = w.scales + n * (k / 32);
      break;
  }
  return reference_weight(row);
}

}  // namespace

float linear_reference_element(const float* x_row, const LinearWeightView& w, std::int64_t n, ScaleFormat act_fmt) {
  Mat x(1, w.in_features);
  for (std::int64_t j = 0; j < w.in_features; ++j) x(0, j) = x_row[j];
  const Mat y = linear(Precision(Mode::kOfficial), x, weight_row(w, n), act_fmt);
  return static_cast<float>(y(0, 0));
}

}  // namespace dsv4::gpu::detail
