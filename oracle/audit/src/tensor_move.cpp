// A tensor whose bits move between two runs (tensor_move.hpp).
#include "dsv4/audit/tensor_move.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "dsv4/compare/ulp.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4::audit {

int ulp_bin(std::uint64_t u) {
  if (u <= 1) return 0;
  if (u == 2) return 1;
  if (u <= 4) return 2;
  if (u <= 16) return 3;
  if (u <= 256) return 4;
  return 5;
}

std::optional<TensorMove> tensor_move(const std::string& name, std::span<const double> yardstick,
                                      std::span<const double> other, DType grid) {
  TensorMove m;
  m.name = name;
  m.elements = static_cast<std::int64_t>(yardstick.size());
  const bool floats = grid != DType::kI64 && grid != DType::kI32;
  for (std::size_t i = 0; i < std::max(yardstick.size(), other.size()); ++i) {
    const bool both = i < yardstick.size() && i < other.size();
    if (both && double_bits(yardstick[i]) == double_bits(other[i])) continue;
    ++m.differing;
    if (m.first_element < 0) {
      m.first_element = static_cast<std::int64_t>(i);
      m.yardstick = i < yardstick.size() ? yardstick[i] : std::nan("");
      m.other = i < other.size() ? other[i] : std::nan("");
    }
    std::uint64_t u = std::numeric_limits<std::uint64_t>::max();
    if (both && !std::isnan(yardstick[i]) && !std::isnan(other[i])) {
      u = floats ? compare::ulp_distance(compare::ulp_grid(grid), other[i], yardstick[i])
                 : static_cast<std::uint64_t>(std::fabs(yardstick[i] - other[i]));
    }
    ++m.ulp_hist[static_cast<std::size_t>(ulp_bin(u))];
  }
  if (m.differing == 0) return std::nullopt;
  return m;
}

}  // namespace dsv4::audit
