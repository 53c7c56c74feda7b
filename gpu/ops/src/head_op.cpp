// Registration of the model head (spec 05 §5.3): per row (each taken as the last position), hc_head,
// the final RMSNorm and the fp32 logits of the vocabulary.
#include <cmath>
#include <string>
#include <utility>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/head.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/model/synthetic_weights.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/head_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n = hc_mult, vocab}, reals {hc_eps, norm_eps}; inputs x [rows, n·d] (per row, bf16 values),
// hc_fn [1, n·n·d], hc_base [1, n], hc_scale [1, 1] (fp32 values), norm [1, d] (bf16 values), head
// [1, V·d] (fp32 values) (shared) → hc_head [rows, d], norm [rows, d] (bf16), logits [rows, V].
struct HeadArgs {
  const Array& x;
  std::int64_t n, d, vocab;
  double hc_eps, norm_eps;
  const Call& c;
  explicit HeadArgs(const Call& call)
      : x(call.inputs.at(0)),
        n(call.ints.at(0)),
        d(x.cols / n),
        vocab(call.ints.at(1)),
        hc_eps(call.reals.at(0)),
        norm_eps(call.reals.at(1)),
        c(call) {}
  const float* in(std::size_t i) const { return c.inputs.at(i).f32.data(); }
  Outputs outputs(std::vector<float> hc, std::vector<float> norm, std::vector<float> logits) const {
    return {Array::floats("hc_head", x.rows, d, std::move(hc)), Array::floats("norm", x.rows, d, std::move(norm)),
            Array::floats("logits", x.rows, vocab, std::move(logits))};
  }
};

Outputs reference(const Call& c) {
  const HeadArgs a(c);
  HeadRows r = head_rows(Precision(Mode::kOfficial), a.x.f32.data(), a.x.rows, a.n, a.d, a.in(1), a.in(2),
                         c.inputs.at(3).f32.at(0), a.in(4), a.in(5), a.vocab, a.hc_eps, a.norm_eps);
  return a.outputs(std::move(r.hc_head), std::move(r.norm), std::move(r.logits));
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const HeadArgs a(c);
  gpu::HeadBatch r = gpu::head(a.x.f32.data(), a.x.rows, a.n, a.d, a.in(1), a.in(2), c.inputs.at(3).f32.at(0), a.in(4),
                               a.in(5), a.vocab, a.hc_eps, a.norm_eps);
  return a.outputs(std::move(r.hc_head), std::move(r.norm), std::move(r.logits));
}
#endif

struct Spec {
  std::int64_t rows, n, d, vocab;
};

// A case of shape s (hc_eps = norm_eps = 1e-6): activations x, the model's synthetic hc_head weights
// (seed base + 1), the final RMSNorm's weight and the head; the label ends in `what`.
Case make_case(const Spec& s, std::uint64_t base, const std::string& what, std::vector<float> x,
               std::vector<float> norm, std::vector<float> head) {
  ModelConfig cfg;
  cfg.hc_mult = s.n;
  cfg.dim = s.d;
  const HcHeadWeights hw = HcHeadWeights::synthetic(cfg, base + 1);
  Case c;
  c.label = std::to_string(s.rows) + " rows, n " + std::to_string(s.n) + ", d " + std::to_string(s.d) + ", vocab " +
            std::to_string(s.vocab) + what;
  c.call.ints = {s.n, s.vocab};
  c.call.reals = {1e-6, 1e-6};
  c.call.inputs = {Array::floats("x", s.rows, s.n * s.d, std::move(x)),
                   Array::shared("hc_fn", to_floats(hw.fn)),
                   Array::shared("hc_base", to_floats(hw.base)),
                   Array::shared("hc_scale", {static_cast<float>(hw.scale)}),
                   Array::shared("norm", std::move(norm)),
                   Array::shared("head", std::move(head))};
  return c;
}

std::vector<Case> head_cases(std::uint64_t seed) {
  // V4-Flash (d 4096) and V4-Pro (7168) widths with a slice of the vocabulary, tiny-like (d 64);
  // the synthetic weights of the model (hc_head, norm 1 + 0.1·N(0, 1), head N(0, 1/d), bf16);
  // edge activations (zero blocks, subnormals, outliers up to 2^40, wide ranges).
  const std::vector<Spec> specs = {{3, 4, 4096, 256}, {2, 4, 7168, 128}, {64, 4, 64, 512}, {9, 2, 100, 77}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    const std::uint64_t base = seed * 1000 + 700 + 10 * k;
    return make_case(s, base, ", activations", edge_activations_tamed(s.rows, s.n * s.d, base, 0x1p40, 0x1p-90),
                     to_floats(synthetic_norm_weight(base + 2, "ops.head.norm", s.d)),
                     to_floats(synthetic_bf16_matrix(base + 3, "ops.head.head", s.vocab, s.d,
                                                     1.0 / std::sqrt(static_cast<double>(s.d)))));
  });
}

// The reference's exact-mode head_forward of every row on its own (each row the last position of a
// one-token sequence, as head_rows), in double: {hc_head, norm, logits} flat.
Doubles exact_rows(const Call& c) {
  const HeadArgs a(c);
  ModelConfig cfg;
  cfg.hc_mult = a.n;
  cfg.dim = a.d;
  cfg.vocab_size = a.vocab;
  cfg.hc_eps = a.hc_eps;
  cfg.norm_eps = a.norm_eps;
  HcHeadWeights hw;
  hw.fn = to_mat(doubles(c.inputs.at(1)), a.n, a.n * a.d);
  hw.base = to_vec(c.inputs.at(2));
  hw.scale = c.inputs.at(3).f32.at(0);
  const LinearWeight head = LinearWeight::fp32_from(to_mat(doubles(c.inputs.at(5)), a.vocab, a.d));
  const Mat x = to_mat(a.x);
  Doubles out(3);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const HeadOutput o = head_forward(Precision(Mode::kExact), cfg, x.row(t), hw, to_vec(c.inputs.at(4)), head);
    for (const auto& [i, m] : {std::pair{0, &o.hc_head}, std::pair{1, &o.norm}, std::pair{2, &o.logits}}) {
      const std::vector<double> v = flat(*m);
      out[static_cast<std::size_t>(i)].insert(out[static_cast<std::size_t>(i)].end(), v.begin(), v.end());
    }
  }
  return out;
}

// The backward (spec 06 §6.12, ref/train head_backward): dx, dhc_fn, dhc_base, dhc_scale, dnorm
// (the final RMSNorm's weight) and dhead from the upstream gradients of all three outputs. Smooth
// everywhere (ε > 0 in both RMS scales): no kinks.
GradientForms head_gradient() {
  GradientForms g;
  g.outputs = {"hc_head", "norm", "logits"};
  g.wrt = {0, 1, 2, 3, 4, 5};
  g.forward_exact = exact_rows;
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const HeadArgs a(c);
    return head_exact(x.at(0), a.x.rows, a.n, a.d, x.at(1), x.at(2), x.at(3).at(0), x.at(4), x.at(5), a.vocab, a.hc_eps,
                      a.norm_eps);
  };
  g.backward = [](const Call& c) {
    const HeadArgs a(c);
    const HeadGrads r =
        head_backward(to_mat(a.x), a.n, to_mat(doubles(c.inputs.at(1)), a.n, a.n * a.d), to_vec(c.inputs.at(2)),
                      c.inputs.at(3).f32.at(0), to_vec(c.inputs.at(4)), to_mat(doubles(c.inputs.at(5)), a.vocab, a.d),
                      a.hc_eps, a.norm_eps, to_mat(c.inputs.at(6)), to_mat(c.inputs.at(7)), to_mat(c.inputs.at(8)));
    return Doubles{flat(r.dx), flat(r.dfn), flat(r.dbase), {r.dscale}, flat(r.dnorm), flat(r.dhead)};
  };
  g.cases = [](std::uint64_t seed) {
    const std::vector<Spec> specs = {{2, 2, 3, 4}, {3, 4, 2, 3}, {2, 1, 4, 5}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      const std::uint64_t base = seed * 100 + k;
      std::vector<float> norm = bf16_normals(s.d, 0.1, base, "grad.head.norm");
      for (float& v : norm) v += 1.0f;  // γ ≈ 1 + N(0, 0.1²)
      Case c = make_case(s, base, " (smooth: no kinks)", normals(s.rows * s.n * s.d, 1.0, base, "grad.head.x"),
                         std::move(norm), normals(s.vocab * s.d, 0.5, base, "grad.head.head"));
      c.call.inputs.push_back(upstream("dhc_head", s.rows, s.d, base, "grad.head.dhc_head"));
      c.call.inputs.push_back(upstream("dnorm", s.rows, s.d, base, "grad.head.dnorm"));
      c.call.inputs.push_back(upstream("dlogits", s.rows, s.vocab, base, "grad.head.dlogits"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op head_op() {
  return registration("head", "spec 05 §5.3", "model head per row: hc_head, final RMSNorm, fp32 logits = C1 norm·headᵀ",
                      {"n", "vocab"}, {"hc_eps", "norm_eps"}, reference, DSV4_OPS_DEVICE(device), head_cases,
                      head_gradient());
}

}  // namespace dsv4::ops::detail
