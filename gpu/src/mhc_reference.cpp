// Host fallback of the mHC kernel: the official-mode reference (hc_split_sinkhorn_rows, the one
// flat-array adapter of ref/model) for one token, rounded to the kernel's fp32 outputs (exact:
// every official-mode value is an fp32 number).
#include "mhc_reference.hpp"

#include "dsv4/model/mhc.hpp"

namespace dsv4::gpu::detail {

void hc_split_sinkhorn_reference(const float* mixes, int n, const float* scale, const float* base, int iters,
                                 double eps, float* pre, float* post, float* comb) {
  const SinkhornRows r = hc_split_sinkhorn_rows(Precision(Mode::kOfficial), mixes, 1, n, scale, base, iters, eps);
  for (int j = 0; j < n; ++j) {
    pre[j] = static_cast<float>(r.pre(0, j));
    post[j] = static_cast<float>(r.post(0, j));
  }
  for (int i = 0; i < n * n; ++i) comb[i] = static_cast<float>(r.comb(0, i));
}

}  // namespace dsv4::gpu::detail
