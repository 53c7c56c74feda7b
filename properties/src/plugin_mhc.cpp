// Plugin fuzzer of hc_split_sinkhorn (spec 04 §4.3) against the reference in exact and official
// mode, under the FlashAttention-style rule of plugin_detail.hpp per output (pre, post, comb) with
// k = 2 and a floor from a first-order error model of a generic fp32 kernel (README §Foreign
// kernels).
//
// Why a model floor: the outputs are fp32 and the official mode evaluates them with exact sums
// (C1) and correctly rounded exp/sigmoid (C2), so its error is ~1 ulp — far below what a correct
// fp32 kernel with sequential sums and libm gets after 40 normalisations (the example plugin:
// ~8 ulp). The model, u = 2^−24, every fp32 operation rounding once (relative u), a sum of n
// positive terms in any order (n − 1)u, exp / sigmoid / division by libm within 2 ulp (4u), FMA or
// not in the affine maps:
//   logit a = μα + b: absolute error ≤ 2u·(|μα| + |b|) (product and sum rounded);
//   pre, post: σ'(a)/σ(a) ≤ 1, so relative error ≤ 2u(|μα| + |b|) + 6u (σ as 1/(1 + exp(−a)):
//     exp 4u, the add and the division u each) + u (+ eps; ×2 is exact);
//   comb, step 4: A − max carries two logit errors and its own rounding, ≤ 6uL absolute with
//     L = max over the token's comb logits of |μα| + |b|; exp adds 4u relative, the row sum
//     (n − 1)u, + eps u, the division u: ε₀ = (6L + n + 5)u;
//   every later row / column normalisation adds (n + 1)u (sum, + eps, division); 2·iters − 1 of them.
// A normalisation subtracts from the entries' relative errors their weighted row (column) mean, so
// to first order carried errors are not amplified: |comb error| ≤ (ε₀ + (2·iters − 1)(n + 1)u)·comb.
// That is an a-priori bound (a few tens of times the observed errors), not fitted to a plugin.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dsv4/model/mhc.hpp"
#include "dsv4/properties/generators.hpp"
#include "plugin_detail.hpp"

namespace dsv4::props::plugin_detail {

rc::detail::Property hc_split_sinkhorn_property(Plugin& host) {
  return rc::detail::toProperty([plugin = &host] {
    const std::int64_t tokens = *rc::gen::inRange(1, 4);
    const int n = *rc::gen::weightedOneOf<int>({{3, rc::gen::just(4)}, {1, rc::gen::inRange(1, 9)}});
    const int iters = *rc::gen::weightedOneOf<int>({{3, rc::gen::just(20)}, {1, rc::gen::inRange(1, 31)}});
    const float eps = *rc::gen::element(1e-6f, 1e-4f, 1e-3f);
    const std::int64_t mixes = static_cast<std::int64_t>(2 + n) * n;
    // μ: fp32 in [−4, 4] (RMS-scaled mixes are ~N(0, 1)); base in [−2, 2]; scales in (0, 1]:
    // comb logits spread over a few units, gates across the sigmoid's range.
    const std::vector<float> mu = gen_fixed_point(tokens * mixes, 20, 18);
    const std::vector<float> base = gen_fixed_point(mixes, 20, 19);
    std::vector<float> scale = gen_fixed_point(3, 12, 12);
    for (float& s : scale) s = s == 0.0f ? 0x1p-12f : std::fabs(s);

    std::vector<float> pre(static_cast<std::size_t>(tokens * n)), post(pre.size()),
        comb(static_cast<std::size_t>(tokens * n * n));
    const int rc = plugin->hc_split_sinkhorn(mu.data(), tokens, n, base.data(), scale.data(), iters, eps, pre.data(),
                                             post.data(), comb.data());
    if (rc != 0) RC_FAIL("hc_split_sinkhorn: plugin returned " + std::to_string(rc));

    const SinkhornRows o =
        hc_split_sinkhorn_rows(Precision(Mode::kOfficial), mu.data(), tokens, n, scale.data(), base.data(), iters, eps);
    const SinkhornRows e =
        hc_split_sinkhorn_rows(Precision(Mode::kExact), mu.data(), tokens, n, scale.data(), base.data(), iters, eps);
    // Per element: the first-order relative bound of the header comment (token-wise).
    constexpr double u = 0x1p-24;
    auto gate_bound = [&](std::int64_t tk, int j, int group) {
      const double mu_j = mu[static_cast<std::size_t>(tk * mixes + group * n + j)];
      const double a = std::fabs(mu_j * scale[static_cast<std::size_t>(group)]) +
                       std::fabs(static_cast<double>(base[static_cast<std::size_t>(group * n + j)]));
      return (2.0 * a + 7.0) * u;
    };
    auto comb_bound = [&](std::int64_t tk) {
      double L = 0.0;
      for (int j = 0; j < n * n; ++j) {
        L = std::max(L,
                     std::fabs(static_cast<double>(mu[static_cast<std::size_t>(tk * mixes + 2 * n + j)]) * scale[2]) +
                         std::fabs(static_cast<double>(base[static_cast<std::size_t>(2 * n + j)])));
      }
      return ((6.0 * L + n + 5.0) + (2.0 * iters - 1.0) * (n + 1.0)) * u;
    };
    auto check = [&](const char* what, const std::vector<float>& cand, const Mat& off, const Mat& ex, int group) {
      const bool matrix = group == 2;
      const std::int64_t per = matrix ? n * n : n;
      ToleranceRule rule;
      rule.k = 2.0;
      rule.floor = [&](std::int64_t i) {
        const double rel = matrix ? comb_bound(i / per) : gate_bound(i / per, static_cast<int>(i % per), group);
        return rel * std::fabs(ex.data()[i]) + ulp_fp32(ex.data()[i]);
      };
      rule.where = [&](std::int64_t i) {
        std::string s = "[token " + std::to_string(i / per) + ", ";
        if (matrix) return s + "row " + std::to_string(i % per / n) + ", column " + std::to_string(i % n) + "]";
        return s + "stream " + std::to_string(i % per) + "]";
      };
      const std::string v = fa_rule_violation(std::string("hc_split_sinkhorn ") + what, cand, off, ex, rule);
      if (!v.empty()) RC_FAIL(v);
    };
    check("pre", pre, o.pre, e.pre, 0);
    check("post", post, o.post, e.post, 1);
    check("comb", comb, o.comb, e.comb, 2);
  });
}

}  // namespace dsv4::props::plugin_detail
