// Backward of the embedding (forward spec 05 §5.1: h_t = E[id_t]; backward spec 06 §6.12).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The forward in any scalar (the gradient check's Mp50 evaluation; a gather has no arithmetic):
// h [ids, dim] from the table [vocab, dim], both row-major. std::invalid_argument for an id outside
// [0, vocab).
template <class T>
std::vector<T> embedding_gather(const std::vector<T>& table, std::int64_t vocab, std::int64_t dim,
                                std::span<const std::int64_t> ids);

// dE [vocab, dim]: dE[v] = Σ_{t : id_t = v} dh[t], the tokens t in ascending order (exact mode,
// double). Rows of ids that never occur are zero. std::invalid_argument for an id outside
// [0, vocab) or dh not [ids, dim].
Mat embedding_backward(std::span<const std::int64_t> ids, const Mat& dh, std::int64_t vocab);

}  // namespace dsv4

#include <stdexcept>
#include <string>

namespace dsv4 {

template <class T>
std::vector<T> embedding_gather(const std::vector<T>& table, std::int64_t vocab, std::int64_t dim,
                                std::span<const std::int64_t> ids) {
  std::vector<T> h;
  h.reserve(ids.size() * static_cast<std::size_t>(dim));
  for (const std::int64_t id : ids) {
    if (id < 0 || id >= vocab) {
      throw std::invalid_argument("embedding: token id " + std::to_string(id) + " outside [0, " +
                                  std::to_string(vocab) + ")");
    }
    const auto row = table.begin() + id * dim;
    h.insert(h.end(), row, row + dim);
  }
  return h;
}

}  // namespace dsv4
