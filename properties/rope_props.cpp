// Properties of the interleaved partial RoPE (spec 02 §2.2 tables, §2.3 application;
// ref/model/rope.hpp) on the tables of the built-in tiny config (main base without YaRN, compress
// base with YaRN), 512 positions.
#include <rapidcheck.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {
namespace {

constexpr double kU = 0x1p-53;    // double unit roundoff
constexpr double kU32 = 0x1p-24;  // fp32
constexpr double kUb = 0x1p-8;    // bf16
double gamma(double k) { return k * kU / (1.0 - k * kU); }

// The tables of tiny's layer kinds (layer 0: ratio 0, rope_theta, no YaRN; layer 2: ratio 4,
// compress_rope_theta with YaRN), per mode, built once.
const RopeTable& table(Mode mode, int kind) {
  static std::map<std::pair<int, int>, RopeTable> cache;
  const auto key = std::make_pair(static_cast<int>(mode), kind);
  auto it = cache.find(key);
  if (it == cache.end()) {
    const ModelConfig cfg = builtin_config("tiny");
    it = cache.emplace(key, rope_table_for_layer(Precision(mode), cfg, kind == 0 ? 0 : 2)).first;
  }
  return it->second;
}

// rows × heads·head_dim values: N(0, 1)·2^e per row (e ∈ [−20, 20]), bf16 when `bf16`.
Mat gen_x(std::int64_t rows, std::int64_t cols, bool bf16) {
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
  const CounterRng rng(seed, stream_id("rope_props.x"));
  Mat x(rows, cols);
  for (std::int64_t r = 0; r < rows; ++r) {
    const int e = *rc::gen::inRange(-20, 21);
    for (std::int64_t c = 0; c < cols; ++c) {
      const double v = std::ldexp(rng.normal(static_cast<std::uint64_t>(r * cols + c)), e);
      x(r, c) = bf16 ? static_cast<double>(round_bf16(v)) : v;
    }
  }
  return x;
}

// Inverse: rotating by θ then by −θ (the conjugate) returns x; the first head_dim − r_d dims of
// every head are never touched (bit for bit).
// Exact mode, per pair of norm r, with the table's ĉ = cos θ(1 + δ1), ŝ = sin θ(1 + δ2), |δ| ≤ 8u
// (libm cos/sin within 4 ulp, the ref/README assumption): R̂ᵀR̂ = (ĉ² + ŝ²)I with |ĉ² + ŝ² − 1| ≤ 16.01u;
// each rotation adds ≤ γ_2 ‖|R̂||x|‖ ≤ γ_2·√2(1 + 8u)·r (a·c − b·s: two products, one subtraction).
// So ‖x'' − x‖ ≤ (16.01u + 2·1.01·√2·γ_2)·r ≤ 22u·r.
// Official mode (bf16 x; ĉ, ŝ correctly rounded fp32 so |ĉ² + ŝ² − 1| ≤ 2.01·2^−24): each rotation is
// fp32 products and a sum (γ_2 in fp32: ≤ 2.01·2^−24·√2 r) then a bf16 rounding (≤ 2^−8 of the
// rotated pair's norm ≤ (1 + 2^−8 + 2^−22) r); twice: ‖x'' − x‖ ≤ (2·2^−8(1 + 2^−7) + 8·2^−24)·r.
void inverse_property() {
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const Precision p(mode);
  const int kind = *rc::gen::inRange(0, 2);
  const RopeTable& tab = table(mode, kind);
  const std::int64_t rd = tab.rope_head_dim();
  const std::int64_t head_dim = rd + 16 * *rc::gen::inRange(0, 5);
  const std::int64_t heads = *rc::gen::inRange(1, 4);
  const std::int64_t rows = *rc::gen::inRange(1, 5);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(rows));
  for (auto& t : pos) t = *rc::gen::inRange<std::int64_t>(0, tab.positions());
  const Mat x = gen_x(rows, heads * head_dim, mode == Mode::kOfficial);
  Mat y = x;
  apply_rope_inplace(p, tab, y, pos, head_dim, false);
  apply_rope_inplace(p, tab, y, pos, head_dim, true);
  const double k = mode == Mode::kExact ? 22.0 * kU : 2.0 * kUb * (1.0 + 0x1p-7) + 8.0 * kU32;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::int64_t base = h * head_dim;
      for (std::int64_t d = 0; d < head_dim - rd; ++d) {
        RC_ASSERT(double_bits(y(r, base + d)) == double_bits(x(r, base + d)));
      }
      for (std::int64_t i = 0; i < rd / 2; ++i) {
        const std::int64_t a = base + head_dim - rd + 2 * i;
        const double norm = std::hypot(x(r, a), x(r, a + 1));
        RC_ASSERT(std::hypot(y(r, a) - x(r, a), y(r, a + 1) - x(r, a + 1)) <= k * norm);
      }
    }
  }
}

// Relative position (exact mode): for q at t1 and k at t2, the rope-dims dot product of the rotated
// vectors depends on t2 − t1 only: D(t1, t2) = D(t1 + δ, t2 + δ).
// Bound per pair i (norms r_q, r_k): the table's rotation at t differs from the exact rotation by
// the angle t·f_i by ‖R̂ − R‖_2 ≤ 2u·θ + 11.32u (θ = fl(t·f_i) is within u·θ of t·f_i, cos and sin
// within 8u relative); the rotation's own rounding adds γ_2·√2(1 + 8u) ≤ 2.83u·1.01; so each rotated
// pair is within η(t) = (2θ + 14.2)u·(r of the pair) of the exact one. The pair's contribution to D
// then errs by ≤ (η(t1) + η(t2))·1.01·r_q·r_k, and summing the r_d products in double adds
// γ_{r_d}·Σ|q'_j k'_j|. Two evaluations differ by at most the sum of both bounds.
void relative_position_property() {
  const Precision p(Mode::kExact);
  const int kind = *rc::gen::inRange(0, 2);
  const RopeTable& tab = table(Mode::kExact, kind);
  const std::int64_t rd = tab.rope_head_dim();
  const std::int64_t n = tab.positions();
  const std::int64_t t1 = *rc::gen::inRange<std::int64_t>(0, n);
  const std::int64_t t2 = *rc::gen::inRange<std::int64_t>(0, n);
  const std::int64_t lo = -std::min(t1, t2), hi = n - std::max(t1, t2);
  const std::int64_t delta = *rc::gen::inRange<std::int64_t>(lo, hi);
  const Mat qk = gen_x(2, rd, false);
  auto dot_at = [&](std::int64_t a, std::int64_t b, double& bound) {
    Mat q = qk.topRows(1), k = qk.bottomRows(1);
    const std::array<std::int64_t, 1> pa{a}, pb{b};
    apply_rope_inplace(p, tab, q, pa, rd, false);
    apply_rope_inplace(p, tab, k, pb, rd, false);
    double d = 0.0, abs_sum = 0.0;
    for (std::int64_t j = 0; j < rd; ++j) {
      d += q(0, j) * k(0, j);
      abs_sum += std::fabs(q(0, j) * k(0, j));
    }
    bound = gamma(static_cast<double>(rd)) * abs_sum * 1.01;
    for (std::int64_t i = 0; i < rd / 2; ++i) {
      const double f = tab.frequencies[static_cast<std::size_t>(i)];
      const double eta = (2.0 * (static_cast<double>(a) * f + static_cast<double>(b) * f) + 2.0 * 14.2) * kU;
      bound += eta * 1.01 * std::hypot(qk(0, 2 * i), qk(0, 2 * i + 1)) * std::hypot(qk(1, 2 * i), qk(1, 2 * i + 1));
    }
    return d;
  };
  double b1 = 0.0, b2 = 0.0;
  const double d1 = dot_at(t1, t2, b1);
  const double d2 = dot_at(t1 + delta, t2 + delta, b2);
  RC_ASSERT(std::fabs(d1 - d2) <= b1 + b2);
}

}  // namespace

void register_rope_properties(Registry& r) {
  r.add_rc("rope.inverse", "rope",
           "rotating by -theta undoes rotating by theta (derived bound per pair; nope dims untouched), both modes", 200,
           inverse_property);
  r.add_rc("rope.relative_position", "rope",
           "the rope-dims dot product of q at t1 and k at t2 depends only on t2 - t1 (exact mode, derived bound)", 200,
           relative_position_property);
}

}  // namespace dsv4::props
