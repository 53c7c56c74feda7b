// Host fallback of the hc_head kernel: the official-mode reference (hc_head_rows, the flat-array
// adapter of ref/model) for one token.
#include "hc_head_reference.hpp"

#include <algorithm>
#include <vector>

#include "dsv4/model/mhc.hpp"

namespace dsv4::gpu::detail {

void hc_head_reference(const float* x, std::int64_t n, std::int64_t d, const float* fn, const float* base, float scale,
                       double hc_eps, double norm_eps, float* y) {
  const std::vector<float> r = hc_head_rows(Precision(Mode::kOfficial), x, 1, n, d, fn, base, scale, hc_eps, norm_eps);
  std::copy(r.begin(), r.end(), y);
}

}  // namespace dsv4::gpu::detail
