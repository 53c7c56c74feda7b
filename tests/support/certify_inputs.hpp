// Seeded inputs of the exact-mode certification suites (kv_certify_test, indexer_certify_test):
// unrounded doubles — exact mode takes any double, and a certification test wants values that no
// storage format has rounded. Element i is a pure function of (seed, stream, i) through the
// counter-based RNG, as in random_matrix.hpp.
#pragma once

#include <cstdint>

#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4::test {

// rows × cols doubles scale · N(0, 1), unrounded.
inline Mat random_normal_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed, std::uint64_t stream,
                                double scale) {
  const CounterRng rng(seed, stream);
  Mat m(rows, cols);
  for (std::int64_t i = 0; i < rows * cols; ++i) m.data()[i] = scale * rng.normal(static_cast<std::uint64_t>(i));
  return m;
}

// A norm weight γ of n entries, 1 + 0.1 · N(0, 1), unrounded.
inline Vec random_norm_weight(std::int64_t n, std::uint64_t seed, std::uint64_t stream) {
  const CounterRng rng(seed, stream);
  Vec v(n);
  for (std::int64_t i = 0; i < n; ++i) v(i) = 1.0 + 0.1 * rng.normal(static_cast<std::uint64_t>(i));
  return v;
}

}  // namespace dsv4::test
