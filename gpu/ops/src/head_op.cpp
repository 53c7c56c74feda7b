// Registration of the model head (spec 05 §5.3): per row (each taken as the last position), hc_head,
// the final RMSNorm and the fp32 logits of the vocabulary.
#include <cmath>
#include <string>
#include <utility>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/model/synthetic_weights.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "op_list.hpp"
#if DSV4_HAVE_CUDA
#include "dsv4/gpu/head.hpp"
#endif

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

std::vector<Case> head_cases(std::uint64_t seed) {
  struct Spec {
    std::int64_t rows, n, d, vocab;
  };
  std::vector<Case> cases;
  std::uint64_t k = 0;
  // V4-Flash (d 4096) and V4-Pro (7168) widths with a slice of the vocabulary, tiny-like (d 64);
  // the synthetic weights of the model (hc_head, norm 1 + 0.1·N(0, 1), head N(0, 1/d), bf16);
  // edge activations (zero blocks, subnormals, outliers up to 2^40, wide ranges).
  for (const Spec s : std::vector<Spec>{{3, 4, 4096, 256}, {2, 4, 7168, 128}, {64, 4, 64, 512}, {9, 2, 100, 77}}) {
    ++k;
    const std::uint64_t base = seed * 1000 + 700 + 10 * k;
    ModelConfig cfg;
    cfg.hc_mult = s.n;
    cfg.dim = s.d;
    const HcHeadWeights hw = HcHeadWeights::synthetic(cfg, base + 1);
    Case c;
    c.label = std::to_string(s.rows) + " rows, n " + std::to_string(s.n) + ", d " + std::to_string(s.d) + ", vocab " +
              std::to_string(s.vocab) + ", activations";
    c.call.ints = {s.n, s.vocab};
    c.call.reals = {1e-6, 1e-6};
    c.call.inputs = {
        Array::floats("x", s.rows, s.n * s.d, edge_activations_tamed(s.rows, s.n * s.d, base, 0x1p40, 0x1p-90)),
        Array::shared("hc_fn", to_floats(hw.fn)),
        Array::shared("hc_base", to_floats(hw.base)),
        Array::shared("hc_scale", {static_cast<float>(hw.scale)}),
        Array::shared("norm", to_floats(synthetic_norm_weight(base + 2, "ops.head.norm", s.d))),
        Array::shared("head", to_floats(synthetic_bf16_matrix(base + 3, "ops.head.head", s.vocab, s.d,
                                                              1.0 / std::sqrt(static_cast<double>(s.d)))))};
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace

Op head_op() {
  Op op;
  op.stem = "head";
  op.spec = "spec 05 §5.3";
  op.summary = "model head per row: hc_head, final RMSNorm, fp32 logits = C1 norm·headᵀ";
  op.int_params = {"n", "vocab"};
  op.real_params = {"hc_eps", "norm_eps"};
  op.reference = reference;
#if DSV4_HAVE_CUDA
  op.device = device;
#endif
  op.cases = head_cases;
  return op;
}

}  // namespace dsv4::ops::detail
