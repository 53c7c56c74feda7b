// Seeded test data shared by the test suites: element i of a matrix is a pure function of
// (seed, stream, i) through the counter-based RNG, so every suite's inputs are reproducible.
#pragma once

#include <cstdint>

#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4::test {

// rows × cols doubles scale · N(0, 1), unrounded (exact-mode inputs no storage format has rounded).
inline Mat random_normal_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed, std::uint64_t stream,
                                double scale) {
  const CounterRng rng(seed, stream);
  Mat m(rows, cols);
  for (std::int64_t i = 0; i < rows * cols; ++i) m.data()[i] = scale * rng.normal(static_cast<std::uint64_t>(i));
  return m;
}

// rows × cols bf16 values bf16(scale · N(0, 1)).
inline Mat random_bf16_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed, std::uint64_t stream,
                              double scale) {
  Mat m = random_normal_matrix(rows, cols, seed, stream, scale);
  for (std::int64_t i = 0; i < rows * cols; ++i) m.data()[i] = round_bf16(m.data()[i]);
  return m;
}

}  // namespace dsv4::test
