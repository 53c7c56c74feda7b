// Case inputs shared by the registry's ops and the kernels' own tests (tests/gpu_*_test.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/ops/op.hpp"

namespace dsv4::ops {

// rows × cols bf16 activations (stored as float) covering the quantisers' edge cases. Each
// 128-element segment of the flat array has a kind, each 32-element sub-segment its own magnitude,
// so fp4 blocks (32) and fp8 blocks (32, 64, 128) all see every kind and wide ranges in one block:
//  0 all zero (signed zeros)           1 around the 1e-4 amax floor     2 bf16 subnormals (+ tiny normals)
//  3 one huge outlier in small values  4 e4m3 ties at scale 2^k         5 e2m1 ties at scale 2^k
//  6.. random normals × 2^e, e per 32-element sub-segment in [-60, 60] (kinds 6-11) or [-120, 120] (12-15)
std::vector<float> edge_activations(std::int64_t rows, std::int64_t cols, std::uint64_t seed);

// edge_activations with every value of magnitude ≥ threshold multiplied by factor (then rounded to
// bf16): outliers kept, but small enough that the op's products, squares and sums stay finite.
std::vector<float> edge_activations_tamed(std::int64_t rows, std::int64_t cols, std::uint64_t seed, double threshold,
                                          double factor);

// rows × cols values, row r all ±0 (r even) or all ±value (r odd), each element's sign from the
// counter-based RNG (seed, stream): rows of all zeros and of one value repeated up to sign.
std::vector<float> constant_rows(std::int64_t rows, std::int64_t cols, float value, std::uint64_t seed,
                                 const char* stream);

// n × k linear weight values N(0, 0.1²) (bf16-rounded when bf16) with edges by row r mod 6: 1 a zero
// 32-column block (signed zeros), 2 every third entry subnormal, 3 one outlier ±2^30 (column r mod
// k), 4 every entry nonnegative, 5 all zeros. Random streams `stream`.weight and `stream`.weight.edges.
std::vector<float> edge_weight(std::int64_t n, std::int64_t k, std::uint64_t seed, bool bf16, const char* stream);

// Rounding boundaries of a dense linear's C1 sums, x [rows, k] and weight [n, k] (k ≥ 4): row m ≥ 1
// of x has 2^e_m at columns 0..3 (signed zeros elsewhere), row 0 all −0; weight row n has v0, half an
// ulp h of v0 in the output format (bf16 or fp32: v0 + h is a tie), a term t = 0 or ±h·2^-j settling
// it and 0 or −v0 (cancellation) at columns 0..3, N(0, 1) elsewhere; weight row 0 nonnegative (the
// all −0 products of output (0, 0) sum to +0). Random streams `stream`.ties and `stream`.ties.weight.
std::pair<std::vector<float>, std::vector<float>> tie_values(std::int64_t rows, std::int64_t n, std::int64_t k,
                                                             std::uint64_t seed, bool bf16, const char* stream);

// fp8 weight codes [n, k] (k a multiple of 128): uniform over the 254 finite e4m3 codes (±0,
// subnormals, ±448), with by row r mod 4: 1 one zero 128-column block (codes 0x00 / 0x80), 2
// subnormal codes only, 3 the largest binade only (±256..±448).
std::vector<std::uint8_t> edge_fp8_codes(std::int64_t n, std::int64_t k, std::uint64_t seed);

// fp4 weight codes [n, k/2] packed (element 2j in the low nibble; k a multiple of 32): uniform
// nibbles (code 8 is −0), with by row r mod 4: 1 one zero 32-column block, 2 only ±0.5 and ±0, 3
// only ±6.
std::vector<std::uint8_t> edge_fp4_codes(std::int64_t n, std::int64_t k, std::uint64_t seed);

// Row lengths of the model (7168 = hidden, 448 = KV nope dims, 512 = KV dims, 128 = indexer head,
// 4096, 1536) and odd ones; row counts from 1 to 1000.
struct Shape {
  std::int64_t rows, cols;
};
const std::vector<Shape>& quant_shapes();

std::string shape_label(const Shape& s);

}  // namespace dsv4::ops
