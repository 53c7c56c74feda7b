// FP32-partitioned reductions (spec 06 §6.14): the rule of fp32_partitioned_sum.hpp.
#include "dsv4/train/fp32_partitioned_sum.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "dsv4/numerics/parallel_rows.hpp"

namespace dsv4 {

std::int64_t PartitionRule::partitions(std::int64_t rows) const {
  if (rows < 0 || chunk_rows < 1) {
    throw std::invalid_argument("PartitionRule: " + std::to_string(rows) + " rows in chunks of " +
                                std::to_string(chunk_rows));
  }
  return (rows + chunk_rows - 1) / chunk_rows;
}

std::int64_t PartitionRule::tree_depth(std::int64_t rows) const {
  std::int64_t depth = 0;
  for (std::int64_t span = 1; span < partitions(rows); span *= 2) ++depth;
  return depth;
}

// Step 3: level s adds buffer i + s into buffer i for i ≡ 0 (mod 2s). Elements are independent,
// so ranges of elements run in parallel without changing a bit.
void fp32_pairwise_tree(std::span<float> partials, std::int64_t out_size) {
  if (out_size <= 0) return;
  const auto s_elems = static_cast<std::size_t>(out_size);
  if (partials.size() % s_elems != 0) {
    throw std::invalid_argument("fp32_pairwise_tree: " + std::to_string(partials.size()) +
                                " elements are not whole buffers of " + std::to_string(out_size));
  }
  const auto p = static_cast<std::int64_t>(partials.size() / s_elems);
  parallel_rows(out_size, 4096, [&](std::int64_t e0, std::int64_t e1) {
    for (std::int64_t s = 1; s < p; s *= 2) {
      for (std::int64_t i = 0; i + s < p; i += 2 * s) {
        float* dst = partials.data() + static_cast<std::size_t>(i) * s_elems;
        const float* src = partials.data() + static_cast<std::size_t>(i + s) * s_elems;
        for (std::int64_t e = e0; e < e1; ++e) dst[e] = dst[e] + src[e];
      }
    }
  });
}

std::vector<float> fp32_partitioned_sum(std::int64_t rows, std::int64_t out_size, const PartitionRule& rule,
                                        const PartitionAccumulate& accumulate) {
  if (out_size < 0) throw std::invalid_argument("fp32_partitioned_sum: output of " + std::to_string(out_size));
  const std::int64_t p = rule.partitions(rows);
  const auto s_elems = static_cast<std::size_t>(out_size);
  if (p == 0) return std::vector<float>(s_elems, 0.0f);
  if (rule.shuffled) {  // the catalogue's atomicAdd schedule (PartitionRule::shuffled), one thread
    std::int64_t stride = rows > 2 ? rows / 2 + 1 : 1;
    while (std::gcd(stride, rows) != 1) ++stride;
    std::vector<float> sum(s_elems, 0.0f);
    for (std::int64_t i = 0; i < rows; ++i) {
      const std::int64_t r = (i * stride) % rows;
      accumulate(r, r + 1, sum);
    }
    return sum;
  }
  // Steps 1–2: one zeroed buffer per partition; threads take whole partitions.
  std::vector<float> partials(static_cast<std::size_t>(p) * s_elems, 0.0f);
  parallel_rows(p, 1, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t q = p0; q < p1; ++q) {
      const std::int64_t r0 = q * rule.chunk_rows;
      const std::int64_t r1 = std::min(r0 + rule.chunk_rows, rows);
      accumulate(r0, r1, std::span<float>(partials.data() + static_cast<std::size_t>(q) * s_elems, s_elems));
    }
  });
  fp32_pairwise_tree(partials, out_size);  // step 3
  partials.resize(s_elems);                // buffer 0
  return partials;
}

}  // namespace dsv4
