// The CPU reference for the elements the linear kernels leave undecided (private header of gpu/src;
// implemented in linear_reference.cpp, compiled by the host compiler: it includes Eigen).
#pragma once

#include <cstdint>

#include "dsv4/gpu/linear.hpp"

namespace dsv4::gpu::detail {

// Output element (m, n) of the official-mode linear (ref/model/src/linear.cpp `linear`) for the
// row x_row [K] of x: the reference on that row and weight row n alone (with its scale row), which
// is the element of the whole product (every output depends on its row of x and of the weight only).
// w holds host pointers.
float linear_reference_element(const float* x_row, const LinearWeightView& w, std::int64_t n, ScaleFormat act_fmt);

}  // namespace dsv4::gpu::detail
