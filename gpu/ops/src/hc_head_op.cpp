// Registration of hc_head (spec 04 §4.5): per token, the n RMS-scaled head mixes, the gates
// pre_k = σ(μ_k·α + b_k) + ε (separate fp32 operations) and y = bf16(C1 Σ_k fl(pre_k · X_k)).
#include <cmath>
#include <string>
#include <utility>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/hc_head.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/hc_head_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n = hc_mult}, reals {hc_eps, norm_eps}; inputs x [tokens, n·d] (per row, bf16 values), fn
// [1, n·n·d], base [1, n], scale [1, 1] (shared, fp32 values) → y [tokens, d] (bf16).
Outputs reference(const Call& c) {
  const Array& x = c.inputs.at(0);
  const std::int64_t n = c.ints.at(0), d = x.cols / n;
  return {
      Array::floats("y", x.rows, d,
                    hc_head_rows(Precision(Mode::kOfficial), x.f32.data(), x.rows, n, d, c.inputs.at(1).f32.data(),
                                 c.inputs.at(2).f32.data(), c.inputs.at(3).f32.at(0), c.reals.at(0), c.reals.at(1)))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const Array& x = c.inputs.at(0);
  const std::int64_t n = c.ints.at(0), d = x.cols / n;
  gpu::HcHeadBatch r = gpu::hc_head(x.f32.data(), x.rows, n, d, c.inputs.at(1).f32.data(), c.inputs.at(2).f32.data(),
                                    c.inputs.at(3).f32.at(0), c.reals.at(0), c.reals.at(1));
  return {Array::floats("y", x.rows, d, std::move(r.y))};
}
#endif

// The synthetic head weights of spec 04 (HcHeadWeights::synthetic) as flat fp32 arrays;
// zero_scale: α = 0 (the gates are σ(b_k) + ε, the same for every token).
Case make_case(std::string label, std::int64_t n, std::int64_t d, std::vector<float> x, std::int64_t tokens,
               std::uint64_t seed, bool zero_scale) {
  ModelConfig cfg;
  cfg.hc_mult = n;
  cfg.dim = d;
  const HcHeadWeights w = HcHeadWeights::synthetic(cfg, seed);
  std::vector<float> fn = to_floats(w.fn), base = to_floats(w.base);
  Case c;
  c.label = std::move(label);
  c.call.ints = {n};
  c.call.reals = {1e-6, 1e-6};
  c.call.inputs = {Array::floats("x", tokens, n * d, std::move(x)), Array::shared("fn", std::move(fn)),
                   Array::shared("base", std::move(base)),
                   Array::shared("scale", {zero_scale ? 0.0f : static_cast<float>(w.scale)})};
  return c;
}

std::vector<Case> hc_head_cases(std::uint64_t seed) {
  struct Spec {
    std::int64_t tokens, n, d;
    bool zero_scale;
  };
  // The model's widths (4096 Flash, 7168 V4, tiny-like 64) with hc_mult 4 and other stream counts;
  // edge activations (zero blocks, bf16 subnormals, outliers up to 2^40, wide ranges).
  const std::vector<Spec> specs = {
      {8, 4, 4096, false}, {2, 4, 7168, false}, {300, 4, 64, false}, {17, 1, 96, false},
      {9, 2, 100, false},  {5, 16, 33, false},  {40, 4, 256, true},
  };
  std::vector<Case> cases = cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    const std::uint64_t base = seed * 1000 + 600 + 10 * k;
    return make_case(std::to_string(s.tokens) + " tokens, n " + std::to_string(s.n) + ", d " + std::to_string(s.d) +
                         ", activations" + (s.zero_scale ? ", scale 0" : ""),
                     s.n, s.d, edge_activations_tamed(s.tokens, s.n * s.d, base, 0x1p40, 0x1p-90), s.tokens, base + 1,
                     s.zero_scale);
  });
  {
    // Rows of all zeros (S = 0, r = rsqrt(eps), μ = ±0) and of one repeated value up to sign.
    const std::int64_t tokens = 6, n = 4, d = 128;
    std::vector<float> x = constant_rows(tokens, n * d, 0.75f, seed, "ops.hc_head.signs");
    cases.push_back(make_case("6 tokens, n 4, d 128, constant rows (zero, ±0.75)", n, d, std::move(x), tokens,
                              seed * 1000 + 690, false));
  }
  return cases;
}

// The backward (spec 04 §4.8, spec 06 §6.12, ref/train hc_head_backward): dx, dfn, dbase, dscale.
// Smooth everywhere (ε_n > 0).
GradientForms hc_head_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1, 2, 3};
  g.forward_exact = [](const Call& c) {
    const Array& x = c.inputs.at(0);
    const std::int64_t n = c.ints.at(0), d = x.cols / n;
    ModelConfig cfg;
    cfg.hc_mult = n;
    cfg.dim = d;
    cfg.hc_eps = c.reals.at(0);
    cfg.norm_eps = c.reals.at(1);
    HcHeadWeights w;
    w.fn = to_mat(doubles(c.inputs.at(1)), n, n * d);
    w.base = to_vec(c.inputs.at(2));
    w.scale = c.inputs.at(3).f32.at(0);
    return Doubles{flat(hc_head(Precision(Mode::kExact), cfg, to_mat(x), w))};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& in = c.inputs.at(0);
    const std::int64_t n = c.ints.at(0), d = in.cols / n;
    std::vector<Mp50> y(static_cast<std::size_t>(in.rows * d));
    for (std::int64_t t = 0; t < in.rows; ++t) {
      hc_head_exact(x.at(0).data() + t * n * d, n, d, x.at(1).data(), x.at(2).data(), x.at(3).at(0), c.reals.at(0),
                    c.reals.at(1), y.data() + t * d);
    }
    return Mp50s{std::move(y)};
  };
  g.backward = [](const Call& c) {
    const Array& x = c.inputs.at(0);
    const std::int64_t n = c.ints.at(0), d = x.cols / n;
    const HcHeadGrads r =
        hc_head_backward(to_mat(x), n, to_mat(doubles(c.inputs.at(1)), n, n * d), to_vec(c.inputs.at(2)),
                         c.inputs.at(3).f32.at(0), c.reals.at(0), c.reals.at(1), to_mat(c.inputs.at(4)));
    return Doubles{flat(r.dx), flat(r.dfn), flat(r.dbase), {r.dscale}};
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      std::int64_t tokens, n, d;
    };
    const std::vector<Spec> specs = {{3, 4, 3}, {2, 2, 5}, {2, 1, 4}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      const std::uint64_t base = seed * 100 + k;
      Case c = make_case(
          std::to_string(s.tokens) + " tokens, n " + std::to_string(s.n) + ", d " + std::to_string(s.d) + " (smooth)",
          s.n, s.d, normals(s.tokens * s.n * s.d, 1.0, base, "grad.hc_head.x"), s.tokens, base, false);
      c.call.inputs.push_back(upstream("dy", s.tokens, s.d, base, "grad.hc_head.dy"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op hc_head_op() {
  return registration("hc_head", "spec 04 §4.5",
                      "mHC head: y = bf16(C1 Σ_k fl(pre_k·X_k)), pre_k = σ(μ_k·α + b_k) + ε per token", {"n"},
                      {"hc_eps", "norm_eps"}, reference, DSV4_OPS_DEVICE(device), hc_head_cases, hc_head_gradient());
}

}  // namespace dsv4::ops::detail
