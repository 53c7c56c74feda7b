// Deterministic synthetic weights (Philox, numerics/philox.hpp): element i of a tensor is a pure
// function of (seed, name, i), so weights are the same on every machine and thread count.
// Distributions (documented once here, used by every component's `synthetic`):
//   norm weights   1 + 0.1·N(0,1), rounded to bf16 (the checkpoint stores bf16, the code widens)
//   dense matrices std·N(0,1), rounded to the weight's storage format.
#pragma once

#include <cstdint>

#include "dsv4/model/precision.hpp"

namespace dsv4 {

// A norm weight [n]: 1 + 0.1·N(0,1), bf16 values.
Vec synthetic_norm_weight(std::uint64_t seed, const char* name, std::int64_t n);

// A dense [n, k] matrix std·N(0,1) rounded to bf16 (embedding, head: checkpoint bf16).
Mat synthetic_bf16_matrix(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std);

}  // namespace dsv4
