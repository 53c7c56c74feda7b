// Canonical oracle arithmetic C2 (spec 01 §1.11): elementary functions return the correctly
// rounded fp32 result (RNE) of the exact function of the fp32 argument, on every machine.
//
// Method: evaluate in double (libm error < 1 ulp of double is *not* assumed tight — we allow
// kLibmErrorUlps double ulps); if the whole error interval rounds to one fp32 value, that value is
// correctly rounded. Otherwise re-evaluate with Boost.Multiprecision at 50 decimal digits (≈166
// bits), where the same test is made with a bound of a few 2^-160 relative; the exact result of
// these functions at a non-trivial fp32 argument is transcendental/irrational and cannot sit
// exactly on an fp32 midpoint, so the second test always decides (it throws if it ever does not).
#pragma once

#include <cstdint>

namespace dsv4 {

// Allowed error of the double libm evaluation, in double ulps (glibc documents ≤ 1–2 ulp for
// exp, log1p, sin, cos, pow; we take a safety margin).
inline constexpr double kLibmErrorUlps = 4.0;

float cr_exp(float x);
float cr_log1p(float x);
float cr_sin(float x);
float cr_cos(float x);
float cr_pow(float x, float y);
float cr_sqrt(float x);   // IEEE sqrt is already correctly rounded; provided for symmetry
float cr_rsqrt(float x);  // 1/sqrt(x) correctly rounded (one rounding, not two)

// C2 composites, each elementary step rounded (spec 01 §1.11 C2).
float sigmoid_c2(float x);   // fl(1 / fl(1 + exp(−x)))
float silu_c2(float x);      // fl(x / fl(1 + exp(−x)))
float softplus_c2(float x);  // x if x > 20 else fl(log1p(exp(x)))

// Counts of multiprecision re-evaluations since start (for the precision report and tests).
std::uint64_t cr_multiprecision_fallbacks();

}  // namespace dsv4
