// The official-style expert weight gradients (spec 06 §6.14): expert_backward_fp32.hpp.
#include "dsv4/train/expert_backward_fp32.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "dsv4/train/linear_backward_fp32.hpp"

namespace dsv4 {

namespace {

// Rows routed[0], routed[1], … of a [T, width] matrix, in that order (data movement only).
std::vector<float> gather_rows(std::span<const float> m, std::span<const std::int64_t> routed, std::int64_t width) {
  const auto w = static_cast<std::size_t>(width);
  std::vector<float> out(routed.size() * w);
  for (std::size_t r = 0; r < routed.size(); ++r) {
    const auto src = m.subspan(static_cast<std::size_t>(routed[r]) * w, w);
    std::copy(src.begin(), src.end(), out.begin() + static_cast<std::ptrdiff_t>(r * w));
  }
  return out;
}

}  // namespace

ExpertDweightsFp32 expert_dweights_fp32(std::span<const float> x, std::span<const float> dy, std::int64_t tokens,
                                        std::int64_t d, std::span<const std::int64_t> routed, std::span<const float> h,
                                        std::span<const float> dg, std::span<const float> du, std::int64_t de,
                                        const PartitionRule& rule) {
  const auto rows = static_cast<std::int64_t>(routed.size());
  if (tokens < 0 || d < 0 || de < 0 || x.size() != static_cast<std::size_t>(tokens * d) || dy.size() != x.size() ||
      h.size() != static_cast<std::size_t>(rows * de) || dg.size() != h.size() || du.size() != h.size()) {
    throw std::invalid_argument("expert_dweights_fp32: T " + std::to_string(tokens) + ", d " + std::to_string(d) +
                                ", de " + std::to_string(de) + ", R " + std::to_string(rows) +
                                " do not match x, dy of " + std::to_string(x.size()) + ", " +
                                std::to_string(dy.size()) + " and h, dg, du of " + std::to_string(h.size()) + ", " +
                                std::to_string(dg.size()) + ", " + std::to_string(du.size()) + " elements");
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t t = routed[static_cast<std::size_t>(r)];
    if (t < 0 || t >= tokens || (r > 0 && t <= routed[static_cast<std::size_t>(r - 1)])) {
      throw std::invalid_argument("expert_dweights_fp32: routed row " + std::to_string(r) + " is token " +
                                  std::to_string(t) + ": the routed set must be strictly ascending in [0, " +
                                  std::to_string(tokens) + ")");
    }
  }
  const std::vector<float> xg = gather_rows(x, routed, d), dyg = gather_rows(dy, routed, d);
  ExpertDweightsFp32 out;
  out.dw1 = linear_dweight_fp32(xg, dg, rows, d, de, rule);
  out.dw3 = linear_dweight_fp32(xg, du, rows, d, de, rule);
  out.dw2 = linear_dweight_fp32(h, dyg, rows, de, d, rule);
  return out;
}

}  // namespace dsv4
