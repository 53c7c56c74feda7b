// The grouped output projection of attention (spec 02 §2.10 step 2; official code
// Attention.forward, the wo_a einsum): the attention output o [s, H·c] viewed as G groups of H/G
// heads (group g = heads g·H/G..(g+1)·H/G − 1, concatenated in head order), each projected by its
// own block of rows of wo_a.
#pragma once

#include <span>

#include "dsv4/model/linear.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// spec 02 §2.10 step 2: y_g = W_{a,g} o_g for g = 0..G − 1 (G = groups.size(); W_{a,g} = rows
// g·d_g..(g+1)·d_g − 1 of wo_a, one bf16 LinearWeight each), output [s, G·d_g] group-major.
// Official mode: the bf16 einsum (C1 fp32 accumulation, bf16 result) per group; exact mode: double.
// Throws std::invalid_argument when o's width is not G × the groups' common input width.
Mat grouped_output_projection(const Precision& p, const Mat& o, std::span<const LinearWeight> groups);

}  // namespace dsv4
