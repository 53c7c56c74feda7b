// Registration of rope (spec 02 §2.3): interleaved partial RoPE and its inverse on the last r_d dims
// of every head, with the reference's YaRN table (spec 02 §2.2) as a shared input.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/rope.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/rope_backward.hpp"
#include "op_list.hpp"
#include "resident_device.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {head_dim, rope_head_dim, inverse (0/1)}; inputs x [rows, cols] (per row, bf16 values),
// pos [rows, 1] (per row, the token positions as exact integers), cos and sin [1, P · r_d/2]
// (shared: the table of positions 0..P−1, row-major [P, r_d/2]) → y [rows, cols].
struct RopeArgs {
  const Array& x;
  const Array& pos;
  const Array& cos;
  const Array& sin;
  std::int64_t head_dim, rope_head_dim, table_positions;
  bool inverse;
  std::vector<std::int64_t> positions;
  explicit RopeArgs(const Call& c)
      : x(c.inputs.at(0)),
        pos(c.inputs.at(1)),
        cos(c.inputs.at(2)),
        sin(c.inputs.at(3)),
        head_dim(c.ints.at(0)),
        rope_head_dim(c.ints.at(1)),
        table_positions(rope_head_dim >= 2 ? cos.elements() / (rope_head_dim / 2) : 0),
        inverse(c.ints.at(2) != 0) {
    if (pos.cols != 1 || pos.rows != x.rows) throw std::invalid_argument("rope: pos must be [rows, 1]");
    if (rope_head_dim < 2 || cos.elements() != sin.elements() || cos.elements() % (rope_head_dim / 2) != 0) {
      throw std::invalid_argument("rope: cos and sin must be [P, rope_head_dim / 2] tables of one size");
    }
    positions.resize(static_cast<std::size_t>(pos.rows));
    for (std::size_t r = 0; r < positions.size(); ++r) positions[r] = static_cast<std::int64_t>(pos.f32[r]);
  }
};

// The call's shared cos/sin inputs as a RopeTable.
RopeTable table_of(const RopeArgs& a) {
  RopeTable table(a.table_positions, a.rope_head_dim);
  for (Eigen::Index i = 0; i < table.cos_matrix().size(); ++i) {
    table.cos_matrix().data()[i] = a.cos.f32[static_cast<std::size_t>(i)];
    table.sin_matrix().data()[i] = a.sin.f32[static_cast<std::size_t>(i)];
  }
  return table;
}

Outputs reference(const Call& c) {
  const RopeArgs a(c);
  const RopeTable table = table_of(a);
  Mat m(a.x.rows, a.x.cols);
  for (std::int64_t i = 0; i < a.x.elements(); ++i) m.data()[i] = a.x.f32[static_cast<std::size_t>(i)];
  apply_rope_inplace(Precision(Mode::kOfficial), table, m, a.positions, a.head_dim, a.inverse);
  return {Array::floats("y", a.x.rows, a.x.cols, to_floats(m))};
}

#if DSV4_HAVE_CUDA
// gpu::rope_resident with the tables' device copies (kept with resident tables: resident_device.hpp).
Outputs device(const Call& c) {
  const RopeArgs a(c);
  std::vector<std::shared_ptr<const void>> hold;
  const float* cos = device_floats(a.cos, "values", a.cos.f32.data(), hold);
  const float* sin = device_floats(a.sin, "values", a.sin.f32.data(), hold);
  return {Array::floats("y", a.x.rows, a.x.cols,
                        gpu::rope_resident(a.x.f32.data(), a.x.rows, a.x.cols, a.head_dim, a.positions.data(), cos, sin,
                                           a.table_positions, a.rope_head_dim, a.inverse))};
}
#endif

// The official-mode table of rp for positions 0..P−1, as two shared [1, P · r_d/2] inputs.
std::vector<Array> table_inputs(const RopeParams& rp, std::int64_t P) {
  const RopeTable t = rope_table(Precision(Mode::kOfficial), rp, P);
  return {Array::shared("cos", to_floats(t.cos_matrix())), Array::shared("sin", to_floats(t.sin_matrix()))};
}

// Positions: row 0 at 0, row 1 at P − 1, the rest uniform in [0, P).
std::vector<float> positions(std::int64_t rows, std::int64_t P, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.rope.positions"));
  std::vector<float> p(static_cast<std::size_t>(rows));
  for (std::size_t r = 0; r < p.size(); ++r) {
    p[r] = static_cast<float>(r == 0 ? 0 : (r == 1 ? P - 1 : static_cast<std::int64_t>(rng.words(r)[0] % P)));
  }
  return p;
}

std::vector<Case> rope_cases(std::uint64_t seed) {
  const ModelConfig flash = builtin_config("v4-flash");
  // The two tables of V4: compressed layers (compress_rope_theta, YaRN factor 16 from 65,536
  // positions) and sliding-window layers (rope_theta, YaRN off); and a small r_d.
  RopeParams yarn = rope_params_for_ratio(flash, 4), plain = rope_params_for_ratio(flash, 0), small = plain;
  small.rope_head_dim = 2;
  constexpr std::int64_t P = 2048;
  const std::vector<Array> yarn_table = table_inputs(yarn, P), plain_table = table_inputs(plain, P),
                           small_table = table_inputs(small, P);
  struct Spec {
    std::int64_t rows, cols, head_dim;
    int table;  // 0 yarn, 1 plain, 2 small
    bool inverse;
    const char* what;
  };
  const std::int64_t rd = flash.rope_head_dim;
  const std::vector<Spec> specs = {{3, 8 * 512, 512, 0, false, "q heads"},
                                   {64, 512, 512, 0, false, "kv"},
                                   {300, 512, 512, 1, false, "kv, sliding-window table"},
                                   {5, 8 * 512, 512, 0, true, "attention output, inverse"},
                                   {17, 8 * 512, 512, 1, true, "attention output, inverse, sliding-window table"},
                                   {7, 4 * 128, 128, 0, false, "indexer q heads"},
                                   {33, 64, 64, 0, false, "head_dim = r_d"},
                                   {9, 64, 64, 0, true, "head_dim = r_d, inverse"},
                                   {4, 3 * 70, 70, 1, false, "odd head_dim"},
                                   {6, 5 * 9, 9, 2, true, "r_d 2, odd head_dim, inverse"}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    Case c;
    c.label = shape_label({s.rows, s.cols}) + " head_dim " + std::to_string(s.head_dim) + " " + s.what;
    const std::int64_t r = s.table == 2 ? 2 : rd;
    c.call.ints = {s.head_dim, r, s.inverse ? 1 : 0};
    const std::vector<Array>& t = s.table == 0 ? yarn_table : (s.table == 1 ? plain_table : small_table);
    c.call.inputs = {Array::floats("x", s.rows, s.cols, edge_activations(s.rows, s.cols, seed * 1000 + 500 + k)),
                     Array::floats("pos", s.rows, 1, positions(s.rows, P, seed * 1000 + 600 + k)), t[0], t[1]};
    return c;
  });
}

// The backward (spec 06 §6.12, ref/train rope_backward): dx from dy (positions and the table have
// none). Linear in x: no kinks.
GradientForms rope_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0};
  g.forward_exact = [](const Call& c) {
    const RopeArgs a(c);
    Mat m = to_mat(a.x);
    apply_rope_inplace(Precision(Mode::kExact), table_of(a), m, a.positions, a.head_dim, a.inverse);
    return Doubles{flat(m)};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const RopeArgs a(c);
    std::vector<Mp50> y = x.at(0);
    rope_exact_inplace(y, a.x.rows, a.x.cols, table_of(a), a.positions, a.head_dim, a.inverse);
    return Mp50s{std::move(y)};
  };
  g.backward = [](const Call& c) {
    const RopeArgs a(c);
    return Doubles{flat(rope_backward(table_of(a), to_mat(c.inputs.at(4)), a.positions, a.head_dim, a.inverse))};
  };
  g.cases = [](std::uint64_t seed) {
    const ModelConfig flash = builtin_config("v4-flash");
    RopeParams yarn = rope_params_for_ratio(flash, 4);
    yarn.rope_head_dim = 8;
    constexpr std::int64_t P = 64;
    const std::vector<Array> table = table_inputs(yarn, P);
    struct Spec {
      bool inverse;
      std::int64_t head_dim;
    };
    const std::vector<Spec> specs = {{false, 8}, {false, 12}, {true, 8}, {true, 12}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      const std::int64_t rows = 3, cols = 2 * s.head_dim;
      Case c;
      c.label = shape_label({rows, cols}) + " head_dim " + std::to_string(s.head_dim) + " r_d 8 YaRN" +
                (s.inverse ? " inverse" : "") + " (linear: no kinks)";
      c.call.ints = {s.head_dim, 8, s.inverse ? 1 : 0};
      c.call.inputs = {Array::floats("x", rows, cols, normals(rows * cols, 1.0, seed * 100 + k, "grad.rope.x")),
                       Array::floats("pos", rows, 1, positions(rows, P, seed * 100 + k)), table[0], table[1],
                       upstream("dy", rows, cols, seed * 100 + k, "grad.rope.dy")};
      return c;
    });
  };
  return g;
}

}  // namespace

Op rope_op() {
  return registration(
      "rope", "spec 02 §2.3",
      "interleaved partial RoPE (or its inverse) of the last r_d dims of every head, YaRN table, bf16 out",
      {"head_dim", "rope_head_dim", "inverse"}, {}, reference, DSV4_OPS_DEVICE(device), rope_cases, rope_gradient(),
      /*resident_inputs=*/true);
}

}  // namespace dsv4::ops::detail
