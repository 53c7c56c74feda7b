// Host fallback of the mHC kernel: the official-mode reference for one token.
#include "mhc_reference.hpp"

#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/mhc.hpp"

namespace dsv4::gpu::detail {

void hc_split_sinkhorn_reference(const float* mixes, int n, const float* scale, const float* base, int iters,
                                 double eps, float* pre, float* post, float* comb) {
  ModelConfig c;
  c.hc_mult = n;
  c.hc_sinkhorn_iters = iters;
  c.hc_eps = eps;
  const int mix_count = (2 + n) * n;
  HcWeights w;
  w.base.resize(mix_count);
  w.scale.resize(3);
  std::vector<double> mu(static_cast<std::size_t>(mix_count));
  for (int i = 0; i < mix_count; ++i) {
    w.base(i) = base[i];
    mu[static_cast<std::size_t>(i)] = mixes[i];
  }
  for (int g = 0; g < 3; ++g) w.scale(g) = scale[g];
  const SinkhornResult r = hc_split_sinkhorn(Precision(Mode::kOfficial), c, mu.data(), w);
  for (int j = 0; j < n; ++j) {
    pre[j] = static_cast<float>(r.pre(j));
    post[j] = static_cast<float>(r.post(j));
    for (int k = 0; k < n; ++k) comb[j * n + k] = static_cast<float>(r.comb(j, k));
  }
}

}  // namespace dsv4::gpu::detail
