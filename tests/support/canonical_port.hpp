// A host port of the device helpers of gpu/common/include/dsv4/gpu/common/canonical.cuh (spec 01
// §1.11 C1, C2 as the kernels compute them): the same operation sequence on the CPU, so a kernel's
// arithmetic can be checked bit for bit against the reference on a machine without a GPU
// (tests/gpu_<stem>_test.cpp: "host port" tests). Each function mirrors its device namesake line by
// line; the device intrinsics become:
//   __dadd_rn / __dsub_rn / __dmul_rn, __fadd_rn / __fsub_rn / __fmul_rn / __fdiv_rn → the plain
//     operators (round to nearest; the tests are built with -ffp-contract=off);
//   __dadd_rd / __dadd_ru / __dsub_rd / __dsub_ru / __dmul_ru → exact directed roundings from the
//     round-to-nearest result and its exact error (TwoSum, FMA): one ulp toward the bound when the
//     error has that sign;
//   the CUDA double exp (≤ 1 ulp) → std::exp (glibc: < 1 ulp), under the same ±2^-51 interval.
// A port of the logic, not of the device's exp: where glibc and CUDA exp differ by an ulp the
// decided result is still the correctly rounded one (both intervals contain the exact value).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace dsv4::test::port {

inline double next_up(double x) { return std::nextafter(x, std::numeric_limits<double>::infinity()); }
inline double next_down(double x) { return std::nextafter(x, -std::numeric_limits<double>::infinity()); }

struct TwoSum {
  double t, err;
};
// canonical.cuh two_sum (Knuth).
inline TwoSum two_sum(double s, double a) {
  const double t = s + a;
  const double bp = t - s;
  return {t, (s - (t - bp)) + (a - bp)};
}

// Directed roundings of a + b and a·b (finite operands, no overflow): the RN result moved one ulp
// toward the bound when its exact error points there.
inline double add_rd(double a, double b) {
  const TwoSum r = two_sum(a, b);
  return r.err < 0.0 ? next_down(r.t) : r.t;
}
inline double add_ru(double a, double b) {
  const TwoSum r = two_sum(a, b);
  return r.err > 0.0 ? next_up(r.t) : r.t;
}
inline double sub_rd(double a, double b) { return add_rd(a, -b); }
inline double sub_ru(double a, double b) { return add_ru(a, -b); }
inline double mul_ru(double a, double b) {
  const double p = a * b;
  return std::fma(a, b, -p) > 0.0 ? next_up(p) : p;
}

// canonical.cuh round_interval.
inline bool round_interval(double y, double err, float* out) {
  const auto lo = static_cast<float>(y - err);
  const auto hi = static_cast<float>(y + err);
  *out = lo;
  return lo == hi;
}

// canonical.cuh exp_c2_dev.
inline bool exp_c2(float x, float* out) {
  if (std::isnan(x)) {
    *out = x;
    return true;
  }
  if (std::isinf(x)) {
    *out = x > 0.0f ? x : 0.0f;
    return true;
  }
  if (x == 0.0f) {
    *out = 1.0f;
    return true;
  }
  const double y = std::exp(static_cast<double>(x));
  if (std::isinf(y) || y == 0.0) {
    *out = static_cast<float>(y);
    return true;
  }
  return round_interval(y, std::fabs(y) * 0x1p-51, out);
}

// canonical.cuh SumC1Comp.
struct SumC1Comp {
  double s = 0.0, c = 0.0, cmag = 0.0;
  bool exact = true;
  void add(double a) {
    const TwoSum r = two_sum(s, a);
    if (r.err != 0.0) exact = false;
    s = r.t;
    c = c + r.err;
    cmag = cmag + std::fabs(r.err);
  }
};

// canonical.cuh rounds_to.
inline bool rounds_to(double s, double lo, double hi, float r, float* out) {
  const float inf = std::numeric_limits<float>::infinity();
  if (!std::isfinite(r)) return false;
  const float up = std::nextafter(r, inf), dn = std::nextafter(r, -inf);
  if (!std::isfinite(up) || !std::isfinite(dn)) return false;
  const double mu = 0.5 * (static_cast<double>(r) + static_cast<double>(up));
  const double ml = 0.5 * (static_cast<double>(r) + static_cast<double>(dn));
  const bool above_ml = add_rd(sub_rd(s, ml), lo) > 0.0;
  const bool below_mu = add_ru(sub_ru(s, mu), hi) < 0.0;
  if (!above_ml || !below_mu) return false;
  if (r == 0.0f) {
    if (add_rd(s, lo) > 0.0) {
      *out = 0.0f;
      return true;
    }
    if (add_ru(s, hi) < 0.0) {
      *out = -0.0f;
      return true;
    }
    return false;
  }
  *out = r;
  return true;
}

// canonical.cuh round_c1_comp.
inline bool round_c1_comp(const SumC1Comp& p, int count, float* out) {
  const float inf = std::numeric_limits<float>::infinity();
  if (p.exact || !std::isfinite(p.s)) {
    *out = static_cast<float>(p.s);
    return true;
  }
  const double b = mul_ru(p.cmag, 2.0 * count * 0x1p-53);
  const double lo = sub_rd(p.c, b), hi = add_ru(p.c, b);
  constexpr double kOverflow = 0x1.ffffffp127;
  if (add_rd(p.s, lo) >= kOverflow) {
    *out = inf;
    return true;
  }
  if (add_ru(p.s, hi) <= -kOverflow) {
    *out = -inf;
    return true;
  }
  const auto r = static_cast<float>(p.s);
  const float candidates[3] = {r, std::nextafter(r, inf), std::nextafter(r, -inf)};
  for (const float cand : candidates) {
    if (rounds_to(p.s, lo, hi, cand, out)) return true;
  }
  *out = r;
  return false;
}

}  // namespace dsv4::test::port
