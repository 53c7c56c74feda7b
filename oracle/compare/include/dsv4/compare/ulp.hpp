// ULP distances in a candidate's number format (issue 5, certify: "ULP histogram in the
// candidate's dtype"; the definitions are in oracle/compare/README.md §ULPs).
//
// A floating-point format's finite values, ordered, are numbered by their *ordinal*: +0 and −0 are
// 0, the smallest positive subnormal is 1, and so on up to the largest finite value; negative
// values get the negated ordinal. Two values are d ULPs apart when their ordinals differ by d.
// The ULP distance of a candidate value c from an exact reference r is the distance of c from r
// rounded once (round-to-nearest-even) to the candidate's format — 0 means c is the correctly
// rounded reference. Rounding beyond the largest finite value goes to ±inf (ordinal = largest
// finite + 1) in formats with an infinity (IEEE overflow) and saturates to ±max finite in formats
// without one (e4m3fn, e2m1fn: the official kernels' satfinite cast).
#pragma once

#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4::compare {

// The grid of a binary floating-point format: every finite value is ±m·2^(e−M) with M the
// stored mantissa bits, e in [emin, emax] and m < 2^(M+1) (m < 2^M at e = emin: subnormals).
struct UlpGrid {
  DType dtype = DType::kF64;
  int mantissa_bits = 52;                // M
  int min_exponent = -1022;              // emin: exponent of the smallest normal binade
  int max_exponent = 1023;               // emax: exponent of the largest binade holding finite values
  bool has_infinity = true;              // IEEE overflow to ±inf; false → saturate to ±max finite
  std::uint64_t max_finite_ordinal = 0;  // ordinal of the largest finite value
};

// The grid of a floating-point dtype: kF64, kF32, kBF16, kF16, kE4M3, kE5M2, and kE2M1x2 (fp4 e2m1,
// whose packed storage is not a candidate storage, but whose grid is a valid ULP unit).
// Throws std::invalid_argument naming the dtype for any other (integer, e8m0 scale) dtype.
UlpGrid ulp_grid(DType dtype);

// Signed ordinal of x rounded once (RNE) to the grid, with the overflow rule above.
// x must not be NaN (throws std::invalid_argument); ±inf map to ±(largest finite + 1) where the
// format has an infinity, else to ±largest finite.
std::int64_t ulp_ordinal(const UlpGrid& grid, double x);
// True when x is finite and exactly a finite value of the grid.
bool on_grid(const UlpGrid& grid, double x);
// The number format float64 values are judged in: `official` (the golden's grid of the output)
// when every finite value lies on its grid — a widened dump of that format — else float64; and
// bf16 when every finite value lies on the bf16 grid and the official grid is bf16 or fp32 (an
// engine that keeps an fp32 output in bf16: judged in bf16, not in 2^16 times finer fp32 ulps).
DType widened_dump_dtype(std::span<const double> values, DType official);
// float32 values: bf16 when every finite value lies on the bf16 grid (bf16 values stored in an
// fp32 container), else float32.
DType float32_dump_dtype(std::span<const float> values);
// The ordinal of one value as stored in kF64, kF32 or kBF16 (its little-endian bytes at `element`),
// read off its sign-magnitude bit pattern without decoding it: equal to
// ulp_ordinal(ulp_grid(dtype), value) for every non-NaN value (±0 → 0, ±inf → ±(largest finite +
// 1)); nullopt for a NaN pattern. Throws std::invalid_argument for any other dtype. Used where many
// stored values are compared in their own format (the dump audit's ULP histogram).
std::optional<std::int64_t> stored_ordinal(DType dtype, const std::byte* element);
// The same on a bit pattern already loaded: U = std::uint64_t (fp64), std::uint32_t (fp32) or
// std::uint16_t (bf16); a NaN pattern gives kNaNOrdinal (below every ordinal). Inline, with no
// optional, for loops over many elements.
inline constexpr std::int64_t kNaNOrdinal = INT64_MIN;
template <class U>
constexpr std::int64_t stored_pattern_ordinal(U bits) {
  static_assert(sizeof(U) == 8 || sizeof(U) == 4 || sizeof(U) == 2);
  constexpr int magnitude_bits = 8 * static_cast<int>(sizeof(U)) - 1;
  // the infinity pattern: exponent field all ones, fraction zero (a larger magnitude is a NaN)
  constexpr std::uint64_t inf = sizeof(U) == 8 ? 0x7FF0000000000000ull : sizeof(U) == 4 ? 0x7F800000ull : 0x7F80ull;
  const std::uint64_t b = bits;
  const std::uint64_t mag = b & ((std::uint64_t{1} << magnitude_bits) - 1);
  const auto ordinal = (b >> magnitude_bits) != 0 ? -static_cast<std::int64_t>(mag) : static_cast<std::int64_t>(mag);
  return mag > inf ? kNaNOrdinal : ordinal;
}
// The ULP distance |ordinal(c) − ordinal(round(r))| (c and r not NaN).
std::uint64_t ulp_distance(const UlpGrid& grid, double candidate, double reference);
// The spacing of the grid at |x|: 2^(max(min(⌊log2|x|⌋, emax), emin) − M) (at 0 and in the
// subnormal range: the subnormal spacing; above the largest binade: the top binade's spacing).
double ulp_at(const UlpGrid& grid, double x);

// The ULP histogram's buckets: 0, 1, 2, 3–4, 5–8, …, (2^30, 2^31], and > 2^31.
// Bucket b ≥ 1 holds distances d with 2^(b−2) < d ≤ 2^(b−1); the last bucket is open.
inline constexpr int kUlpBuckets = 34;
using UlpHistogram = std::array<std::int64_t, kUlpBuckets>;
int ulp_bucket(std::uint64_t distance);
// "0", "1", "2", "3-4", "5-8", …, "2^30+1-2^31", ">2^31".
std::string ulp_bucket_label(int bucket);

}  // namespace dsv4::compare
