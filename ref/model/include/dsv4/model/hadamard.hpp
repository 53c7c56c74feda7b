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
void hadamard_inplace(const Precision& p, Mat& x, std::int64_t size = 0);
Mat hadamard(const Precision& p, const Mat& x, std::int64_t size = 0);

}  // namespace dsv4
