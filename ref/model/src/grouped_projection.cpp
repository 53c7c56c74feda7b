// spec 02 §2.10 step 2 (official code Attention.forward, the wo_a einsum).
#include "dsv4/model/grouped_projection.hpp"

#include <stdexcept>
#include <string>

namespace dsv4 {

Mat grouped_output_projection(const Precision& p, const Mat& o, std::span<const LinearWeight> groups) {
  const auto G = static_cast<std::int64_t>(groups.size());
  if (G < 1) throw std::invalid_argument("grouped_output_projection: no groups");
  const std::int64_t per_group = groups[0].in_features(), dg = groups[0].out_features();
  for (const LinearWeight& w : groups) {
    if (w.in_features() != per_group || w.out_features() != dg) {
      throw std::invalid_argument("grouped_output_projection: the groups' weights differ in shape");
    }
  }
  if (o.cols() != G * per_group) {
    throw std::invalid_argument("grouped_output_projection: o has " + std::to_string(o.cols()) + " columns, expected " +
                                std::to_string(G) + " groups × " + std::to_string(per_group));
  }
  Mat y(o.rows(), G * dg);
  for (std::int64_t g = 0; g < G; ++g) {
    const Mat og = o.middleCols(g * per_group, per_group);
    y.middleCols(g * dg, dg) = linear(p, og, groups[static_cast<std::size_t>(g)], ScaleFormat::kUE8M0);
  }
  return y;
}

}  // namespace dsv4
