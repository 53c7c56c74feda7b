// Backward of the interleaved partial RoPE and of its inverse (forward spec 02 §2.3, exact mode;
// backward spec 06 §6.12).
//
// RoPE rotates each pair (a, b) of the last r_d dims of every head by θ: (a, b) ↦ R(θ)(a, b) with
// R(θ) = [[c, −s], [s, c]] (c, s the table's cos θ and sin θ). Its Jacobian is R(θ) itself, so
//   dx = R(θ)ᵀ dy = [[c, s], [−s, c]] dy,
// the rotation the reference's inverse RoPE applies (with the same table values c and s, so the
// identity holds exactly even where c² + s² ≠ 1 in floating point). The backward of RoPE is the
// inverse RoPE of dy, and the backward of the inverse is the RoPE of dy; the first head_dim − r_d
// dims pass dy through. The table (integer positions, the config's frequencies) has no gradient.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/model/rope.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation): the reference's
// own pair rotation rope_rotate_pair (ref/model rope.hpp) with ExactArithmetic, over the same
// pairs as apply_rope_inplace. x [rows, cols] row-major, in place.
template <class T>
void rope_exact_inplace(std::vector<T>& x, std::int64_t rows, std::int64_t cols, const RopeTable& table,
                        std::span<const std::int64_t> positions, std::int64_t head_dim, bool inverse) {
  const std::int64_t rd = table.rope_head_dim();
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t t = positions[static_cast<std::size_t>(r)];
    for (std::int64_t h = 0; h < cols / head_dim; ++h) {
      T* v = x.data() + r * cols + h * head_dim + (head_dim - rd);
      for (std::int64_t i = 0; i < table.n_pairs(); ++i) {
        const T c(table.cos(t, i));
        const T s(inverse ? -table.sin(t, i) : table.sin(t, i));
        rope_rotate_pair(v[2 * i], v[2 * i + 1], c, s, ExactArithmetic{});
      }
    }
  }
}

// dx of apply_rope_inplace(Precision(Mode::kExact), table, x, positions, head_dim, inverse) for the
// upstream gradient dy [rows, H·head_dim] (exact mode, double). Throws as apply_rope_inplace.
Mat rope_backward(const RopeTable& table, const Mat& dy, std::span<const std::int64_t> positions, std::int64_t head_dim,
                  bool inverse);

}  // namespace dsv4
