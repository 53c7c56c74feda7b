// Registration of linear (spec 01 §1.6–§1.8; spec 06 §6.8, §6.12): y = x Wᵀ for every weight kind of
// the official Linear (bf16, fp32, fp8 with 128×128 tile scales, packed fp4 with 1×32 scales), the
// bf16 weight also as the MXFP4 QAT simulation of an fp32 master weight; its backward (bf16 weight)
// with the straight-through estimator.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "dsv4/gpu/linear.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/linear_backward.hpp"
#include "op_list.hpp"
#include "resident_device.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {weight_quant: 0 none, 1 MXFP4 QAT (spec 06 §6.8: the fp32 master weight quantised to FP4 1×32
//       blocks with power-of-two scales and dequantised, fp4_qat_weight; bf16 kind only),
//       weight_kind: 0 bf16, 1 fp32, 2 fp8, 3 fp4 (dsv4::WeightKind),
//       act_scale_fp32: the activation scales of fp8 / fp4 (0 ue8m0 — config scale_fmt "ue8m0", the
//       production format; 1 fp32 — scale_fmt "")};
// inputs x [rows, K] (per row: bf16 values; fp32 values for the fp32 kind) and, shared,
//   bf16 / fp32: weight [N, K] (floats holding bf16 / fp32 values);
//   fp8: weight [N, K] e4m3 codes (bytes), scale [⌈N/128⌉, K/128] e8m0 bytes (128×128 tiles);
//   fp4: weight [N, K/2] packed e2m1 codes (element 2j in the low nibble), scale [N, K/32] e8m0 bytes
// → y [rows, N] (bf16 values; fp32 for the fp32 kind).
struct LinearArgs {
  const Array& x;
  WeightKind kind;
  bool qat;
  ScaleFormat fmt;
  std::int64_t n, k;
  explicit LinearArgs(const Call& c)
      : x(c.inputs.at(0)),
        kind(static_cast<WeightKind>(c.ints.at(1))),
        qat(c.ints.at(0) != 0),
        fmt(c.ints.at(2) != 0 ? ScaleFormat::kFP32 : ScaleFormat::kUE8M0),
        n(c.inputs.at(1).rows),
        k(x.cols) {
    if (c.ints.at(1) < 0 || c.ints.at(1) > 3) throw std::invalid_argument("linear: weight_kind must be 0..3");
    if (qat && kind != WeightKind::kBF16) throw std::invalid_argument("linear: the QAT weight is a bf16 weight");
    const bool dense = kind == WeightKind::kBF16 || kind == WeightKind::kFP32;
    const auto need = [](const Array& a, ops::DType t, std::int64_t rows, std::int64_t cols) {
      if (a.dtype != t || a.rows != rows || a.cols != cols || a.per_row) {
        throw std::invalid_argument("linear: input " + a.name + " must be a shared " + dtype_name(t) + " [" +
                                    std::to_string(rows) + ", " + std::to_string(cols) + "] array");
      }
    };
    if (c.inputs.size() != (dense ? 2u : 3u)) throw std::invalid_argument("linear: wrong number of inputs");
    if (!dense && k % 128 != 0) throw std::invalid_argument("linear: fp8 / fp4 need K a multiple of 128");
    switch (kind) {
      case WeightKind::kBF16:
      case WeightKind::kFP32:
        need(c.inputs[1], ops::DType::kF32, n, k);
        break;
      case WeightKind::kFP8:
        need(c.inputs[1], ops::DType::kU8, n, k);
        need(c.inputs[2], ops::DType::kU8, (n + 127) / 128, k / 128);
        break;
      case WeightKind::kFP4:
        need(c.inputs[1], ops::DType::kU8, n, k / 2);
        need(c.inputs[2], ops::DType::kU8, n, k / 32);
        break;
    }
  }
};

// The bf16 kind's weight as the reference takes it (the QAT value of the master weight, or the
// weight itself), in double; the backward's weight too (a bf16 weight only).
Mat effective_weight(const Call& c) {
  if (c.ints.at(1) != 0) throw std::invalid_argument("linear: the effective weight is a bf16 kind's");
  const Mat w = to_mat(c.inputs.at(1));
  return c.ints.at(0) != 0 ? fp4_qat_weight(w) : w;
}

Tensor byte_tensor(dsv4::DType t, std::vector<std::int64_t> shape, const std::vector<std::uint8_t>& bytes) {
  Tensor out(t, std::move(shape));
  auto to = out.values<std::uint8_t>();
  if (to.size() != bytes.size()) throw std::invalid_argument("linear: byte array of the wrong size");
  std::copy(bytes.begin(), bytes.end(), to.begin());
  return out;
}

// The reference's weight of a call: bf16 (the effective weight rounded to bf16, as the official
// Linear holds it), fp32, or the codes and scales.
LinearWeight reference_weight(const Call& c, const LinearArgs& a) {
  switch (a.kind) {
    case WeightKind::kBF16:
      return LinearWeight::bf16_from(effective_weight(c));
    case WeightKind::kFP32:
      return LinearWeight::fp32_from(to_mat(c.inputs.at(1)));
    case WeightKind::kFP8:
      return LinearWeight::fp8(byte_tensor(dsv4::DType::kE4M3, {a.n, a.k}, c.inputs[1].u8),
                               byte_tensor(dsv4::DType::kE8M0, {(a.n + 127) / 128, a.k / 128}, c.inputs[2].u8));
    case WeightKind::kFP4:
      return LinearWeight::fp4(byte_tensor(dsv4::DType::kE2M1x2, {a.n, a.k}, c.inputs[1].u8),
                               byte_tensor(dsv4::DType::kE8M0, {a.n, a.k / 32}, c.inputs[2].u8));
  }
  throw std::invalid_argument("linear: unknown weight kind");
}

// Official mode (spec 01 §1.6–§1.8): the dispatch of ref/model `linear` by weight kind.
Outputs reference(const Call& c) {
  const LinearArgs a(c);
  const Mat y = linear(Precision(Mode::kOfficial), to_mat(a.x), reference_weight(c, a), a.fmt);
  return {Array::floats("y", a.x.rows, y.cols(), to_floats(y))};
}

#if DSV4_HAVE_CUDA
// gpu::linear_resident (gpu/src/linear.cu) with the weight's device copy (resident_device.hpp: kept
// with a resident weight, else made for this call). The bf16 weight is the reference's: the
// effective weight (for the QAT weight, fp4_qat_weight of the master — a preprocessing of the
// weight, done on the host) rounded to bf16 as LinearWeight::bf16_from does; the kernel is the bf16
// linear. The host view (the recomputation of undecided elements) reads the host values.
Outputs device(const Call& c) {
  const LinearArgs a(c);
  gpu::LinearWeightView v;
  v.kind = static_cast<gpu::LinearKind>(static_cast<int>(a.kind));
  v.out_features = a.n;
  v.in_features = a.k;
  std::vector<float> bf16;
  if (a.kind == WeightKind::kBF16) {
    const Mat w = effective_weight(c);
    bf16.resize(static_cast<std::size_t>(w.size()));
    for (std::size_t i = 0; i < bf16.size(); ++i) bf16[i] = round_bf16(w.data()[i]);
    v.values = bf16.data();
  } else if (a.kind == WeightKind::kFP32) {
    v.values = c.inputs[1].f32.data();
  } else {
    v.codes = c.inputs[1].u8.data();
    v.scales = c.inputs[2].u8.data();
  }
  const char* form = a.kind == WeightKind::kFP32 ? "values" : (a.qat ? "bf16 of fp4_qat_weight" : "bf16");
  std::vector<std::shared_ptr<const void>> hold;
  const gpu::LinearWeightView dv = device_view(
      v, c.inputs[1], a.kind == WeightKind::kFP8 || a.kind == WeightKind::kFP4 ? &c.inputs[2] : nullptr, form, hold);
  gpu::LinearBatch r = gpu::linear_resident(a.x.f32.data(), a.x.rows, v, dv, a.fmt);
  return {Array::floats("y", a.x.rows, a.n, std::move(r.y))};
}
#endif

// ---- cases ----

Array shared_floats(const char* name, std::int64_t rows, std::int64_t cols, std::vector<float> v) {
  Array a = Array::floats(name, rows, cols, std::move(v));
  a.per_row = false;
  return a;
}

Array shared_bytes(const char* name, std::int64_t rows, std::int64_t cols, std::vector<std::uint8_t> v) {
  Array a = Array::bytes(name, rows, cols, std::move(v));
  a.per_row = false;
  return a;
}

// edge_activations with full fp32 mantissas (the fp32 kind's input): every value × (1 + u·2^-10),
// u uniform in [0, 1), rounded to fp32 (zeros keep their sign, subnormals stay subnormal).
std::vector<float> fp32_activations(std::int64_t rows, std::int64_t k, std::uint64_t seed) {
  std::vector<float> x = edge_activations(rows, k, seed);
  const CounterRng rng(seed, stream_id("ops.linear.x.fp32"));
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<float>(static_cast<double>(x[i]) * (1.0 + rng.uniform(i) * 0x1p-10));
  }
  return x;
}

// An e8m0 scale byte: mostly 2^-10..2^-5 (the models' range); one in 16 the smallest 2^-127 (σ and
// the scaled partials subnormal or zero), one in 16 tiny (2^-126..2^-119), one in 16 large
// (2^20..2^31). Entries 0 and 1 are always 2^-127 and 2^31.
std::uint8_t edge_scale(const CounterRng& rng, std::size_t i) {
  if (i == 0) return 0;
  if (i == 1) return 127 + 31;
  const auto u = rng.words(i);
  switch (u[0] % 16) {
    case 0:
      return 0;
    case 1:
      return static_cast<std::uint8_t>(1 + u[1] % 8);
    case 2:
      return static_cast<std::uint8_t>(147 + u[1] % 12);
    default:
      return static_cast<std::uint8_t>(117 + u[1] % 6);
  }
}

// Low-bit values whose fp8 / fp4 accumulators often land on bf16 ties: x rows of small integers
// (half of them 0) with a ±448 anchor per 128-block (ue8m0: s_a = 1, the codes are the values),
// weight codes of ±{0, 0.5 .. 4} (fp8) or any nibble (fp4), every scale 2^0.
std::vector<float> low_bit_activations(std::int64_t rows, std::int64_t k, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.linear.lowbit.x"));
  std::vector<float> x(static_cast<std::size_t>(rows * k));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto u = rng.words(i);
    const float sign = (u[0] & 1u) != 0 ? -1.0f : 1.0f;
    x[i] = (i % static_cast<std::size_t>(k)) % 128 == 0
               ? sign * 448.0f
               : ((u[1] & 1u) != 0 ? 0.0f : sign * static_cast<float>(u[2] % 9));
  }
  return x;
}

std::vector<std::uint8_t> low_bit_fp8_codes(std::int64_t n, std::int64_t k, std::uint64_t seed) {
  static constexpr double kValues[] = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0};
  const CounterRng rng(seed, stream_id("ops.linear.lowbit.fp8"));
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n * k));
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const auto u = rng.words(i);
    codes[i] = double_to_e4m3(((u[0] & 1u) != 0 ? -1.0 : 1.0) * kValues[u[1] % 7]);
  }
  return codes;
}

std::vector<std::uint8_t> random_bytes(std::size_t count, std::uint64_t seed, const char* stream) {
  const CounterRng rng(seed, stream_id(stream));
  std::vector<std::uint8_t> b(count);
  for (std::size_t i = 0; i < count; ++i) b[i] = static_cast<std::uint8_t>(rng.words(i)[0] & 0xFFu);
  return b;
}

// Block sums whose fp32 rounding decides the bf16 output (spec 01 §1.7 / §1.8: p_κ is the C1 block
// sum, rounded once to fp32, before the fp32 steps): every scale 2^0 and only the first block in use,
// so out = bf16(fl32(p)) with p = T − δ. T lies on a bf16 tie whose even neighbour is above it (fp8:
// T = 518 = 448 + 64 + 6, between 516 and 520; fp4: T = 66,304 = 24 × 448·6 + 448·4, between 66,048
// and 66,560) and δ = j_m·c_n units (2^-18 fp8, 2^-10 fp4: x = j_m·2^-9 at column `tail`, j_m = m mod
// 8, against weight −c_n·2^-9 (fp8) / −c_n·0.5 (fp4), c_n = n mod 4) falls below, on or above half
// an fp32 ulp of T (8 units fp8, 4 fp4). RN(p) = T for 0 < δ ≤ half an ulp (the fp32 tie goes to
// T's even significand), so the output is the upper neighbour; a block sum rounded toward zero or
// truncated gives the lower one — in 13 of 32 (fp8) and 7 of 32 (fp4) outputs (gpu_linear_test
// BlockRoundingCases… counts them). Column 0 holds the ±448 anchor (s_a = 1: codes = values); odd
// rows are negated whole.
struct BlockRounding {
  std::vector<float> x;
  std::vector<std::uint8_t> codes;
};
BlockRounding block_rounding_values(std::int64_t rows, std::int64_t n, std::int64_t k, bool fp8) {
  const std::vector<double> xt = fp8 ? std::vector<double>{448.0, 64.0, 6.0} : std::vector<double>(25, 448.0);
  std::vector<double> wt = fp8 ? std::vector<double>{1.0, 1.0, 1.0} : std::vector<double>(25, 6.0);
  if (!fp8) wt.back() = 4.0;
  const std::int64_t tail = static_cast<std::int64_t>(xt.size()) + 1;
  const double unit_w = fp8 ? 0x1p-9 : 0.5;
  BlockRounding v;
  v.x.assign(static_cast<std::size_t>(rows * k), 0.0f);
  for (std::int64_t m = 0; m < rows; ++m) {
    const double sign = m % 2 == 1 ? -1.0 : 1.0;
    float* xr = v.x.data() + m * k;
    xr[0] = static_cast<float>(sign * 448.0);
    for (std::size_t i = 0; i < xt.size(); ++i) xr[i + 1] = static_cast<float>(sign * xt[i]);
    xr[tail] = static_cast<float>(sign * static_cast<double>(m % 8) * 0x1p-9);
  }
  std::vector<double> w(static_cast<std::size_t>(n * k), 0.0);
  for (std::int64_t r = 0; r < n; ++r) {
    double* wr = w.data() + r * k;
    for (std::size_t i = 0; i < wt.size(); ++i) wr[i + 1] = wt[i];
    wr[tail] = -static_cast<double>(r % 4) * unit_w;
  }
  if (fp8) {
    v.codes.resize(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) v.codes[i] = double_to_e4m3(w[i]);
  } else {
    v.codes.assign(w.size() / 2, 0);
    for (std::size_t i = 0; i < w.size(); ++i) {
      const std::uint8_t c = double_to_e2m1(w[i]);
      v.codes[i / 2] = static_cast<std::uint8_t>(v.codes[i / 2] | (i % 2 == 0 ? c : c << 4));
    }
  }
  return v;
}

enum class Values { kNormals, kEdges, kTies, kBlockRounding };

struct CaseSpec {
  std::int64_t rows, k, n, quant;
  WeightKind kind;
  bool fp32_scales;
  Values values;
};

Case make_case(const CaseSpec& sp, std::uint64_t seed) {
  static const char* const kKindText[] = {"bf16 weight", "fp32 weight", "fp8 weight", "fp4 weight"};
  static const char* const kValuesText[] = {"normals", "edge values", "ties", "block-sum roundings"};
  const int kind = static_cast<int>(sp.kind);
  const bool bf16 = sp.kind == WeightKind::kBF16;
  Case c;
  c.label = shape_label({sp.rows, sp.k}) + " · " + shape_label({sp.n, sp.k}) + "ᵀ " +
            (sp.quant != 0 ? "MXFP4 QAT weight" : kKindText[kind]) + ", " + kValuesText[static_cast<int>(sp.values)] +
            (kind >= 2 ? (sp.fp32_scales ? ", fp32 act scales" : ", ue8m0 act scales") : "");
  c.call.ints = {sp.quant, kind, sp.fp32_scales ? 1 : 0};
  const std::uint64_t ws = seed + 50;
  if (sp.kind == WeightKind::kBF16 || sp.kind == WeightKind::kFP32) {
    std::vector<float> x, w;
    switch (sp.values) {
      case Values::kNormals:
        x = bf16_normals(sp.rows * sp.k, 1.0, seed, "ops.linear.x");
        w = bf16 ? bf16_normals(sp.n * sp.k, 0.1, ws, "ops.linear.weight")
                 : normals(sp.n * sp.k, 0.1, ws, "ops.linear.weight");
        break;
      case Values::kEdges:
        x = bf16 ? edge_activations(sp.rows, sp.k, seed) : fp32_activations(sp.rows, sp.k, seed);
        w = edge_weight(sp.n, sp.k, ws, bf16, "ops.linear");
        break;
      case Values::kTies:
      case Values::kBlockRounding:  // the dense kinds have no block sums: their ties
        std::tie(x, w) = tie_values(sp.rows, sp.n, sp.k, seed, bf16, "ops.linear");
        break;
    }
    c.call.inputs = {Array::floats("x", sp.rows, sp.k, std::move(x)),
                     shared_floats("weight", sp.n, sp.k, std::move(w))};
    return c;
  }
  const bool fp8 = sp.kind == WeightKind::kFP8;
  const std::int64_t code_cols = fp8 ? sp.k : sp.k / 2;
  const std::int64_t scale_rows = fp8 ? (sp.n + 127) / 128 : sp.n, scale_cols = fp8 ? sp.k / 128 : sp.k / 32;
  std::vector<float> x;
  std::vector<std::uint8_t> codes, scales;
  if (sp.values == Values::kBlockRounding) {
    BlockRounding b = block_rounding_values(sp.rows, sp.n, sp.k, fp8);
    x = std::move(b.x);
    codes = std::move(b.codes);
    scales.assign(static_cast<std::size_t>(scale_rows * scale_cols), 127);
  } else if (sp.values == Values::kTies) {
    x = low_bit_activations(sp.rows, sp.k, seed);
    codes = fp8 ? low_bit_fp8_codes(sp.n, sp.k, ws)
                : random_bytes(static_cast<std::size_t>(sp.n * code_cols), ws, "ops.linear.lowbit.fp4");
    scales.assign(static_cast<std::size_t>(scale_rows * scale_cols), 127);
  } else {
    // Outliers kept but tamed (|x| ≥ 2^40 scaled by 2^-60) so that no σ·p_κ or accumulator overflows
    // with the largest weight scale 2^31: |s_a| ≤ 2^59, |p_κ| < 2^25.
    x = edge_activations_tamed(sp.rows, sp.k, seed, 0x1p40, 0x1p-60);
    codes = fp8 ? edge_fp8_codes(sp.n, sp.k, ws) : edge_fp4_codes(sp.n, sp.k, ws);
    const CounterRng rng(ws, stream_id("ops.linear.scales"));
    scales.resize(static_cast<std::size_t>(scale_rows * scale_cols));
    for (std::size_t i = 0; i < scales.size(); ++i) scales[i] = edge_scale(rng, i);
  }
  c.call.inputs = {Array::floats("x", sp.rows, sp.k, std::move(x)),
                   shared_bytes("weight", sp.n, code_cols, std::move(codes)),
                   shared_bytes("scale", scale_rows, scale_cols, std::move(scales))};
  return c;
}

std::vector<Case> linear_cases(std::uint64_t seed) {
  using W = WeightKind;
  using V = Values;
  // Every weight kind: normals, the edge values (ties, subnormals, clamps, zero blocks, outliers of
  // edge_activations; weights with zero blocks, subnormals, outliers, extreme scales) and the
  // rounding boundaries (ties of the C1 sums and of bf16; low-bit fp8 / fp4 accumulators). K not a
  // multiple of 32 (lanes with unequal shares), N not a multiple of 128 (fp8: two scale rows, a
  // partial tile), both activation scale formats.
  const std::vector<CaseSpec> specs = {
      {64, 128, 16, 0, W::kBF16, false, V::kNormals},    {1, 512, 8, 0, W::kBF16, false, V::kNormals},
      {17, 96, 33, 0, W::kBF16, false, V::kEdges},       {9, 256, 12, 1, W::kBF16, false, V::kNormals},
      {40, 256, 24, 0, W::kBF16, false, V::kEdges},      {12, 64, 24, 0, W::kBF16, false, V::kTies},
      {33, 160, 20, 0, W::kFP32, false, V::kEdges},      {2, 4096, 6, 0, W::kFP32, false, V::kEdges},
      {12, 40, 24, 0, W::kFP32, false, V::kTies},        {16, 512, 130, 0, W::kFP8, false, V::kEdges},
      {24, 256, 40, 0, W::kFP8, true, V::kEdges},        {12, 256, 24, 0, W::kFP8, false, V::kTies},
      {16, 512, 40, 0, W::kFP4, false, V::kEdges},       {24, 256, 33, 0, W::kFP4, true, V::kEdges},
      {12, 256, 24, 0, W::kFP4, false, V::kTies},        {16, 128, 16, 0, W::kFP8, false, V::kBlockRounding},
      {16, 256, 12, 0, W::kFP4, true, V::kBlockRounding}};
  std::vector<Case> cases;
  std::uint64_t s = 0;
  for (const CaseSpec& sp : specs) cases.push_back(make_case(sp, seed * 1000 + 100 + ++s));
  return cases;
}

// The backward (spec 06 §6.12, ref/train linear_backward): dx and d(weight). For the QAT weight the
// straight-through estimator: the gradient check differentiates the surrogate Q(W0) + (W − W0) at
// W = W0 (spec 06 §6.12), whose derivative in W is the STE's identity; Q itself is piecewise
// constant. Bilinear: no kinks.
GradientForms linear_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0, 1};
  g.forward_exact = [](const Call& c) {
    return Doubles{
        flat(linear(Precision(Mode::kExact), to_mat(c.inputs.at(0)), LinearWeight::fp32_from(effective_weight(c))))};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& w0 = c.inputs.at(1);
    const Mat q = effective_weight(c);
    std::vector<Mp50> w(x.at(1).size());
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = Mp50(q.data()[i]) + (x.at(1)[i] - Mp50(w0.f32[i]));
    return Mp50s{linear_exact(x.at(0), c.inputs.at(0).rows, c.inputs.at(0).cols, w, w0.rows)};
  };
  g.backward = [](const Call& c) {
    const LinearGrads r = linear_backward(to_mat(c.inputs.at(0)), effective_weight(c), to_mat(c.inputs.at(2)));
    return Doubles{flat(r.dx), flat(r.dweight)};
  };
  g.cases = [](std::uint64_t seed) {
    struct Spec {
      std::int64_t rows, k, n, quant;
      const char* what;
    };
    std::vector<Case> cases;
    std::uint64_t s = 0;
    for (const Spec sp : std::vector<Spec>{{3, 16, 5, 0, "bf16 weight (bilinear: no kinks)"},
                                           {2, 32, 4, 1, "MXFP4 QAT weight, straight-through (no kinks)"}}) {
      ++s;
      Case c;
      c.label = shape_label({sp.rows, sp.k}) + " · " + shape_label({sp.n, sp.k}) + "ᵀ " + sp.what;
      c.call.ints = {sp.quant, 0, 0};  // a bf16 weight (the backward's only kind)
      Array w = Array::floats("weight", sp.n, sp.k, normals(sp.n * sp.k, 0.5, seed * 100 + s, "grad.linear.w"));
      w.per_row = false;
      c.call.inputs = {
          Array::floats("x", sp.rows, sp.k, normals(sp.rows * sp.k, 1.0, seed * 100 + s, "grad.linear.x")),
          std::move(w),
          Array::floats("dy", sp.rows, sp.n, normals(sp.rows * sp.n, 1.0, seed * 100 + s, "grad.linear.dy"))};
      cases.push_back(std::move(c));
    }
    return cases;
  };
  return g;
}

}  // namespace

Op linear_op() {
  return registration("linear", "spec 01 §1.6–§1.8",
                      "linear y = x·Wᵀ of the official Linear by weight kind: bf16 (bf16(C1 Σ x·W); W also the "
                      "MXFP4 QAT value of an fp32 master weight), fp32 (C1), fp8 (act_quant 128, fp8_gemm), fp4 "
                      "(act_quant 128, fp4_gemm)",
                      {"weight_quant", "weight_kind", "act_scale_fp32"}, {}, reference, DSV4_OPS_DEVICE(device),
                      linear_cases, linear_gradient(), /*resident_inputs=*/true);
}

}  // namespace dsv4::ops::detail
