// Registration of hc_pre (spec 04 §4.2): per token, the RMS-scaled mixes μ of the flattened state,
// the Sinkhorn split into pre, post, comb, and the layer input y = bf16(C1 Σ_k fl(pre_k · X_k)).
#include <cmath>
#include <string>
#include <utility>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/hc_pre.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/hc_pre_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n = hc_mult, iters}, reals {hc_eps, norm_eps}; inputs x [tokens, n·d] (per row, bf16
// values), fn [1, (2+n)n·n·d], base [1, (2+n)n], scale [1, 3] (shared, fp32 values) → y [tokens, d]
// (bf16), post [tokens, n], comb [tokens, n·n], mixes [tokens, (2+n)n].
struct HcPreArgs {
  const Array& x;
  const Array& fn;
  const Array& base;
  const Array& scale;
  std::int64_t n, d, iters;
  double hc_eps, norm_eps;
  explicit HcPreArgs(const Call& c)
      : x(c.inputs.at(0)),
        fn(c.inputs.at(1)),
        base(c.inputs.at(2)),
        scale(c.inputs.at(3)),
        n(c.ints.at(0)),
        d(x.cols / n),
        iters(c.ints.at(1)),
        hc_eps(c.reals.at(0)),
        norm_eps(c.reals.at(1)) {}
  Outputs outputs(std::vector<float> y, std::vector<float> post, std::vector<float> comb,
                  std::vector<float> mixes) const {
    return {Array::floats("y", x.rows, d, std::move(y)), Array::floats("post", x.rows, n, std::move(post)),
            Array::floats("comb", x.rows, n * n, std::move(comb)),
            Array::floats("mixes", x.rows, (2 + n) * n, std::move(mixes))};
  }
};

Outputs reference(const Call& c) {
  const HcPreArgs a(c);
  const HcPreOutput r = hc_pre_rows(Precision(Mode::kOfficial), a.x.f32.data(), a.x.rows, a.n, a.d, a.fn.f32.data(),
                                    a.base.f32.data(), a.scale.f32.data(), a.iters, a.hc_eps, a.norm_eps);
  return a.outputs(to_floats(r.y), to_floats(r.post), to_floats(r.comb), to_floats(r.mixes));
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const HcPreArgs a(c);
  gpu::HcPreBatch r = gpu::hc_pre(a.x.f32.data(), a.x.rows, a.n, a.d, a.fn.f32.data(), a.base.f32.data(),
                                  a.scale.f32.data(), static_cast<int>(a.iters), a.hc_eps, a.norm_eps);
  return a.outputs(std::move(r.y), std::move(r.post), std::move(r.comb), std::move(r.mixes));
}
#endif

// The synthetic mHC weights of spec 04 (HcWeights::synthetic: fn ~ N(0, 1/(n·d)), log-uniform
// scales, N(0, 0.5²) / N(0, 1) biases) as flat fp32 arrays.
struct FlatHcWeights {
  std::vector<float> fn, base, scale;
};
FlatHcWeights synthetic_weights(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  ModelConfig c;
  c.hc_mult = n;
  c.dim = d;
  const HcWeights w = HcWeights::synthetic(c, seed);
  return {to_floats(w.fn), to_floats(w.base), to_floats(w.scale)};
}

Case make_case(std::string label, std::int64_t n, std::vector<float> x, std::int64_t tokens, FlatHcWeights w) {
  Case c;
  c.label = std::move(label);
  c.call.ints = {n, 20};
  c.call.reals = {1e-6, 1e-6};
  const std::int64_t width = static_cast<std::int64_t>(x.size()) / tokens;
  c.call.inputs = {Array::floats("x", tokens, width, std::move(x)), Array::shared("fn", std::move(w.fn)),
                   Array::shared("base", std::move(w.base)), Array::shared("scale", std::move(w.scale))};
  return c;
}

std::vector<Case> hc_pre_cases(std::uint64_t seed) {
  struct Spec {
    std::int64_t tokens, n, d;
  };
  // The model's widths (4096 Flash, 7168 V4, tiny-like 64) with hc_mult 4 and other stream counts
  // up to the Sinkhorn kernel's 8; edge activations (zero blocks, bf16 subnormals whose fp32 squares
  // underflow, outliers up to 2^40, wide ranges that make the double sums inexact).
  const std::vector<Spec> specs = {{8, 4, 4096}, {2, 4, 7168}, {300, 4, 64}, {17, 1, 96}, {9, 2, 100}, {5, 8, 33}};
  std::vector<Case> cases = cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    const std::uint64_t base = seed * 1000 + 500 + 10 * k;
    return make_case(
        std::to_string(s.tokens) + " tokens, n " + std::to_string(s.n) + ", d " + std::to_string(s.d) + ", activations",
        s.n, edge_activations_tamed(s.tokens, s.n * s.d, base, 0x1p40, 0x1p-90), s.tokens,
        synthetic_weights(s.n, s.d, base + 1));
  });
  {
    // Rows of all zeros (S = 0, r = rsqrt(eps), μ = ±0) and of one repeated value up to sign.
    const std::int64_t tokens = 6, n = 4, d = 128;
    std::vector<float> x = constant_rows(tokens, n * d, 0.75f, seed, "ops.hc_pre.signs");
    cases.push_back(make_case("6 tokens, n 4, d 128, constant rows (zero, ±0.75)", n, std::move(x), tokens,
                              synthetic_weights(n, d, seed * 1000 + 590)));
  }
  {
    // Dot products on fp32 rounding boundaries: fn[m] = e_0 + c_m·2^-24·e_{1+m} ± 2^-70·e_{40+m}
    // (or no third term: an exact tie, to even), x small integers, so Σ_i x_i fn[m, i] is x_0 plus
    // a multiple of half an fp32 ulp of it, decided by the 2^-70 term or by the tie rule.
    const std::int64_t tokens = 16, n = 4, d = 32, len = n * d, mixes = (2 + n) * n;
    const CounterRng rng(seed, stream_id("ops.hc_pre.boundary"));
    FlatHcWeights w = synthetic_weights(n, d, seed * 1000 + 591);
    std::fill(w.fn.begin(), w.fn.end(), 0.0f);
    for (std::int64_t m = 0; m < mixes; ++m) {
      const auto r = rng.words(static_cast<std::uint64_t>(m));
      float* row = &w.fn[static_cast<std::size_t>(m * len)];
      row[0] = 1.0f;
      row[1 + m] = static_cast<float>(std::ldexp(1.0 + static_cast<double>(r[0] % 3), -24));
      if (r[1] % 3 != 0) row[40 + m] = static_cast<float>(((r[1] & 4u) != 0 ? -1.0 : 1.0) * std::ldexp(1.0, -70));
    }
    std::vector<float> x(static_cast<std::size_t>(tokens * len));
    for (std::size_t i = 0; i < x.size(); ++i)
      x[i] = static_cast<float>(static_cast<int>(rng.words(1000 + i)[0] % 9) - 4);
    cases.push_back(make_case("16 tokens, n 4, d 32, dot products on fp32 rounding boundaries", n, std::move(x), tokens,
                              std::move(w)));
  }
  return cases;
}

// The backward (spec 04 §4.8, spec 06 §6.12, ref/train hc_pre_backward): dx, dfn, dbase, dscale
// through y, the gates, every Sinkhorn iteration and the RMS-scaled mixes. Smooth everywhere
// (ε_n > 0; ε > 0 keeps the Sinkhorn denominators positive).
GradientForms hc_pre_gradient() {
  GradientForms g;
  g.outputs = {"y", "post", "comb", "mixes"};
  g.wrt = {0, 1, 2, 3};
  g.forward_exact = [](const Call& c) {
    const HcPreArgs a(c);
    ModelConfig cfg;
    cfg.hc_mult = a.n;
    cfg.dim = a.d;
    cfg.hc_sinkhorn_iters = a.iters;
    cfg.hc_eps = a.hc_eps;
    cfg.norm_eps = a.norm_eps;
    const HcWeights w{to_mat(doubles(a.fn), (2 + a.n) * a.n, a.n * a.d), to_vec(a.base), to_vec(a.scale)};
    const HcPreOutput o = hc_pre(Precision(Mode::kExact), cfg, to_mat(a.x), w);
    return Doubles{flat(o.y), flat(o.post), flat(o.comb), flat(o.mixes)};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const HcPreArgs a(c);
    const std::int64_t n = a.n, d = a.d, count = (2 + n) * n, tokens = a.x.rows;
    Mp50s y = {std::vector<Mp50>(static_cast<std::size_t>(tokens * d)),
               std::vector<Mp50>(static_cast<std::size_t>(tokens * n)),
               std::vector<Mp50>(static_cast<std::size_t>(tokens * n * n)),
               std::vector<Mp50>(static_cast<std::size_t>(tokens * count))};
    for (std::int64_t t = 0; t < tokens; ++t) {
      hc_pre_exact(x.at(0).data() + t * n * d, n, d, x.at(1).data(), x.at(2).data(), x.at(3).data(), a.iters, a.hc_eps,
                   a.norm_eps, y[0].data() + t * d, y[1].data() + t * n, y[2].data() + t * n * n,
                   y[3].data() + t * count);
    }
    return y;
  };
  g.backward = [](const Call& c) {
    const HcPreArgs a(c);
    const HcPreGrads r =
        hc_pre_backward(to_mat(a.x), a.n, to_mat(doubles(a.fn), (2 + a.n) * a.n, a.n * a.d), to_vec(a.base),
                        to_vec(a.scale), a.iters, a.hc_eps, a.norm_eps, to_mat(c.inputs.at(4)), to_mat(c.inputs.at(5)),
                        to_mat(c.inputs.at(6)), to_mat(c.inputs.at(7)));
    return Doubles{flat(r.dx), flat(r.dfn), flat(r.dbase), flat(r.dscale)};
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      std::int64_t tokens, n, d, iters;
    };
    const std::vector<Spec> specs = {{2, 4, 3, 20}, {3, 2, 4, 3}, {2, 1, 5, 2}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      const std::uint64_t base = seed * 100 + k;
      Case c = make_case(std::to_string(s.tokens) + " tokens, n " + std::to_string(s.n) + ", d " + std::to_string(s.d) +
                             ", " + std::to_string(s.iters) + " iters (smooth)",
                         s.n, normals(s.tokens * s.n * s.d, 1.0, base, "grad.hc_pre.x"), s.tokens,
                         synthetic_weights(s.n, s.d, base));
      c.call.ints[1] = s.iters;
      const std::int64_t n = s.n, count = (2 + n) * n;
      c.call.inputs.push_back(upstream("dy", s.tokens, s.d, base, "grad.hc_pre.dy"));
      c.call.inputs.push_back(upstream("dpost", s.tokens, n, base, "grad.hc_pre.dpost"));
      c.call.inputs.push_back(upstream("dcomb", s.tokens, n * n, base, "grad.hc_pre.dcomb"));
      c.call.inputs.push_back(upstream("dmixes", s.tokens, count, base, "grad.hc_pre.dmixes"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op hc_pre_op() {
  return registration(
      "hc_pre", "spec 04 §4.2", "mHC pre: RMS-scaled mixes, Sinkhorn split, y = bf16(C1 Σ_k fl(pre_k·X_k)) per token",
      {"n", "iters"}, {"hc_eps", "norm_eps"}, reference, DSV4_OPS_DEVICE(device), hc_pre_cases, hc_pre_gradient());
}

}  // namespace dsv4::ops::detail
