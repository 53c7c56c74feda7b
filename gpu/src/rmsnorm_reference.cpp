// Host fallback of the RMSNorm kernels: the official-mode reference (rmsnorm_rows, the flat-array
// adapter of ref/model) for one row; head_rmsnorm_inplace for one head segment.
#include "rmsnorm_reference.hpp"

#include <algorithm>
#include <vector>

#include "dsv4/model/rmsnorm.hpp"

namespace dsv4::gpu::detail {

void rmsnorm_reference(const float* x, std::int64_t dim, const float* weight, double eps, float* y) {
  const std::vector<float> r = rmsnorm_rows(Precision(Mode::kOfficial), x, 1, dim, weight, eps);
  std::copy(r.begin(), r.end(), y);
}

void head_rmsnorm_reference(const float* x, std::int64_t head_dim, double eps, float* y) {
  Mat q(1, head_dim);
  for (std::int64_t i = 0; i < head_dim; ++i) q(0, i) = x[i];
  head_rmsnorm_inplace(Precision(Mode::kOfficial), q, head_dim, eps);
  for (std::int64_t i = 0; i < head_dim; ++i) y[i] = static_cast<float>(q(0, i));
}

}  // namespace dsv4::gpu::detail
