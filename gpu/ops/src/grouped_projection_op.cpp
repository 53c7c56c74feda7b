// Registration of the grouped output projection of attention (spec 02 §2.10 step 2): the attention
// output's G head groups, each projected by its own block of wo_a (bf16 einsum); its backward.
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/gpu/grouped_projection.hpp"
#include "dsv4/model/grouped_projection.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/grouped_projection_backward.hpp"
#include "op_list.hpp"
#include "resident_device.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {groups G}; inputs o [rows, G·P] (per row, bf16 values: the attention output after the
// inverse RoPE), wo_a [G·d_g, P] (shared, bf16 values) → y [rows, G·d_g].
struct ProjArgs {
  Mat o, wo_a;
  std::int64_t groups;
  explicit ProjArgs(const Call& c) : o(to_mat(c.inputs.at(0))), wo_a(to_mat(c.inputs.at(1))), groups(c.ints.at(0)) {
    if (groups < 1 || wo_a.rows() % groups != 0) {
      throw std::invalid_argument("grouped_projection: wo_a's rows are not a multiple of the groups");
    }
  }
  Mat forward(const Precision& p) const {
    const std::int64_t dg = wo_a.rows() / groups;
    std::vector<LinearWeight> w;
    for (std::int64_t g = 0; g < groups; ++g) w.push_back(LinearWeight::bf16_from(wo_a.middleRows(g * dg, dg)));
    return grouped_output_projection(p, o, w);
  }
};

Outputs reference(const Call& c) {
  const Mat y = ProjArgs(c).forward(Precision(Mode::kOfficial));
  return {Array::floats("y", y.rows(), y.cols(), to_floats(y))};
}

#if DSV4_HAVE_CUDA
// gpu::grouped_projection (gpu/src/grouped_projection.cu: the linear kernel's dense code over the
// groups). wo_a as the reference holds it: bf16 (LinearWeight::bf16_from rounds; the cases' values are
// bf16 already).
Outputs device(const Call& c) {
  const ProjArgs a(c);
  std::vector<float> w(static_cast<std::size_t>(a.wo_a.size()));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = round_bf16(c.inputs.at(1).f32[i]);
  const std::int64_t per_group = a.o.cols() / a.groups, dg = a.wo_a.rows() / a.groups;
  if (per_group * a.groups != a.o.cols() || a.wo_a.cols() != per_group) {
    throw std::invalid_argument("grouped_projection: o is not [rows, groups·P] with wo_a [groups·d_g, P]");
  }
  // wo_a's device copy (its bf16 rounding; kept with a resident wo_a: resident_device.hpp)
  std::vector<std::shared_ptr<const void>> hold;
  const float* d_w = device_floats(c.inputs.at(1), "bf16", w.data(), hold);
  gpu::GroupedProjectionBatch r =
      gpu::grouped_projection_resident(c.inputs.at(0).f32.data(), a.o.rows(), a.groups, per_group, w.data(), d_w, dg);
  return {Array::floats("y", a.o.rows(), a.groups * dg, std::move(r.y))};
}
#endif

enum class Values { kNormals, kEdges, kTies };

struct Spec {
  std::int64_t rows, groups, per_group, dg;
  Values values = Values::kNormals;
};

// o [rows, G·P] and wo_a [G·d_g, P] by kind: bf16 normals; the edge values (o: edge_activations —
// zero blocks, the amax-floor range, bf16 subnormals, outliers up to 2^120 among small values, ties;
// wo_a: edge_weight — zero blocks and rows, subnormals, ±2^30 outliers, nonnegative rows; inf outputs
// where outliers meet); the rounding boundaries (per group tie_values: bf16 midpoints of the C1
// sums settled or not by a tiny term, cancellation, an all −0 row).
std::pair<std::vector<float>, std::vector<float>> values_of(const Spec& s, std::uint64_t seed) {
  const std::int64_t width = s.groups * s.per_group;
  switch (s.values) {
    case Values::kNormals:
      return {bf16_normals(s.rows * width, 1.0, seed, "ops.grouped_projection.o"),
              bf16_normals(s.groups * s.dg * s.per_group, 0.5, seed, "ops.grouped_projection.wo_a")};
    case Values::kEdges:
      return {edge_activations(s.rows, width, seed),
              edge_weight(s.groups * s.dg, s.per_group, seed + 1, true, "ops.grouped_projection")};
    case Values::kTies:
      break;
  }
  std::vector<float> o(static_cast<std::size_t>(s.rows * width)), w;
  for (std::int64_t g = 0; g < s.groups; ++g) {
    auto [xg, wg] =
        tie_values(s.rows, s.dg, s.per_group, seed + static_cast<std::uint64_t>(g), true, "ops.grouped_projection");
    for (std::int64_t m = 0; m < s.rows; ++m) {
      for (std::int64_t i = 0; i < s.per_group; ++i) {
        o[static_cast<std::size_t>(m * width + g * s.per_group + i)] =
            xg[static_cast<std::size_t>(m * s.per_group + i)];
      }
    }
    w.insert(w.end(), wg.begin(), wg.end());
  }
  return {std::move(o), std::move(w)};
}

Case make_case(const Spec& s, std::uint64_t seed) {
  static const char* const kValuesText[] = {"", ", edge values", ", ties"};
  Case c;
  c.label = std::to_string(s.rows) + " rows, " + std::to_string(s.groups) + " groups of " +
            std::to_string(s.per_group) + " → " + std::to_string(s.dg) + kValuesText[static_cast<int>(s.values)];
  c.call.ints = {s.groups};
  auto [o, wo_a] = values_of(s, seed);
  Array w = Array::floats("wo_a", s.groups * s.dg, s.per_group, std::move(wo_a));
  w.per_row = false;
  c.call.inputs = {Array::floats("o", s.rows, s.groups * s.per_group, std::move(o)), std::move(w)};
  return c;
}

std::vector<Case> grouped_projection_cases(std::uint64_t seed) {
  // Group widths of one and two heads of c 512 (the models' groups are 8 heads: 4096 wide), a
  // single group, small ranks (the models' d_g is 1024; kept small for the test's time); the edge
  // values and the rounding boundaries with group widths not a multiple of 32 (lanes with unequal
  // shares) and a group boundary inside a 128-column block of o.
  const std::vector<Spec> specs = {{16, 4, 512, 32},
                                   {3, 2, 1024, 16},
                                   {40, 1, 64, 8},
                                   {17, 3, 96, 20, Values::kEdges},
                                   {33, 4, 40, 12, Values::kEdges},
                                   {9, 2, 256, 24, Values::kEdges},
                                   {12, 3, 64, 24, Values::kTies},
                                   {8, 2, 36, 16, Values::kTies}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) { return make_case(s, seed * 1000 + 900 + k); });
}

// The backward (spec 06 §6.12, ref/train grouped_projection_backward): do and d(wo_a), a bf16
// weight (no quantiser, no straight-through estimator). Bilinear: no kinks.
GradientForms grouped_projection_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1};
  g.forward_exact = [](const Call& c) { return Doubles{flat(ProjArgs(c).forward(Precision(Mode::kExact)))}; };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const ProjArgs a(c);
    return Mp50s{grouped_output_projection_exact(x.at(0), a.o.rows(), a.groups, x.at(1), a.wo_a.rows() / a.groups)};
  };
  g.backward = [](const Call& c) {
    const ProjArgs a(c);
    const GroupedProjectionGrads r = grouped_output_projection_backward(a.o, a.wo_a, a.groups, to_mat(c.inputs.at(2)));
    return Doubles{flat(r.d_o), flat(r.dwo_a)};
  };
  g.cases = [](std::uint64_t seed) {
    const std::vector<Spec> specs = {{2, 2, 3, 2}, {3, 3, 2, 2}, {2, 1, 4, 3}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      Case c = make_case(s, seed * 100 + k);  // bf16 values (the op's weight)
      c.label += " (bilinear: no kinks)";
      c.call.inputs.push_back(upstream("dy", s.rows, s.groups * s.dg, seed * 100 + k, "grad.wo_a.dy"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op grouped_projection_op() {
  return registration("grouped_projection", "spec 02 §2.10",
                      "attention's grouped output projection: y_g = bf16(C1 Σ o_g·W_{a,g}) per group of heads (wo_a)",
                      {"groups"}, {}, reference, DSV4_OPS_DEVICE(device), grouped_projection_cases,
                      grouped_projection_gradient(), /*resident_inputs=*/true);
}

}  // namespace dsv4::ops::detail
