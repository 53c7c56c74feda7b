// Private helpers shared by the quantiser sources (not part of the public API).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "dsv4/numerics/tensor.hpp"

namespace dsv4::quant_detail {

// Argument check shared by every row-blocked quantiser: rows of `cols` elements, blocks of `block`
// elements starting at element 0 of each row. Returns the number of rows.
inline std::int64_t checked_rows(const char* fn, std::size_t size, std::int64_t cols, int block) {
  if (block <= 0)
    throw std::invalid_argument(std::string(fn) + ": block size must be positive, got " + std::to_string(block));
  if (cols <= 0)
    throw std::invalid_argument(std::string(fn) + ": row length (cols) must be positive, got " + std::to_string(cols));
  if (cols % block != 0) {
    throw std::invalid_argument(std::string(fn) + ": row length " + std::to_string(cols) +
                                " is not a multiple of the block size " + std::to_string(block));
  }
  if (static_cast<std::int64_t>(size) % cols != 0) {
    throw std::invalid_argument(std::string(fn) + ": input size " + std::to_string(size) +
                                " is not a multiple of the row length " + std::to_string(cols));
  }
  return static_cast<std::int64_t>(size) / cols;
}

// fp32 max of |x| over one block (the kernels' reduce_absmax; exact, a max never rounds).
inline float block_absmax(std::span<const float> block) {
  float a = 0.0f;
  for (const float v : block) a = std::fmax(a, std::fabs(v));
  return a;
}

}  // namespace dsv4::quant_detail

namespace dsv4::quant_detail {

// Shape/dtype checks of the weight tensors (throw std::invalid_argument naming the problem).
void require_matrix(const char* fn, const char* what, const Tensor& t, DType dtype);
void require_shape(const char* fn, const char* what, const Tensor& t, std::int64_t rows, std::int64_t cols);
// A packed fp4 weight [N, K] (K a multiple of 32) with its 1×32 e8m0 scales [N, K/32].
struct Fp4WeightShape {
  std::int64_t n = 0, k = 0;
};
Fp4WeightShape require_fp4_weight(const char* fn, const Tensor& w, const Tensor& scales);

}  // namespace dsv4::quant_detail
