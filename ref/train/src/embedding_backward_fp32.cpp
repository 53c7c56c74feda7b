// The official-style gradient of a row gather (spec 06 §6.14): embedding_backward_fp32.hpp.
#include "dsv4/train/embedding_backward_fp32.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

std::vector<float> embedding_dtable_fp32(std::span<const std::int64_t> ids, std::span<const float> dh,
                                         std::int64_t table_rows, std::int64_t d, const PartitionRule& rule) {
  const auto tokens = static_cast<std::int64_t>(ids.size());
  if (table_rows < 0 || d < 0 || dh.size() != static_cast<std::size_t>(tokens * d)) {
    throw std::invalid_argument("embedding_dtable_fp32: " + std::to_string(dh.size()) + " values for " +
                                std::to_string(tokens) + " tokens of " + std::to_string(d));
  }
  for (const std::int64_t id : ids) {
    if (id < 0 || id >= table_rows) {
      throw std::invalid_argument("embedding_dtable_fp32: row " + std::to_string(id) + " outside [0, " +
                                  std::to_string(table_rows) + ")");
    }
  }
  const auto ud = static_cast<std::size_t>(d);
  return fp32_partitioned_sum(
      tokens, table_rows * d, rule, [&](std::int64_t r0, std::int64_t r1, std::span<float> partial) {
        for (std::int64_t t = r0; t < r1; ++t) {  // tokens ascending
          float* row = partial.data() + static_cast<std::size_t>(ids[static_cast<std::size_t>(t)]) * ud;
          const float* g = dh.data() + static_cast<std::size_t>(t) * ud;
          for (std::size_t i = 0; i < ud; ++i) row[i] = std::fma(g[i], 1.0f, row[i]);
        }
      });
}

}  // namespace dsv4
