// Backward of the grouped output projection (spec 02 §2.10 step 2; spec 06 §6.12).
#include "dsv4/train/grouped_projection_backward.hpp"

#include <stdexcept>
#include <string>

namespace dsv4 {

GroupedProjectionGrads grouped_output_projection_backward(const Mat& o, const Mat& wo_a, std::int64_t groups,
                                                          const Mat& dy) {
  if (groups < 1 || o.cols() % groups != 0 || wo_a.rows() % groups != 0 || wo_a.cols() != o.cols() / groups ||
      dy.rows() != o.rows() || dy.cols() != wo_a.rows()) {
    throw std::invalid_argument("grouped_output_projection_backward: o [" + std::to_string(o.rows()) + ", " +
                                std::to_string(o.cols()) + "], wo_a [" + std::to_string(wo_a.rows()) + ", " +
                                std::to_string(wo_a.cols()) + "], dy [" + std::to_string(dy.rows()) + ", " +
                                std::to_string(dy.cols()) + "] do not match " + std::to_string(groups) + " groups");
  }
  const std::int64_t per_group = o.cols() / groups, dg = wo_a.rows() / groups;
  GroupedProjectionGrads r{Mat(o.rows(), o.cols()), Mat(wo_a.rows(), wo_a.cols())};
  for (std::int64_t g = 0; g < groups; ++g) {
    // group g: y_g = o_g W_{a,g}ᵀ → do_g = dy_g W_{a,g}, dW_{a,g} = dy_gᵀ o_g
    const LinearGrads lg =
        linear_backward(o.middleCols(g * per_group, per_group), wo_a.middleRows(g * dg, dg), dy.middleCols(g * dg, dg));
    r.d_o.middleCols(g * per_group, per_group) = lg.dx;
    r.dwo_a.middleRows(g * dg, dg) = lg.dweight;
  }
  return r;
}

}  // namespace dsv4
