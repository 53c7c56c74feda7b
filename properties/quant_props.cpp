// Properties of the QAT quantisers (spec 01 §1.4, §1.5) and of the FP4 → FP8 re-quantisation
// (spec 01 §1.9), on random bf16 inputs and random weight tiles.
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/numerics/tensor.hpp"
#include "dsv4/properties/generators.hpp"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {
namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (float_bits(a[i]) != float_bits(b[i])) return false;
  }
  return true;
}

// The in-place forms overflow to inf (fl32(q·s) ≥ 2^128) only for inputs in the top fp32 binade
// (see quant_test InplaceOverflowsAtTopOfBf16Range). Asserts that, and returns whether `out` is
// all finite (the properties below are stated for finite outputs).
bool all_finite_or_huge(const std::vector<float>& in, const std::vector<float>& out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) {
      RC_ASSERT(std::fabs(in[i]) >= 0x1.0p127f);
      return false;
    }
  }
  return true;
}

// Half the e4m3 quantum at magnitude v (v ≤ 448): 2^(e−4) in the binade [2^e, 2^(e+1)), e ≥ −6;
// 2^−10 below 2^−6 (subnormal step 2^−9).
double half_e4m3_quantum(double v) {
  if (v < std::ldexp(1.0, -6)) return std::ldexp(1.0, -10);
  return std::ldexp(1.0, std::ilogb(v) - 4);
}

struct Case {
  int block;
  ScaleFormat fmt;
};
Case gen_case() {
  const int block = *rc::gen::element(64, 128);
  const ScaleFormat fmt = *rc::gen::element(ScaleFormat::kFP32, ScaleFormat::kUE8M0);
  return {block, fmt};
}

// Q∘Q = Q for the in-place quant-dequant operator. With fp32 scales also the (codes, scales) pair
// is idempotent, provided every block's amax reaches the fl32(1e-4) clamp (below it the requantised
// amax can round up past the clamp value and change the scale).
void act_quant_idempotent() {
  const Case c = gen_case();
  const std::int64_t rows = *rc::gen::inRange(1, 4);
  const std::int64_t cols = c.block * *rc::gen::inRange(1, 4);
  const std::vector<float> x = gen_bf16_rows(rows, cols);
  std::vector<float> once = x;
  act_quant_inplace(once, cols, c.block, c.fmt);
  if (!all_finite_or_huge(x, once)) return;
  std::vector<float> twice = once;
  act_quant_inplace(twice, cols, c.block, c.fmt);
  RC_ASSERT(same_bits(once, twice));

  const Fp8Blocks q1 = act_quant(x, cols, c.block, c.fmt);
  const Fp8Blocks q2 = act_quant(once, cols, c.block, c.fmt);
  bool all_above_clamp = true;
  for (std::size_t b = 0; b < q1.scales.size(); ++b) {
    float a = 0.0f;
    for (int j = 0; j < c.block; ++j) a = std::max(a, std::fabs(x[b * static_cast<std::size_t>(c.block) + j]));
    all_above_clamp = all_above_clamp && a >= kActQuantAmaxFloor;
  }
  if (c.fmt == ScaleFormat::kFP32 && all_above_clamp) {
    RC_ASSERT(q1.values == q2.values);
    RC_ASSERT(q1.scales == q2.scales);
  }
  // Always: the dequantised values of both passes agree (ue8m0: exactly q·s).
  if (c.fmt == ScaleFormat::kUE8M0) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::size_t b = i / static_cast<std::size_t>(c.block);
      RC_ASSERT(static_cast<double>(e4m3_to_float(q1.values[i])) * q1.scales[b] ==
                static_cast<double>(e4m3_to_float(q2.values[i])) * q2.scales[b]);
    }
  }
}

void fp4_act_quant_idempotent() {
  const std::int64_t rows = *rc::gen::inRange(1, 4);
  const std::int64_t cols = 32 * *rc::gen::inRange(1, 5);
  const std::vector<float> x = gen_bf16_rows(rows, cols);
  std::vector<float> once = x;
  fp4_act_quant_inplace(once, cols);
  if (!all_finite_or_huge(x, once)) return;
  std::vector<float> twice = once;
  fp4_act_quant_inplace(twice, cols);
  RC_ASSERT(same_bits(once, twice));
  for (const float v : once) RC_ASSERT(float_bits(round_bf16(v)) == float_bits(v));
}

// ue8m0 scales are powers of two with a/s ∈ (224, 448] (a the clamped amax); fp4 scales with
// a/s ∈ (3, 6].
void power_of_two_scales() {
  const int block = *rc::gen::element(64, 128);
  const std::vector<float> x = gen_bf16_rows(2, block);
  const Fp8Blocks q = act_quant(x, block, block, ScaleFormat::kUE8M0);
  for (std::size_t b = 0; b < q.scales.size(); ++b) {
    const float s = q.scales[b];
    RC_ASSERT((float_bits(s) & 0x807FFFFFu) == 0u);  // positive, mantissa 0, normal
    float a = kActQuantAmaxFloor;
    for (int j = 0; j < block; ++j) a = std::max(a, std::fabs(x[b * static_cast<std::size_t>(block) + j]));
    RC_ASSERT(a / static_cast<double>(s) > 224.0);
    RC_ASSERT(a / static_cast<double>(s) <= 448.0);
  }
  const Fp4Blocks f = fp4_act_quant(x, block);
  for (std::size_t b = 0; b < f.scales.size(); ++b) {
    const double s = e8m0_to_float(f.scales[b]);
    float a = kFp4AmaxFloor;
    for (int j = 0; j < 32; ++j) a = std::max(a, std::fabs(x[b * 32 + j]));
    RC_ASSERT(a / s > 3.0);
    RC_ASSERT(a / s <= 6.0);
  }
}

// Within a block (one fixed scale) the quantised value is a monotone function of x.
void monotone_within_block() {
  const Case c = gen_case();
  const std::vector<float> x = gen_bf16_rows(1, c.block);
  const Fp8Blocks q = act_quant(x, c.block, c.block, c.fmt);
  const Fp4Blocks f = fp4_act_quant(x, c.block);
  std::vector<std::size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return x[i] < x[j]; });
  auto fp4_at = [&](std::size_t i) {
    const std::uint8_t byte = f.packed[i / 2];
    return e2m1_to_float(static_cast<std::uint8_t>(i % 2 == 0 ? byte & 0xF : byte >> 4));
  };
  for (std::size_t t = 1; t < order.size(); ++t) {
    const std::size_t i = order[t - 1], j = order[t];
    RC_ASSERT(e4m3_to_float(q.values[i]) <= e4m3_to_float(q.values[j]));
    if (i / 32 == j / 32) RC_ASSERT(fp4_at(i) <= fp4_at(j));
  }
}

// Error bound: ue8m0 (x/s exact, dequant exact): |x − q·s| ≤ s · ½quantum(|x/s|). fp32 scales:
// |fl32(x/s) − q| ≤ ½quantum(|fl32(x/s)|).
void error_within_half_quantum() {
  const Case c = gen_case();
  const std::vector<float> x = gen_bf16_rows(2, c.block);
  const Fp8Blocks q = act_quant(x, c.block, c.block, c.fmt);
  std::vector<float> y = x;
  act_quant_inplace(y, c.block, c.block, c.fmt);
  if (!all_finite_or_huge(x, y)) return;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float s = q.scales[i / static_cast<std::size_t>(c.block)];
    const double qv = e4m3_to_float(q.values[i]);
    if (c.fmt == ScaleFormat::kUE8M0) {
      const double v = static_cast<double>(x[i]) / s;  // exact
      RC_ASSERT(std::fabs(static_cast<double>(x[i]) - static_cast<double>(y[i])) <=
                s * half_e4m3_quantum(std::fabs(v)));
      RC_ASSERT(static_cast<double>(y[i]) == qv * s);
    } else {
      const float v = x[i] / s;
      RC_ASSERT(std::fabs(static_cast<double>(v) - qv) <= half_e4m3_quantum(std::fabs(static_cast<double>(v))));
    }
  }
}

// FP4 → FP8 on random tiles (partial edges included): the condition flag is exactly
// ratio ≤ 2^14; under it nothing is lossy and the FP8 form dequantises to the FP4 form exactly;
// otherwise the lossy list is exactly the elements whose w·2^(e−e_max+6) is not an e4m3 value.
void fp4_to_fp8_lossless_under_condition() {
  const std::int64_t n = *rc::gen::element<std::int64_t>(128, 130, 192, 64);
  const std::int64_t k = *rc::gen::element<std::int64_t>(128, 160, 96, 32);
  const int e_max = *rc::gen::inRange(100, 160);
  const int spread = *rc::gen::inRange(0, 19);
  Tensor w(DType::kE2M1x2, {n, k});
  Tensor s(DType::kE8M0, {n, k / 32});
  // Bulk codes and scales from one generated seed (a generator call per byte would dominate the run).
  std::mt19937 rng(*rc::gen::arbitrary<std::uint32_t>());
  std::uniform_int_distribution<int> any_byte(0, 255), exponent(e_max - spread, e_max);
  for (auto& b : w.values<std::uint8_t>()) b = static_cast<std::uint8_t>(any_byte(rng));
  for (auto& b : s.values<std::uint8_t>()) b = static_cast<std::uint8_t>(exponent(rng));

  std::set<double> grid;
  for (int b = 0; b < 256; ++b) {
    const double d = e4m3_to_float(static_cast<std::uint8_t>(b));
    if (!std::isnan(d)) grid.insert(d);
  }
  const Fp4ToFp8Result res = requantize_fp4_to_fp8(w, s);
  const auto wv = w.values<std::uint8_t>();
  const auto sv = s.values<std::uint8_t>();
  const std::int64_t tile_cols = (k + 127) / 128;
  std::vector<int> tile_max(res.tiles.size(), 0);
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t b = 0; b < k / 32; ++b) {
      int& m = tile_max[static_cast<std::size_t>((r / 128) * tile_cols + b / 4)];
      m = std::max(m, static_cast<int>(sv[static_cast<std::size_t>(r * (k / 32) + b)]));
    }
  }
  std::int64_t expected_lossy = 0;
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t col = 0; col < k; ++col) {
      const std::uint8_t byte = wv[static_cast<std::size_t>((r * k + col) / 2)];
      const std::uint8_t code = static_cast<std::uint8_t>(col % 2 == 0 ? byte & 0xF : byte >> 4);
      const int e = sv[static_cast<std::size_t>(r * (k / 32) + col / 32)];
      const int t = static_cast<int>((r / 128) * tile_cols + col / 128);
      const double scaled = std::fabs(static_cast<double>(e2m1_to_float(code))) * std::ldexp(1.0, e - tile_max[t] + 6);
      if (grid.count(scaled) == 0) ++expected_lossy;
    }
  }
  RC_ASSERT(static_cast<std::int64_t>(res.lossy.size()) == expected_lossy);
  bool all_hold = true;
  for (std::size_t t = 0; t < res.tiles.size(); ++t) {
    RC_ASSERT(res.tiles[t].condition_holds == (res.tiles[t].scale_ratio_log2 <= 14));
    RC_ASSERT(res.tiles[t].scale_ratio_log2 <= spread);
    if (res.tiles[t].condition_holds) RC_ASSERT(res.tiles[t].lossy_count == 0);
    all_hold = all_hold && res.tiles[t].condition_holds;
  }
  if (all_hold) {
    RC_ASSERT(res.lossy.empty());
    const Tensor a = dequant_fp4_weight(w, s);
    const Tensor b = dequant_fp8_weight(res.weight, res.scales);
    const auto av = a.values<float>();
    const auto bv = b.values<float>();
    for (std::size_t i = 0; i < av.size(); ++i) RC_ASSERT(av[i] == bv[i]);
  }
}

}  // namespace

void register_quant_properties(Registry& r) {
  r.add_rc("quant.act_quant_idempotent", "quant",
           "act_quant (fp32 and ue8m0 scales): Q(Q(x)) = Q(x) bit for bit; codes and scales too above the clamp", 1000,
           act_quant_idempotent);
  r.add_rc("quant.fp4_act_quant_idempotent", "quant", "fp4_act_quant: Q(Q(x)) = Q(x) bit for bit, outputs are bf16",
           1000, fp4_act_quant_idempotent);
  r.add_rc("quant.power_of_two_scales", "quant",
           "ue8m0 scales are powers of two with amax/s in (224, 448]; fp4 scales with amax/s in (3, 6]", 1000,
           power_of_two_scales);
  r.add_rc("quant.monotone", "quant", "within one block the quantised value is a monotone function of x", 1000,
           monotone_within_block);
  r.add_rc("quant.half_quantum", "quant", "act_quant's error is at most half an e4m3 quantum (times the scale)", 1000,
           error_within_half_quantum);
  r.add_rc("quant.fp4_to_fp8_lossless", "quant",
           "FP4->FP8: lossless exactly when a tile's scale ratio <= 2^14; otherwise exactly the off-grid elements "
           "are reported lossy",
           300, fp4_to_fp8_lossless_under_condition);
}

}  // namespace dsv4::props
