// Shared pieces of the tests of the spec 06 §6.14 FP32-partitioned sums (fp32_partitioned_sum_test
// and the per-site *_backward_fp32_test files): a bit-for-bit comparison of float vectors and the
// rule's pairwise tree over partition partials, written out plainly as the tests' independent port.
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

namespace dsv4::test {

// Equal lengths and the same bytes (so −0 ≠ +0, and a NaN equals only its own pattern).
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Element e of the pairwise tree over partials b[lo], …, b[lo + n − 1]: the left half is the largest
// power of two below n, each node one fp32 addition (spec 06 §6.14).
inline float tree(const std::vector<std::vector<float>>& b, std::size_t e, std::size_t lo, std::size_t n) {
  if (n == 1) return b[lo][e];
  std::size_t h = 1;
  while (2 * h < n) h *= 2;
  return tree(b, e, lo, h) + tree(b, e, lo + h, n - h);
}

}  // namespace dsv4::test
