// Registration of head_rmsnorm (spec 02 §2.4 step 3): the queries' per-head RMS normalisation
// without a weight, every step a bf16 op — y = bf16(q · bf16(rsqrt(bf16(bf16(mean bf16(q²)) + eps))))
// on every head_dim-wide segment of a row.
#include <string>
#include <utility>
#include <vector>

#include "dsv4/gpu/head_rmsnorm.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {head_dim}; reals {eps}; inputs q [rows, H · head_dim] (per row, bf16 values) → y [rows,
// H · head_dim] (bf16 values).
Outputs reference(const Call& c) {
  const Array& x = c.inputs.at(0);
  Mat q = to_mat(x);
  head_rmsnorm_inplace(Precision(Mode::kOfficial), q, c.ints.at(0), c.reals.at(0));
  return {Array::floats("y", x.rows, x.cols, to_floats(q))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const Array& x = c.inputs.at(0);
  gpu::HeadRmsNormBatch r = gpu::head_rmsnorm(x.f32.data(), x.rows, x.cols, c.ints.at(0), c.reals.at(0));
  return {Array::floats("y", x.rows, x.cols, std::move(r.y))};
}
#endif

struct Spec {
  Shape shape;
  std::int64_t head_dim;
  double eps;
};

std::vector<Case> head_rmsnorm_cases(std::uint64_t seed) {
  // The model's head widths (512 = V4's c, 128 = the tiny config's and the indexer's c_I) with
  // several heads a row, and odd ones; the edge activations (zero blocks: a zero sum, rsqrt(eps);
  // subnormals: squares flushed to 0 by the fp32 product; wide ranges: sums the compensated rounding
  // decides) with every value ≥ 2^60 scaled by 2^-70 (outliers up to 2^57: squares to 2^114, their
  // sums finite — the reference's exact sum refuses a non-finite term), eps 1e-6 and 1e-5.
  const std::vector<Spec> specs = {{{3, 16 * 512}, 512, 1e-6}, {{64, 4 * 512}, 512, 1e-6}, {{40, 8 * 128}, 128, 1e-6},
                                   {{17, 2 * 64}, 64, 1e-5},   {{5, 3 * 100}, 100, 1e-6},  {{2, 7}, 7, 1e-5}};
  std::vector<Case> cases = cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    Case c;
    c.label = shape_label(s.shape) + " head_dim " + std::to_string(s.head_dim) + " activations";
    c.call.ints = {s.head_dim};
    c.call.reals = {s.eps};
    c.call.inputs = {
        Array::floats("q", s.shape.rows, s.shape.cols,
                      edge_activations_tamed(s.shape.rows, s.shape.cols, seed * 1000 + 300 + k, 0x1p60, 0x1p-70))};
    return c;
  });
  // Segments of all zeros and of one value repeated up to sign (ties in the sum of squares).
  for (const float v : {0.75f, 3.0f}) {
    Case c;
    c.label = "32x1024 head_dim 128 constant rows ±" + std::to_string(v);
    c.call.ints = {128};
    c.call.reals = {1e-6};
    c.call.inputs = {Array::floats("q", 32, 1024, constant_rows(32, 1024, v, seed, "ops.head_rmsnorm.signs"))};
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace

Op head_rmsnorm_op() {
  return registration("head_rmsnorm", "spec 02 §2.4 step 3",
                      "per-head query RMS normalisation, no weight, every step bf16: y = bf16(q · bf16(rsqrt(bf16(bf16("
                      "mean bf16(q²)) + eps))))",
                      {"head_dim"}, {"eps"}, reference, DSV4_OPS_DEVICE(device), head_rmsnorm_cases);
}

}  // namespace dsv4::ops::detail
