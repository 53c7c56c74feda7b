// The config of a standalone expert or MoE of given shapes (spec 03 §3.2): what the op registry's
// expert ops (gpu/ops: expert_op, moe_combine_op) and the GPU kernels' host fallback
// (gpu/src/moe_reference.cpp) run the reference's expert_forward and Moe with.
#pragma once

#include <cstdint>

#include "dsv4/config/model_config.hpp"
#include "dsv4/numerics/quant_blocks.hpp"

namespace dsv4 {

// The tiny built-in config with dim d, moe_inter_dim de, swiglu_limit and the activation scale
// format (scale_fmt "ue8m0" or "" for fp32 scales) replaced; the weights' kinds are their own, and
// what else an MoE needs (its expert counts) the caller sets.
ModelConfig expert_config(std::int64_t d, std::int64_t de, double swiglu_limit, ScaleFormat act_scales);

}  // namespace dsv4
