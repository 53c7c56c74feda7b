// Registrations of add and scale (spec 01 §1.11 C6): element-wise steps of one fp32 rounding, then
// an optional bf16 rounding, in the official reference's arithmetic (Precision(Mode::kOfficial)'s
// add, mul, fp32, bf16) — the compressor's biased scores, the MTP input's bf16 sum, the indexer's
// head weights, the bf16 cast of the compressor's pooled rows (dsv4/gpu/elementwise.hpp).
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/gpu/elementwise.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

const Precision kOfficial{Mode::kOfficial};

double rounded(double v, bool bf16_out) { return bf16_out ? kOfficial.bf16(v) : v; }

// ints {bf16_out (0/1)}; inputs a, b [rows, cols] (per row, fp32 values) → y [rows, cols]:
// fl32(a + b), rounded to bf16 when bf16_out.
Outputs add_reference(const Call& c) {
  const Array& a = c.inputs.at(0);
  const Array& b = c.inputs.at(1);
  if (b.rows != a.rows || b.cols != a.cols) throw std::invalid_argument("add: a and b must have one shape");
  std::vector<float> y(a.f32.size());
  for (std::size_t i = 0; i < y.size(); ++i)
    y[i] = static_cast<float>(rounded(kOfficial.add(a.f32[i], b.f32[i]), c.ints.at(0) != 0));
  return {Array::floats("y", a.rows, a.cols, std::move(y))};
}

// ints {bf16_out (0/1)}; reals {c}; input x [rows, cols] (per row, fp32 values) → y [rows, cols]:
// fl32(x × fl32(c)), rounded to bf16 when bf16_out.
Outputs scale_reference(const Call& c) {
  const Array& x = c.inputs.at(0);
  const double k = kOfficial.fp32(c.reals.at(0));
  std::vector<float> y(x.f32.size());
  for (std::size_t i = 0; i < y.size(); ++i)
    y[i] = static_cast<float>(rounded(kOfficial.mul(x.f32[i], k), c.ints.at(0) != 0));
  return {Array::floats("y", x.rows, x.cols, std::move(y))};
}

#if DSV4_HAVE_CUDA
Outputs add_device(const Call& c) {
  const Array& a = c.inputs.at(0);
  const Array& b = c.inputs.at(1);
  if (b.rows != a.rows || b.cols != a.cols) throw std::invalid_argument("add: a and b must have one shape");
  return {Array::floats("y", a.rows, a.cols, gpu::add(a.f32.data(), b.f32.data(), a.elements(), c.ints.at(0) != 0))};
}
Outputs scale_device(const Call& c) {
  const Array& x = c.inputs.at(0);
  return {Array::floats("y", x.rows, x.cols, gpu::scale(x.f32.data(), x.elements(), c.reals.at(0), c.ints.at(0) != 0))};
}
#endif

// fp32 operands with the edges of one rounding, per element i (kind i mod 8): 0 exact sums and
// products (small integers), 1 fp32 ties (a + b exactly half-way between two floats: the even one),
// 2 bf16 ties after the fp32 rounding, 3 cancellation (b = −a: +0; and −0 + −0 = −0), 4 subnormal
// operands and results, 5 overflow (±FLT_MAX-range operands: ±inf), 6 ±inf operands, 7 random
// normals × 2^e, e in [−40, 40].
std::vector<float> edge_operands(std::int64_t n, std::uint64_t seed, const char* stream, bool second) {
  const CounterRng rng(seed, stream_id(stream));
  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto w = rng.words(i);
    const float sign = (w[0] & 1u) != 0 ? -1.0f : 1.0f;
    switch (i % 8) {
      case 0:
        v[i] = static_cast<float>(static_cast<int>(w[1] % 33) - 16);
        break;
      case 1:  // 1 + 2^-24: a tie of 1 + its neighbour's half ulp
        v[i] = second ? sign * 0x1p-24f : sign * (1.0f + static_cast<float>(w[1] % 4) * 0x1p-23f);
        break;
      case 2:  // bf16 ties: 1 + 2^-8 (+ 2^-8 · k)
        v[i] = second ? sign * 0x1p-9f : sign * (1.0f + static_cast<float>(w[1] % 4) * 0x1p-7f);
        break;
      case 3:
        v[i] = second ? -0.0f : ((w[1] & 1u) != 0 ? -0.0f : 0.0f);
        break;
      case 4:
        v[i] = sign * static_cast<float>(w[1] % 1024 + 1) * 0x1p-149f;
        break;
      case 5:
        v[i] = sign * 0x1.fffffep127f * (second ? 1.0f : 0.75f);
        break;
      case 6:
        v[i] = (w[1] % 5 == 0) ? sign * kInf : sign * 2.0f;
        break;
      default:
        v[i] = static_cast<float>(rng.normal(i) * std::ldexp(1.0, static_cast<int>(w[1] % 81) - 40));
        break;
    }
  }
  return v;
}

// The b of an add case: the cancellation kind is −a exactly (cancelling to ±0), the inf kind never
// −a where a is inf (inf − inf = NaN: a NaN's payload is the machine's, not the arithmetic's).
std::vector<float> second_operand(const std::vector<float>& a, std::uint64_t seed) {
  std::vector<float> b = edge_operands(static_cast<std::int64_t>(a.size()), seed, "ops.add.b", true);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i % 8 == 3 && a[i] != 0.0f) b[i] = -a[i];
    if (std::isinf(a[i]) && std::isinf(b[i])) b[i] = a[i];
  }
  return b;
}

const std::vector<Shape>& elementwise_shapes() {
  // the MTP input [s, hc_mult · dim], the compressor's [s, κD] scores, the indexer's [s, n_I]
  // weights, odd ones
  static const std::vector<Shape> shapes = {{2, 4 * 4096}, {64, 1024}, {9, 64}, {300, 8}, {3, 7}};
  return shapes;
}

std::vector<Case> add_cases(std::uint64_t seed) {
  std::vector<Case> cases;
  std::uint64_t k = 0;
  for (const int bf16_out : {0, 1}) {
    for (const Shape& sh : elementwise_shapes()) {
      ++k;
      Case c;
      c.label = shape_label(sh) + (bf16_out != 0 ? " bf16 out" : " fp32 out");
      c.call.ints = {bf16_out};
      std::vector<float> a = edge_operands(sh.rows * sh.cols, seed * 1000 + k, "ops.add.a", false);
      std::vector<float> b = second_operand(a, seed * 1000 + k);
      c.call.inputs = {Array::floats("a", sh.rows, sh.cols, std::move(a)),
                       Array::floats("b", sh.rows, sh.cols, std::move(b))};
      cases.push_back(std::move(c));
    }
  }
  return cases;
}

std::vector<Case> scale_cases(std::uint64_t seed) {
  // c: the indexer's (128 · 64)^-1/2 (inexact in fp32), 1 (the bf16 cast), 0.3 (products that
  // round), −2^-100 (subnormal products), 2^100 (overflow to ±inf).
  const std::vector<double> cs = {1.0 / std::sqrt(128.0 * 64.0), 1.0, 0.3, -0x1p-100, 0x1p100};
  std::vector<Case> cases;
  std::uint64_t k = 0;
  for (const double cv : cs) {
    for (const int bf16_out : {0, 1}) {
      const Shape sh = elementwise_shapes()[k % elementwise_shapes().size()];
      ++k;
      Case c;
      c.label = shape_label(sh) + " c " + std::to_string(cv) + (bf16_out != 0 ? " bf16 out" : " fp32 out");
      c.call.ints = {bf16_out};
      c.call.reals = {cv};
      c.call.inputs = {Array::floats("x", sh.rows, sh.cols,
                                     edge_operands(sh.rows * sh.cols, seed * 1000 + 50 + k, "ops.scale.x", false))};
      cases.push_back(std::move(c));
    }
  }
  return cases;
}

}  // namespace

Op add_op() {
  return registration("add", "spec 01 §1.11 C6", "element-wise y = fl32(a + b), then bf16(y) when bf16_out",
                      {"bf16_out"}, {}, add_reference, DSV4_OPS_DEVICE(add_device), add_cases);
}

Op scale_op() {
  return registration("scale", "spec 01 §1.11 C6", "element-wise y = fl32(x × fl32(c)), then bf16(y) when bf16_out",
                      {"bf16_out"}, {"c"}, scale_reference, DSV4_OPS_DEVICE(scale_device), scale_cases);
}

}  // namespace dsv4::ops::detail
