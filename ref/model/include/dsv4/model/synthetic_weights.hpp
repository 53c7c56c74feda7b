// Deterministic synthetic weights (Philox, numerics/philox.hpp): element i of a tensor is a pure
// function of (seed, name, i), so weights are the same on every machine and thread count.
// Distributions (documented once here, used by every component's `synthetic`):
//   norm weights   1 + 0.1·N(0,1), rounded to bf16 (the checkpoint stores bf16, the code widens)
//   dense matrices std·N(0,1), rounded to the weight's storage format.
#pragma once

#include <cstdint>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// The Philox seed of layer `layer`'s attention, gate and experts from the model seed (one formula:
// the synthetic weights and the committed goldens depend on its bits).
inline std::uint64_t synthetic_layer_seed(std::uint64_t seed, std::int64_t layer) {
  return seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(layer);
}

// A norm weight [n]: 1 + 0.1·N(0,1), bf16 values.
Vec synthetic_norm_weight(std::uint64_t seed, const char* name, std::int64_t n);

// A dense [n, k] matrix std·N(0,1) rounded to bf16 (embedding, head: checkpoint bf16).
Mat synthetic_bf16_matrix(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std);

}  // namespace dsv4
