// Host fallback of the head kernels: the official-mode reference (head_rows, the flat-array adapter
// of ref/model) for one row.
#include "head_reference.hpp"

#include <algorithm>

#include "dsv4/model/head.hpp"

namespace dsv4::gpu::detail {

void head_reference(const float* x, std::int64_t n, std::int64_t d, const float* hc_fn, const float* hc_base,
                    float hc_scale, const float* norm, const float* head, std::int64_t vocab, double hc_eps,
                    double norm_eps, float* hc_head, float* norm_out, float* logits) {
  const HeadRows r =
      head_rows(Precision(Mode::kOfficial), x, 1, n, d, hc_fn, hc_base, hc_scale, norm, head, vocab, hc_eps, norm_eps);
  std::copy(r.hc_head.begin(), r.hc_head.end(), hc_head);
  std::copy(r.norm.begin(), r.norm.end(), norm_out);
  std::copy(r.logits.begin(), r.logits.end(), logits);
}

}  // namespace dsv4::gpu::detail
