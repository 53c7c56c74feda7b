// The official-style RMSNorm gain gradient (spec 06 §6.14): rmsnorm_backward_fp32.hpp.
#include "dsv4/train/rmsnorm_backward_fp32.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

std::vector<float> rmsnorm_dweight_fp32(std::span<const float> dy, std::span<const float> xr, std::int64_t rows,
                                        std::int64_t dim, const PartitionRule& rule) {
  if (rows < 0 || dim < 0 || dy.size() != static_cast<std::size_t>(rows * dim) || xr.size() != dy.size()) {
    throw std::invalid_argument("rmsnorm_dweight_fp32: " + std::to_string(rows) + " rows of " + std::to_string(dim) +
                                " do not match dy, xr of " + std::to_string(dy.size()) + ", " +
                                std::to_string(xr.size()) + " elements");
  }
  const auto ud = static_cast<std::size_t>(dim);
  return fp32_partitioned_sum(rows, dim, rule, [&](std::int64_t r0, std::int64_t r1, std::span<float> partial) {
    for (std::int64_t r = r0; r < r1; ++r) {  // rows ascending: each element's fmaf sequence
      const std::size_t o = static_cast<std::size_t>(r) * ud;
      for (std::size_t i = 0; i < ud; ++i) partial[i] = std::fma(dy[o + i], xr[o + i], partial[i]);
    }
  });
}

}  // namespace dsv4
