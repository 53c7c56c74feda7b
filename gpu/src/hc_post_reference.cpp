// Host fallback of the hc_post kernel: the official-mode reference (hc_post_rows, the flat-array
// adapter of ref/model) for one token.
#include "hc_post_reference.hpp"

#include <algorithm>
#include <vector>

#include "dsv4/model/mhc.hpp"

namespace dsv4::gpu::detail {

void hc_post_reference(const float* f, const float* residual, const float* post, const float* comb, std::int64_t n,
                       std::int64_t d, float* y) {
  const std::vector<float> r = hc_post_rows(Precision(Mode::kOfficial), f, residual, post, comb, 1, n, d);
  std::copy(r.begin(), r.end(), y);
}

}  // namespace dsv4::gpu::detail
