// Registration of hc_post (spec 04 §4.4): per token, X'_k = bf16(fl(fl(post_k · f) + C1 Σ_j
// fl(comb[j, k] · X_j))) — the new residual state from the sublayer output and the old state.
#include <cmath>
#include <string>

#include "dsv4/gpu/hc_post.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/hc_post_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n = hc_mult}; inputs f [tokens, d], residual [tokens, n·d] (bf16 values), post [tokens, n],
// comb [tokens, n·n] (fp32 values; comb[j, k] at j·n + k), all per row → y [tokens, n·d] (bf16).
Outputs reference(const Call& c) {
  const Array& f = c.inputs.at(0);
  const std::int64_t n = c.ints.at(0);
  return {Array::floats("y", f.rows, n * f.cols,
                        hc_post_rows(Precision(Mode::kOfficial), f.f32.data(), c.inputs.at(1).f32.data(),
                                     c.inputs.at(2).f32.data(), c.inputs.at(3).f32.data(), f.rows, n, f.cols))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const Array& f = c.inputs.at(0);
  const std::int64_t n = c.ints.at(0);
  gpu::HcPostBatch r = gpu::hc_post(f.f32.data(), c.inputs.at(1).f32.data(), c.inputs.at(2).f32.data(),
                                    c.inputs.at(3).f32.data(), f.rows, n, f.cols);
  return {Array::floats("y", f.rows, n * f.cols, std::move(r.y))};
}
#endif

// Edge activations with every value of magnitude ≥ 2^96 scaled by 2^-24: post·f and the comb sum
// stay finite, so no inf − inf makes a NaN (whose payload would be the machine's, not the
// arithmetic's).
std::vector<float> activations(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  return edge_activations_tamed(rows, cols, seed, 0x1p96, 0x1p-24);
}

enum class Gates { kRandom, kDyadic };

// post in (0, 2) and comb in [0, 1] as the Sinkhorn leaves them (fp32 values, a few exact zeros),
// or dyadic gates (multiples of 2^-4) whose products with small integers tie in bf16.
std::vector<float> gates(std::int64_t count, double hi, Gates kind, std::uint64_t seed, const char* stream) {
  const CounterRng rng(seed, stream_id(stream));
  std::vector<float> g(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (kind == Gates::kDyadic) {
      g[i] = static_cast<float>(static_cast<double>(rng.words(i)[0] % 17) * 0x1p-4 * hi);
    } else {
      g[i] = rng.words(i)[1] % 29 == 3 ? 0.0f : static_cast<float>(hi * rng.uniform(i));
    }
  }
  return g;
}

std::vector<float> small_integers(std::int64_t count, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.hc_post.integers"));
  std::vector<float> x(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(rng.words(i)[0] % 513) - 256);
  return x;
}

std::vector<Case> hc_post_cases(std::uint64_t seed) {
  struct Spec {
    std::int64_t tokens, n, d;
    Gates kind;
    const char* what;
  };
  // The model's widths (4096 Flash, 7168 V4, tiny-like 64) with hc_mult 4, other stream counts,
  // edge activations (zero blocks, subnormals, outliers, wide ranges that make the double sum
  // inexact) and dyadic gates on small integers (bf16 ties of the new state).
  const std::vector<Spec> specs = {{64, 4, 4096, Gates::kRandom, "activations"},
                                   {2, 4, 7168, Gates::kRandom, "activations"},
                                   {300, 4, 64, Gates::kRandom, "activations"},
                                   {17, 1, 96, Gates::kRandom, "activations"},
                                   {9, 2, 100, Gates::kRandom, "activations"},
                                   {5, 6, 33, Gates::kRandom, "activations"},
                                   {32, 4, 256, Gates::kDyadic, "dyadic gates, small integers (bf16 ties)"}};
  std::vector<Case> cases = cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    Case c;
    c.label =
        std::to_string(s.tokens) + " tokens, n " + std::to_string(s.n) + ", d " + std::to_string(s.d) + ", " + s.what;
    c.call.ints = {s.n};
    const std::uint64_t base = seed * 1000 + 400 + 10 * k;
    const bool ints = s.kind == Gates::kDyadic;
    c.call.inputs = {
        Array::floats("f", s.tokens, s.d,
                      ints ? small_integers(s.tokens * s.d, base) : activations(s.tokens, s.d, base)),
        Array::floats(
            "residual", s.tokens, s.n * s.d,
            ints ? small_integers(s.tokens * s.n * s.d, base + 1) : activations(s.tokens, s.n * s.d, base + 1)),
        Array::floats("post", s.tokens, s.n, gates(s.tokens * s.n, 2.0, s.kind, base + 2, "ops.hc_post.post")),
        Array::floats("comb", s.tokens, s.n * s.n,
                      gates(s.tokens * s.n * s.n, 1.0, s.kind, base + 3, "ops.hc_post.comb"))};
    return c;
  });
  {
    // Sums on an fp32 rounding boundary: X_0 a bf16 value, X_1 half an fp32 ulp of it (X_0 + X_1 is
    // a midpoint), X_2 = ±2^-60·|X_0| (decides the direction; the plain error bound of the double
    // sum cannot) or ±0 (an exact tie: to even), X_3 = 0; comb = 1, post = 1 and f = −X_0 so that the
    // bf16 output shows the fp32 rounding of the sum.
    const std::int64_t tokens = 16, n = 4, d = 128;
    const CounterRng rng(seed, stream_id("ops.hc_post.boundary"));
    std::vector<float> f(static_cast<std::size_t>(tokens * d)), x(static_cast<std::size_t>(tokens * n * d), 0.0f);
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (std::int64_t i = 0; i < d; ++i) {
        const auto w = rng.words(static_cast<std::uint64_t>(t * d + i));
        const int e = static_cast<int>(w[0] % 161) - 80;
        const double x0 = ((w[1] & 1u) != 0 ? -1.0 : 1.0) * std::ldexp(1.0 + (w[1] >> 1) % 128 / 128.0, e);
        const double half_ulp = std::ldexp(1.0, e - 24);
        const double x2 = (w[2] % 3 == 0) ? 0.0 : ((w[2] & 4u) != 0 ? -1.0 : 1.0) * std::ldexp(1.0, e - 60);
        float* xt = &x[static_cast<std::size_t>(t * n * d)];
        xt[i] = static_cast<float>(x0);
        xt[d + i] = static_cast<float>((w[3] & 1u) != 0 ? -half_ulp : half_ulp);
        xt[2 * d + i] = (w[2] % 3 == 0 && (w[2] & 8u) != 0) ? -0.0f : static_cast<float>(x2);
        f[static_cast<std::size_t>(t * d + i)] = static_cast<float>(-x0);
      }
    }
    Case c;
    c.label = "16 tokens, n 4, d 128, sums on fp32 rounding boundaries";
    c.call.ints = {n};
    c.call.inputs = {
        Array::floats("f", tokens, d, std::move(f)), Array::floats("residual", tokens, n * d, std::move(x)),
        Array::floats("post", tokens, n, std::vector<float>(static_cast<std::size_t>(tokens * n), 1.0f)),
        Array::floats("comb", tokens, n * n, std::vector<float>(static_cast<std::size_t>(tokens * n * n), 1.0f))};
    cases.push_back(std::move(c));
  }
  return cases;
}

// The backward (spec 04 §4.8, spec 06 §6.12, ref/train hc_post_backward): df, dresidual, dpost,
// dcomb. Bilinear: no kinks.
GradientForms hc_post_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1, 2, 3};
  g.forward_exact = [](const Call& c) {
    ModelConfig cfg;
    cfg.hc_mult = c.ints.at(0);
    cfg.dim = c.inputs.at(0).cols;
    return Doubles{flat(hc_post(Precision(Mode::kExact), cfg, to_mat(c.inputs.at(0)), to_mat(c.inputs.at(1)),
                                to_mat(c.inputs.at(2)), to_mat(c.inputs.at(3))))};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& f = c.inputs.at(0);
    return Mp50s{hc_post_exact(x.at(0), x.at(1), x.at(2), x.at(3), f.rows, c.ints.at(0), f.cols)};
  };
  g.backward = [](const Call& c) {
    const HcPostGrads r = hc_post_backward(to_mat(c.inputs.at(0)), to_mat(c.inputs.at(1)), to_mat(c.inputs.at(2)),
                                           to_mat(c.inputs.at(3)), c.ints.at(0), to_mat(c.inputs.at(4)));
    return Doubles{flat(r.df), flat(r.dresidual), flat(r.dpost), flat(r.dcomb)};
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      std::int64_t tokens, n, d;
    };
    const std::vector<Spec> specs = {{2, 4, 5}, {3, 2, 3}, {2, 1, 4}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      const std::uint64_t base = seed * 100 + k;
      Case c;
      c.label = std::to_string(s.tokens) + " tokens, n " + std::to_string(s.n) + ", d " + std::to_string(s.d) +
                " (bilinear: no kinks)";
      c.call.ints = {s.n};
      c.call.inputs = {
          Array::floats("f", s.tokens, s.d, normals(s.tokens * s.d, 1.0, base, "grad.hc_post.f")),
          Array::floats("residual", s.tokens, s.n * s.d,
                        normals(s.tokens * s.n * s.d, 1.0, base, "grad.hc_post.residual")),
          Array::floats("post", s.tokens, s.n, gates(s.tokens * s.n, 2.0, Gates::kRandom, base, "grad.hc_post.post")),
          Array::floats("comb", s.tokens, s.n * s.n,
                        gates(s.tokens * s.n * s.n, 1.0, Gates::kRandom, base, "grad.hc_post.comb")),
          upstream("dy", s.tokens, s.n * s.d, base, "grad.hc_post.dy")};
      return c;
    });
  };
  return g;
}

}  // namespace

Op hc_post_op() {
  return registration("hc_post", "spec 04 §4.4",
                      "mHC post: X'_k = bf16(fl(post_k·f) + C1 Σ_j fl(comb[j,k]·X_j)) per token", {"n"}, {}, reference,
                      DSV4_OPS_DEVICE(device), hc_post_cases, hc_post_gradient());
}

}  // namespace dsv4::ops::detail
