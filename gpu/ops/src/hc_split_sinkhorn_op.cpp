// Registration of hc_split_sinkhorn (spec 04 §4.3): per token, the mHC gates pre and post and the
// Sinkhorn-normalised comb matrix from the token's RMS-scaled mixes.
#include <algorithm>
#include <cmath>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/mhc.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/hc_split_sinkhorn_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n = hc_mult, iters}, reals {eps}; inputs mixes [tokens, (2+n)n] (per row), scale [1, 3]
// and base [1, (2+n)n] (shared) → pre [tokens, n], post [tokens, n], comb [tokens, n·n].
struct SinkhornArgs {
  const Array& mixes;
  const Array& scale;
  const Array& base;
  int n, iters;
  double eps;
  explicit SinkhornArgs(const Call& c)
      : mixes(c.inputs.at(0)),
        scale(c.inputs.at(1)),
        base(c.inputs.at(2)),
        n(static_cast<int>(c.ints.at(0))),
        iters(static_cast<int>(c.ints.at(1))),
        eps(c.reals.at(0)) {}
  Outputs outputs(std::vector<float> pre, std::vector<float> post, std::vector<float> comb) const {
    return {Array::floats("pre", mixes.rows, n, std::move(pre)), Array::floats("post", mixes.rows, n, std::move(post)),
            Array::floats("comb", mixes.rows, std::int64_t{n} * n, std::move(comb))};
  }
};

Outputs reference(const Call& c) {
  const SinkhornArgs a(c);
  const SinkhornRows r = hc_split_sinkhorn_rows(Precision(Mode::kOfficial), a.mixes.f32.data(), a.mixes.rows, a.n,
                                                a.scale.f32.data(), a.base.f32.data(), a.iters, a.eps);
  return a.outputs(to_floats(r.pre), to_floats(r.post), to_floats(r.comb));
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const SinkhornArgs a(c);
  gpu::SinkhornBatch r = gpu::hc_split_sinkhorn(a.mixes.f32.data(), a.mixes.rows, a.n, a.scale.f32.data(),
                                                a.base.f32.data(), a.iters, a.eps);
  return a.outputs(std::move(r.pre), std::move(r.post), std::move(r.comb));
}
#endif

// How a case draws its mixes μ (fp32).
enum class Mixes { kNormal, kTies, kSubnormal, kZeroScale };

// One case: n streams, iters iterations, `tokens` tokens; the synthetic mHC weights of hc_mult n
// with α_res = fl32(0.7) (not a power of two, so the fused affine map differs from mul + add on
// many inputs) and μ ~ (spread/0.7)·N(0, 1) — comb logits spread like spread·N(0, 1) — or an edge.
Case sinkhorn_case(int n, int iters, double eps, std::int64_t tokens, double spread, Mixes kind, std::uint64_t seed,
                   const std::string& what) {
  ModelConfig cfg = builtin_config("tiny");
  cfg.hc_mult = n;
  cfg.dim = 8;
  const HcWeights w = HcWeights::synthetic(cfg, seed);
  const std::int64_t m = std::int64_t{2 + n} * n;
  std::vector<float> base(static_cast<std::size_t>(m)),
      scale = {static_cast<float>(w.scale(0)), static_cast<float>(w.scale(1)), 0.7f};
  for (std::int64_t i = 0; i < m; ++i) base[static_cast<std::size_t>(i)] = static_cast<float>(w.base(i));
  const CounterRng rng(seed, stream_id("ops.hc_split_sinkhorn.mixes"));
  std::vector<float> mixes(static_cast<std::size_t>(tokens * m));
  for (std::size_t i = 0; i < mixes.size(); ++i) {
    const double z = rng.normal(i);
    switch (kind) {
      case Mixes::kNormal:
      case Mixes::kZeroScale:
        mixes[i] = static_cast<float>(spread / 0.7 * z);
        break;
      case Mixes::kTies:  // three values only: many equal logits, rows of equal entries
        mixes[i] = static_cast<float>(z < -0.5 ? -0.5 : (z < 0.5 ? 0.0 : 0.5));
        break;
      case Mixes::kSubnormal:  // fp32 subnormals and signed zeros: the logits are the biases
        mixes[i] = static_cast<float>(z < 0 ? -0.0 : std::ldexp(std::fabs(z), -130));
        break;
    }
  }
  if (kind == Mixes::kTies) std::fill(base.begin(), base.end(), 0.0f);
  if (kind == Mixes::kZeroScale) scale = {0.0f, 0.0f, 0.0f};
  Case c;
  c.label = "n " + std::to_string(n) + ", " + std::to_string(iters) + " iters, " + std::to_string(tokens) +
            " tokens, " + what;
  c.call.ints = {n, iters};
  c.call.reals = {eps};
  c.call.inputs = {Array::floats("mixes", tokens, m, std::move(mixes)), Array::shared("scale", std::move(scale)),
                   Array::shared("base", std::move(base))};
  return c;
}

std::vector<Case> sinkhorn_cases(std::uint64_t seed) {
  std::vector<Case> cases;
  static constexpr double kSpreads[] = {0.5, 1.0, 3.0};
  for (int n = 1; n <= 8; ++n) {
    for (const int iters : {1, 5, 20, 40}) {
      const double spread = kSpreads[(n + iters) % 3];
      cases.push_back(sinkhorn_case(n, iters, 1e-6, 100, spread, Mixes::kNormal, seed * 100 + n * 10 + iters % 7,
                                    "spread " + std::to_string(spread).substr(0, 3)));
    }
  }
  // The tiny config (n 4, 20 iterations, eps 1e-6) on a long batch, and the edges.
  cases.push_back(sinkhorn_case(4, 20, 1e-6, 2000, 1.5, Mixes::kNormal, seed * 100 + 1, "spread 1.5"));
  cases.push_back(sinkhorn_case(4, 20, 1e-6, 64, 30.0, Mixes::kNormal, seed * 100 + 2, "spread 30 (exp underflow)"));
  cases.push_back(sinkhorn_case(4, 20, 1e-3, 64, 0.0, Mixes::kTies, seed * 100 + 3, "ties, eps 1e-3"));
  cases.push_back(sinkhorn_case(8, 20, 1e-6, 64, 0.0, Mixes::kSubnormal, seed * 100 + 4, "subnormal mixes"));
  cases.push_back(sinkhorn_case(4, 20, 0.0, 64, 1.0, Mixes::kZeroScale, seed * 100 + 5, "zero scales, eps 0"));
  return cases;
}

// The backward (spec 04 §4.8, spec 06 §6.12, ref/train hc_split_sinkhorn_backward): dmixes,
// dscale, dbase through the sigmoids and every Sinkhorn iteration. Smooth everywhere (ε > 0 keeps
// every denominator positive; the softmax's row maximum shifts nothing).
GradientForms hc_split_sinkhorn_gradient() {
  GradientForms g;
  g.outputs = {"pre", "post", "comb"};
  g.wrt = {0, 1, 2};
  g.forward_exact = [](const Call& c) {
    const SinkhornArgs a(c);
    const SinkhornRows r = hc_split_sinkhorn_rows(Precision(Mode::kExact), a.mixes.f32.data(), a.mixes.rows, a.n,
                                                  a.scale.f32.data(), a.base.f32.data(), a.iters, a.eps);
    return Doubles{flat(r.pre), flat(r.post), flat(r.comb)};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const SinkhornArgs a(c);
    const std::int64_t n = a.n, m = (2 + n) * n, tokens = a.mixes.rows;
    Mp50s y = {std::vector<Mp50>(static_cast<std::size_t>(tokens * n)),
               std::vector<Mp50>(static_cast<std::size_t>(tokens * n)),
               std::vector<Mp50>(static_cast<std::size_t>(tokens * n * n))};
    for (std::int64_t t = 0; t < tokens; ++t) {
      hc_split_sinkhorn_exact(x.at(0).data() + t * m, n, x.at(1).data(), x.at(2).data(), a.iters, a.eps,
                              y[0].data() + t * n, y[1].data() + t * n, y[2].data() + t * n * n);
    }
    return y;
  };
  g.backward = [](const Call& c) {
    const SinkhornArgs a(c);
    const HcSplitSinkhornGrads r =
        hc_split_sinkhorn_backward(to_mat(a.mixes), a.n, to_vec(a.scale), to_vec(a.base), a.iters, a.eps,
                                   to_mat(c.inputs.at(3)), to_mat(c.inputs.at(4)), to_mat(c.inputs.at(5)));
    return Doubles{flat(r.dmixes), flat(r.dscale), flat(r.dbase)};
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      int n, iters;
      double eps;
      std::int64_t tokens;
      double spread;
    };
    const std::vector<Spec> specs = {
        {4, 20, 1e-6, 2, 1.0}, {2, 3, 1e-3, 3, 0.5}, {3, 1, 1e-6, 2, 1.0}, {1, 5, 1e-6, 2, 1.0}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      Case c = sinkhorn_case(s.n, s.iters, s.eps, s.tokens, s.spread, Mixes::kNormal, seed * 100 + 50 + k,
                             "spread " + std::to_string(s.spread).substr(0, 3) + " (smooth)");
      const std::int64_t n = s.n;
      c.call.inputs.push_back(upstream("dpre", s.tokens, n, seed * 100 + k, "grad.sinkhorn.dpre"));
      c.call.inputs.push_back(upstream("dpost", s.tokens, n, seed * 100 + k, "grad.sinkhorn.dpost"));
      c.call.inputs.push_back(upstream("dcomb", s.tokens, n * n, seed * 100 + k, "grad.sinkhorn.dcomb"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op hc_split_sinkhorn_op() {
  return registration("hc_split_sinkhorn", "spec 04 §4.3", "mHC pre/post gates and Sinkhorn-normalised comb per token",
                      {"hc_mult", "iters"}, {"eps"}, reference, DSV4_OPS_DEVICE(device), sinkhorn_cases,
                      hc_split_sinkhorn_gradient());
}

}  // namespace dsv4::ops::detail
