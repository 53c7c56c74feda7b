// Expert weights among an op's inputs (private to gpu/ops: expert_op.cpp, moe_combine_op.cpp): every
// expert weight in its storage form by kind, as the official Linear holds it (spec 01 §1.6) —
//   bf16: one float array [B·N, K] (bf16 values; LinearWeight::bf16_from rounds others);
//   fp8:  codes [B·N, K] e4m3 bytes, then "<name>_scale" [B·⌈N/128⌉, K/128] e8m0 bytes (128×128 tiles);
//   fp4:  packed codes [B·N, K/2] e2m1 bytes (element 2j in the low nibble), then "<name>_scale"
//         [B·N, K/32] e8m0 bytes (1×32 blocks)
// — B blocks of [N, K] stacked (an MoE's routed experts: expert e is block e, its scales after
// expert e − 1's), every array shared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/linear.hpp"
#include "dsv4/model/expert_config.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/ops/op.hpp"

namespace dsv4::ops::detail {

// An op's weight-kind parameter: 0 bf16, 2 fp8, 3 fp4 (dsv4::WeightKind; an expert weight is never
// fp32). Throws std::invalid_argument naming the op otherwise.
WeightKind expert_weight_kind(std::int64_t code, const char* op);

struct WeightInput {
  WeightKind kind = WeightKind::kBF16;
  std::int64_t blocks = 1, n = 0, k = 0;
  const Array* data = nullptr;   // bf16 values or codes
  const Array* scale = nullptr;  // fp8 / fp4 scales
  // Block b as the reference holds it.
  LinearWeight block(std::int64_t b) const;
  // The kernel's view (gpu/linear.hpp) of one block's shape over the stacked host storage; a bf16
  // weight's values rounded to bf16 into `bf16` (which must outlive the view).
  gpu::LinearWeightView view(std::vector<float>& bf16) const;
};

// The weight at c.inputs[at] (and at + 1 for fp8 / fp4), advancing at past it. Throws
// std::invalid_argument naming the op and the array on a missing array, a dtype or shape mismatch, a
// per-row array, or K not a multiple of 128 for fp8 / fp4.
WeightInput read_weight(const Call& c, std::size_t& at, WeightKind kind, std::int64_t blocks, std::int64_t n,
                        std::int64_t k, const char* op);

enum class WeightValues {
  kNormals,  // the model's synthetic weights (synthetic_fp8_weight / synthetic_fp4_weight: N(0, σ²) quantised)
  kEdges,    // edge_fp8_codes / edge_fp4_codes with scales 2^-127, 2^-126..2^-119, 2^-10..2^-5 and 2^4
};

// The arrays of an fp8 or fp4 weight named `name` of `blocks` stacked [n, k] blocks (shared).
std::vector<Array> quantised_weight_arrays(WeightKind kind, const std::string& name, std::int64_t blocks,
                                           std::int64_t n, std::int64_t k, double sigma, WeightValues values,
                                           std::uint64_t seed);

}  // namespace dsv4::ops::detail
