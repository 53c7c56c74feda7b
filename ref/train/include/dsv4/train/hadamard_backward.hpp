// Backward of the Walsh–Hadamard rotation (forward spec 01 §1.10, exact mode; backward spec 06
// §6.12).
//
// On every size-N segment y = N^(−1/2) H x with H the Walsh matrix (symmetric, H H = N I): the
// Jacobian is N^(−1/2) H, its transpose the same matrix, so dx = N^(−1/2) H dy — the forward
// applied to dy.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/hadamard.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation): the reference's own
// butterflies hadamard_butterflies (ref/model hadamard.hpp) with ExactArithmetic, then the scale
// N^(−1/2) in T. x [rows, cols] row-major, in place; size ≤ 0 means cols (as hadamard_inplace).
template <class T>
void hadamard_exact_inplace(std::vector<T>& x, std::int64_t rows, std::int64_t cols, std::int64_t size) {
  using std::sqrt;
  const std::int64_t n = size <= 0 ? cols : size;
  const T scale = T(1) / sqrt(T(n));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t g = 0; g < cols / n; ++g) {
      T* u = x.data() + r * cols + g * n;
      hadamard_butterflies(u, n, ExactArithmetic{});
      for (std::int64_t i = 0; i < n; ++i) u[i] = u[i] * scale;
    }
  }
}

// dx of hadamard(Precision(Mode::kExact), x, size) for the upstream gradient dy (exact mode,
// double). Throws as hadamard_inplace.
Mat hadamard_backward(const Mat& dy, std::int64_t size);

}  // namespace dsv4
