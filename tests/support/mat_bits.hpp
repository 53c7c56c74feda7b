// Bit-level comparison of matrices for the decode ≡ prefill and determinism tests: equal shapes
// and the same IEEE bit pattern in every element (so −0 ≠ +0, and a NaN equals only itself).
#pragma once

#include <cstdint>

#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4::test {

inline bool bit_equal(const Mat& a, const Mat& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    if (double_bits(a.data()[i]) != double_bits(b.data()[i])) return false;
  }
  return true;
}

}  // namespace dsv4::test
