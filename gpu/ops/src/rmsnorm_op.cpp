// Registration of rmsnorm (spec 01 §1.11 C8): y = bf16(w · x · rsqrt(mean x² + eps)) per row.
#include <cmath>

#include "dsv4/gpu/rmsnorm.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/rmsnorm_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// reals {eps}; inputs x [rows, dim] (per row, bf16 values), weight [1, dim] (shared, bf16 values)
// → y [rows, dim] (bf16 values).
Outputs reference(const Call& c) {
  const Array& x = c.inputs.at(0);
  return {Array::floats("y", x.rows, x.cols,
                        rmsnorm_rows(Precision(Mode::kOfficial), x.f32.data(), x.rows, x.cols,
                                     c.inputs.at(1).f32.data(), c.reals.at(0)))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const Array& x = c.inputs.at(0);
  gpu::RmsNormBatch r = gpu::rmsnorm(x.f32.data(), x.rows, x.cols, c.inputs.at(1).f32.data(), c.reals.at(0));
  return {Array::floats("y", x.rows, x.cols, std::move(r.y))};
}
#endif

// bf16 weights around 1 (the trained gains), with a few zeros and negatives.
std::vector<float> gains(std::int64_t dim, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.rmsnorm.weight"));
  std::vector<float> w(static_cast<std::size_t>(dim));
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double z = rng.normal(i);
    w[i] = round_bf16(i % 97 == 5 ? 0.0 : (i % 89 == 7 ? -1.0 : 1.0) + 0.25 * z);
  }
  return w;
}

std::vector<Case> rmsnorm_cases(std::uint64_t seed) {
  // The model's widths (7168 = V4 hidden, 4096 = Flash, 1536 / 512 = q / kv LoRA ranks, 128 = the
  // indexer) and odd ones; activations with zero blocks, subnormals, outliers up to 2^126 (their
  // squares overflow the fp32 sum: r = 0) and wide per-block ranges.
  const std::vector<Shape> shapes = {{1, 7168}, {64, 4096}, {5, 1536}, {300, 512}, {17, 128}, {3, 100}, {2, 7}};
  std::vector<Case> cases = cases_of(shapes, [&](const Shape& sh, std::uint64_t k) {
    Case c;
    c.label = shape_label(sh) + " activations";
    c.call.reals = {1e-6};
    c.call.inputs = {Array::floats("x", sh.rows, sh.cols, edge_activations(sh.rows, sh.cols, seed * 1000 + 700 + k)),
                     Array::shared("weight", gains(sh.cols, seed * 1000 + 800 + k))};
    return c;
  });
  // Rows of all zeros (r = rsqrt(eps)) and of one repeated value (ties in the sum), eps 1e-5.
  for (const double v : {0.0, 0.75}) {
    Case c;
    c.label = std::string("64x256 constant ") + (v == 0.0 ? "zero" : "0.75") + ", eps 1e-5";
    c.call.reals = {1e-5};
    std::vector<float> x(64 * 256, static_cast<float>(v));
    const CounterRng rng(seed, stream_id("ops.rmsnorm.signs"));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = (rng.words(i)[0] & 1u) != 0 ? -x[i] : x[i];
    c.call.inputs = {Array::floats("x", 64, 256, std::move(x)), Array::shared("weight", gains(256, seed * 1000 + 900))};
    cases.push_back(std::move(c));
  }
  return cases;
}

// The backward (spec 06 §6.12, ref/train rmsnorm_backward): dx and d(weight) from dy. Smooth
// everywhere (eps > 0).
GradientForms rmsnorm_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1};
  g.forward_exact = [](const Call& c) {
    return Doubles{
        flat(rmsnorm(Precision(Mode::kExact), to_mat(c.inputs.at(0)), to_vec(c.inputs.at(1)), c.reals.at(0)))};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& in = c.inputs.at(0);
    return Mp50s{rmsnorm_exact(x.at(0), in.rows, in.cols, x.at(1), Mp50(c.reals.at(0)))};
  };
  g.backward = [](const Call& c) {
    const RmsNormGrads r =
        rmsnorm_backward(to_mat(c.inputs.at(0)), to_vec(c.inputs.at(1)), c.reals.at(0), to_mat(c.inputs.at(2)));
    return Doubles{flat(r.dx), flat(r.dweight)};
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      Shape shape;
      double sigma, eps;
      const char* what;
    };
    const std::vector<Spec> specs = {{{3, 8}, 1.0, 1e-6, "eps 1e-6"},
                                     {{2, 5}, 0.03, 1e-3, "rows of rms 0.03, eps 1e-3 (eps matters)"},
                                     // dim 1: dx = dz·eps·r³, the backward's 1 − x²r² cancels
                                     // for eps ≪ x² (ill-conditioned in double, not a kink)
                                     {{4, 1}, 1.0, 0.5, "dim 1, eps 0.5"}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      const auto [rows, dim] = s.shape;
      Case c;
      c.label = shape_label(s.shape) + " " + s.what + " (smooth)";
      c.call.reals = {s.eps};
      c.call.inputs = {Array::floats("x", rows, dim, normals(rows * dim, s.sigma, seed * 100 + k, "grad.rmsnorm.x")),
                       Array::shared("weight", gains(dim, seed * 100 + k)),
                       upstream("dy", rows, dim, seed * 100 + k, "grad.rmsnorm.dy")};
      return c;
    });
  };
  return g;
}

}  // namespace

Op rmsnorm_op() {
  return registration("rmsnorm", "spec 01 §1.11 C8", "RMSNorm: bf16(w · x · rsqrt(mean x² + eps)) per row", {}, {"eps"},
                      reference, DSV4_OPS_DEVICE(device), rmsnorm_cases, rmsnorm_gradient());
}

}  // namespace dsv4::ops::detail
