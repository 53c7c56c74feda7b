// Host fallback of the hc_pre kernels: the official-mode reference (hc_pre_rows, the flat-array
// adapter of ref/model) for one token.
#include "hc_pre_reference.hpp"

#include "dsv4/model/mhc.hpp"

namespace dsv4::gpu::detail {

namespace {
void copy_row(const Mat& m, float* out) {
  for (Eigen::Index i = 0; i < m.size(); ++i) out[i] = static_cast<float>(m.data()[i]);
}
}  // namespace

void hc_pre_reference(const float* x, std::int64_t n, std::int64_t d, const float* fn, const float* base,
                      const float* scale, int iters, double hc_eps, double norm_eps, float* y, float* post, float* comb,
                      float* mixes) {
  const HcPreOutput r = hc_pre_rows(Precision(Mode::kOfficial), x, 1, n, d, fn, base, scale, iters, hc_eps, norm_eps);
  copy_row(r.y, y);
  copy_row(r.post, post);
  copy_row(r.comb, comb);
  copy_row(r.mixes, mixes);
}

}  // namespace dsv4::gpu::detail
