// Backward of the grouped output projection of attention (forward spec 02 §2.10 step 2, exact
// mode; backward spec 06 §6.12). Group g of the attention output, o_g = columns g·P..(g+1)·P − 1
// of o (P = H·c/G), is projected by its own block W_{a,g} = rows g·d_g..(g+1)·d_g − 1 of wo_a:
// y_g = o_g W_{a,g}ᵀ. The groups share nothing, so the backward is linear_backward per group:
//   do_g = dy_g W_{a,g};  dW_{a,g} = dy_gᵀ o_g  (the sum over rows in ascending order),
// with dy_g = columns g·d_g..(g+1)·d_g − 1 of dy. wo_a is a bf16 weight (no quantiser; spec 02
// §2.10), so no straight-through estimator is involved.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/train/linear_backward.hpp"

namespace dsv4 {

// The exact-mode forward in any scalar (the gradient check's Mp50 evaluation; the reference's
// grouped_output_projection runs its groups through the double linear): o [rows, G·P], wo_a
// [G·d_g, P], row-major → y [rows, G·d_g], each group linear_exact's sums.
template <class T>
std::vector<T> grouped_output_projection_exact(const std::vector<T>& o, std::int64_t rows, std::int64_t groups,
                                               const std::vector<T>& wo_a, std::int64_t dg) {
  const std::int64_t width = static_cast<std::int64_t>(o.size()) / rows, per_group = width / groups;
  std::vector<T> y(static_cast<std::size_t>(rows * groups * dg));
  for (std::int64_t g = 0; g < groups; ++g) {
    std::vector<T> og(static_cast<std::size_t>(rows * per_group));
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t i = 0; i < per_group; ++i)
        og[static_cast<std::size_t>(r * per_group + i)] = o[static_cast<std::size_t>(r * width + g * per_group + i)];
    }
    const std::vector<T> wg(wo_a.begin() + g * dg * per_group, wo_a.begin() + (g + 1) * dg * per_group);
    const std::vector<T> yg = linear_exact(og, rows, per_group, wg, dg);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < dg; ++j)
        y[static_cast<std::size_t>(r * groups * dg + g * dg + j)] = yg[static_cast<std::size_t>(r * dg + j)];
    }
  }
  return y;
}

struct GroupedProjectionGrads {
  Mat d_o;    // [rows, G·P]
  Mat dwo_a;  // [G·d_g, P]
};
// Exact mode (double; linear_backward per group). o [rows, G·P], wo_a [G·d_g, P], dy [rows, G·d_g].
// std::invalid_argument on a shape mismatch.
GroupedProjectionGrads grouped_output_projection_backward(const Mat& o, const Mat& wo_a, std::int64_t groups,
                                                          const Mat& dy);

}  // namespace dsv4
