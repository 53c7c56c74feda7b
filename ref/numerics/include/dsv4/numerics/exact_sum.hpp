// Canonical oracle arithmetic C1 (spec 01 §1.11): a dot product or reduction is the exact real sum
// of exact terms, rounded once (RNE) to fp32. Terms are doubles: products of two bf16 values,
// of a bf16 and an fp32 value (8 + 24 significant bits) or of two fp32 values (48 bits) are exact
// in double, so the caller forms them with one multiplication each.
//
// The implementation is a fast path with a proof and an exact fallback: the terms are summed in
// double with a rigorous error bound; when the whole interval [s − bound, s + bound] rounds to one
// fp32 value, that value is the correctly rounded exact sum. Otherwise the sum is recomputed
// exactly in a wide fixed-point integer (every double is an integer multiple of 2^−1074).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace dsv4 {

// Unit roundoff of double and the classic γ_n = n·u / (1 − n·u) (Higham, Accuracy and Stability
// of Numerical Algorithms, §3.1): any order of summation of n terms has |error| ≤ γ_{n−1} Σ|t_i|.
inline constexpr double kDoubleUnitRoundoff = 0x1.0p-53;
double gamma_n(std::size_t n);

// If every real number in [s − err, s + err] rounds (RNE) to the same fp32 value, store it in
// *out and return true. err ≥ 0. Also handles the fp32 overflow threshold.
bool fp32_rounding_determined(double s, double err, float* out);

// The exact sum of the terms, rounded once to fp32 (RNE; overflow → ±inf). Terms must be finite.
float exact_sum_to_fp32(std::span<const double> terms);
// The exact sum of the terms, rounded once to double (RNE).
double exact_sum_to_double(std::span<const double> terms);

// Statistics, for the precision report: how often the exact fallback was needed.
struct ExactSumStats {
  std::uint64_t sums = 0;
  std::uint64_t fallbacks = 0;
};
ExactSumStats exact_sum_stats();

}  // namespace dsv4
