// Shared pieces of the tests of the spec 06 §6.14 FP32-partitioned sums (fp32_partitioned_sum_test
// and the per-site *_backward_fp32_test files): a bit-for-bit comparison of float vectors and the
// rule's pairwise tree over partition partials, written out plainly as the tests' independent port;
// the fp32 inputs of a matrix, the unit roundoffs and γ of the error bounds, and the guard that
// restores the GEMM thread count.
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/gemm.hpp"

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

// Every element of a (row-major) matrix rounded to fp32, in storage order.
inline std::vector<float> to_floats(const Mat& m) { return {m.data(), m.data() + m.size()}; }

constexpr double kU32 = 0x1p-24;        // unit roundoff of fp32
constexpr double kU64 = 0x1p-53;        // of double
constexpr double kMinSub32 = 0x1p-149;  // the smallest fp32 subnormal

// γ(n) = n·u / (1 − n·u) for unit roundoff u (Higham, Accuracy and Stability §3.1).
inline double gamma(double n, double u) { return n * u / (1.0 - n * u); }

// Restores the default GEMM thread count when a test that sets it ends (also on failure).
class ThreadGuard {
 public:
  ThreadGuard() = default;
  ThreadGuard(const ThreadGuard&) = delete;
  ThreadGuard& operator=(const ThreadGuard&) = delete;
  ~ThreadGuard() { set_gemm_threads(0); }
};

}  // namespace dsv4::test
