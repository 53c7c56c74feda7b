// Walsh–Hadamard rotation (spec 01 §1.10; official code rotate_activation).
#pragma once

#include <cstdint>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// spec 01 §1.10: y = WHT(x) · N^(−1/2) on every contiguous `size`-wide segment of every row of x
// (size = N, a power of two; size ≤ 0 means x.cols()), in place.
// Official: u = fp32(x); radix-2 butterfly stages s = 0, 1, …, log2 N − 1 in increasing order,
// (u_i, u_{i+2^s}) ← (fl32(u_i + u_{i+2^s}), fl32(u_i − u_{i+2^s})); then bf16(fl32(u · fl32(N^−1/2))).
// Exact: the orthonormal transform in double. Throws std::invalid_argument when size is not a
// power of two or does not divide x.cols().
// spec 01 §1.10: the radix-2 butterflies of one segment u[0, n), n a power of two, stage
// s = 0..log2 n − 1 (stride 2^s) in increasing order, each sum and difference in the arithmetic
// `ar` (a Precision: fp32 official / double exact; ExactArithmetic: the Mp50 re-decisions).
template <class T, class Arith>
void hadamard_butterflies(T* u, std::int64_t n, const Arith& ar) {
  for (std::int64_t h = 1; h < n; h *= 2) {
    for (std::int64_t i = 0; i < n; ++i) {
      if ((i & h) != 0) continue;
      const T a = u[i];
      const T b = u[i + h];
      u[i] = ar.add(a, b);
      u[i + h] = ar.sub(a, b);
    }
  }
}

void hadamard_inplace(const Precision& p, Mat& x, std::int64_t size = 0);
Mat hadamard(const Precision& p, const Mat& x, std::int64_t size = 0);

}  // namespace dsv4
