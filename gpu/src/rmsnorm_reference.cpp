// Host fallback of the RMSNorm kernel: the official-mode reference (rmsnorm_rows, the flat-array
// adapter of ref/model) for one row.
#include "rmsnorm_reference.hpp"

#include <algorithm>
#include <vector>

#include "dsv4/model/rmsnorm.hpp"

namespace dsv4::gpu::detail {

void rmsnorm_reference(const float* x, std::int64_t dim, const float* weight, double eps, float* y) {
  const std::vector<float> r = rmsnorm_rows(Precision(Mode::kOfficial), x, 1, dim, weight, eps);
  std::copy(r.begin(), r.end(), y);
}

}  // namespace dsv4::gpu::detail
