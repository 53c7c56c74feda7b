// spec 01 §1.11 rule C1.
#include "dsv4/numerics/exact_sum.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace dsv4 {

namespace {
std::atomic<std::uint64_t> g_sums{0};
std::atomic<std::uint64_t> g_fallbacks{0};

constexpr int kFixedPointExponent = -1074;  // every finite double is an integer multiple of 2^-1074

// The exact sum as an integer N with sum = N · 2^-1074, held as base-2^32 digits: digit i weighs
// 2^(32 i − 1074). A finite double is m · 2^k · 2^-1074 with m < 2^53 and k ∈ [0, 2045] read from
// its bits (normal: m = 1.fraction · 2^52, k = biased exponent − 1; subnormal: m = fraction,
// k = 0), so it adds m · 2^(k mod 32) — at most 85 bits — to three digits. Each add moves a digit
// by less than 2^32, so int64 digits hold 2^31 terms before normalisation.
class FixedPointSum {
 public:
  static constexpr int kDigits = 2045 / 32 + 4;  // the highest term's three digits, and a carry digit

  void add(double t) {
    const auto bits = std::bit_cast<std::uint64_t>(t);
    const auto biased = static_cast<int>((bits >> 52) & 0x7FF);
    if (biased == 0x7FF) throw std::domain_error("exact sum of a non-finite term");
    std::uint64_t m = bits & ((std::uint64_t{1} << 52) - 1);
    if (biased != 0) m |= std::uint64_t{1} << 52;
    if (m == 0) return;
    const int k = biased == 0 ? 0 : biased - 1;
    const int digit = k / 32, o = k % 32;
    constexpr std::uint64_t kMask = 0xFFFFFFFFu;
    const std::uint64_t d0 = (m << o) & kMask;
    const std::uint64_t d1 = (o == 0 ? m >> 32 : m >> (32 - o)) & kMask;
    const std::uint64_t d2 = o == 0 ? 0 : m >> (64 - o);
    const std::int64_t sign = (bits >> 63) != 0 ? -1 : 1;
    digits_[digit] += sign * static_cast<std::int64_t>(d0);
    digits_[digit + 1] += sign * static_cast<std::int64_t>(d1);
    digits_[digit + 2] += sign * static_cast<std::int64_t>(d2);
    if (++adds_ == kMaxAdds) normalize();
  }

  // The exact sum rounded once (RNE) to a binary format of `precision` significant bits whose
  // smallest normal power of two is 2^min_exp (fp32: 24, −126; double: 53, −1022). Overflow of the
  // double result gives ±inf (ldexp), as RNE requires.
  double round(int precision, int min_exp) {
    normalize();
    const bool negative = digits_[kDigits - 1] < 0;
    if (negative) {
      for (std::int64_t& d : digits_) d = -d;
      normalize();
    }
    int top = kDigits - 1;
    while (top >= 0 && digits_[top] == 0) --top;
    if (top < 0) return 0.0;
    const int msb = 32 * top + std::bit_width(static_cast<std::uint64_t>(digits_[top])) - 1;
    const int unbiased = msb + kFixedPointExponent;
    const int quantum_exp = std::max(unbiased, min_exp) - (precision - 1);
    const int shift = quantum_exp - kFixedPointExponent;  // ≥ 0 for these formats
    std::uint64_t q = 0;
    for (int b = msb; b >= shift; --b) q = (q << 1) | bit(b);
    if (shift > 0 && bit(shift - 1) != 0 && (q % 2 != 0 || any_bit_below(shift - 1))) ++q;
    // q ≤ 2^precision, exact in double
    const double v = std::ldexp(static_cast<double>(q), quantum_exp);
    return negative ? -v : v;
  }

 private:
  static constexpr std::int64_t kMaxAdds = std::int64_t{1} << 30;

  // Every digit in [0, 2^32) but the last, which keeps the sign.
  void normalize() {
    for (int i = 0; i + 1 < kDigits; ++i) {
      const std::int64_t carry = digits_[i] >> 32;  // floor division by 2^32
      digits_[i] -= carry * (std::int64_t{1} << 32);
      digits_[i + 1] += carry;
    }
    adds_ = 0;
  }
  std::uint64_t bit(int b) const { return (static_cast<std::uint64_t>(digits_[b / 32]) >> (b % 32)) & 1u; }
  bool any_bit_below(int b) const {  // any of bits 0 … b − 1
    for (int i = 0; i < b / 32; ++i)
      if (digits_[i] != 0) return true;
    return b % 32 != 0 && (static_cast<std::uint64_t>(digits_[b / 32]) & ((std::uint64_t{1} << (b % 32)) - 1)) != 0;
  }

  std::int64_t digits_[kDigits] = {};
  std::int64_t adds_ = 0;
};

double exact_rounded_sum(std::span<const double> terms, int precision, int min_exp) {
  FixedPointSum acc;
  for (const double t : terms) acc.add(t);
  return acc.round(precision, min_exp);
}

// Rigorous double summation: s, a bound on |s − exact|, and whether s is exact — Knuth's TwoSum
// gives each addition's rounding error exactly (no FMA contraction: -ffp-contract=off), and when
// every one is zero s is the exact sum. Low-precision products (fp8 or bf16 weights times bf16
// activations) often sum exactly in double and, as often, exactly onto an fp32 midpoint, which no
// error interval can decide.
void double_sum_with_bound(std::span<const double> terms, double* s, double* bound, bool* exact) {
  double sum = 0.0;
  double abs_sum = 0.0;
  bool rounded = false;
  for (double t : terms) {
    const double a = sum + t;
    const double tb = a - sum;
    const double e = (sum - (a - tb)) + (t - tb);  // (sum + t) − a exactly; NaN after an overflow
    rounded = rounded || e != 0.0;
    sum = a;
    abs_sum += std::fabs(t);
  }
  *s = sum;
  *exact = !rounded && std::isfinite(sum);
  // Recursive summation error ≤ γ_{n−1} Σ|t_i| (Higham eq. 4.4). abs_sum itself is computed with
  // relative error ≤ γ_{n−1}; inflating by (1 + 2γ_n) and adding the smallest subnormal to cover
  // underflow keeps the bound rigorous.
  const double g = gamma_n(terms.size());
  *bound =
      g * abs_sum * (1.0 + 2.0 * g) + std::numeric_limits<double>::denorm_min() * static_cast<double>(terms.size());
}

// std::nextafter(d, ±inf) on the bit pattern (a library call otherwise, on every sum).
double next_away(double d, bool up) {
  if (!std::isfinite(d)) return std::nextafter(d, up ? INFINITY : -INFINITY);
  if (d == 0.0) return up ? std::numeric_limits<double>::denorm_min() : -std::numeric_limits<double>::denorm_min();
  const auto bits = std::bit_cast<std::uint64_t>(d);
  return std::bit_cast<double>((d > 0.0) == up ? bits + 1 : bits - 1);
}
}  // namespace

double gamma_n(std::size_t n) {
  const double nu = static_cast<double>(n) * kDoubleUnitRoundoff;
  return nu / (1.0 - nu);
}

bool fp32_rounding_determined(double s, double err, float* out) {
  if (!std::isfinite(s) || !std::isfinite(err)) return false;
  const float lo = static_cast<float>(s - err);  // double → float casts round to nearest even
  const float hi = static_cast<float>(s + err);
  // s − err and s + err are themselves rounded doubles: widen by one double ulp each.
  const float lo2 = static_cast<float>(next_away(s - err, false));
  const float hi2 = static_cast<float>(next_away(s + err, true));
  // Compared as bit patterns: an interval from −tiny to +tiny rounds to −0 and +0, which are not
  // one value (the exact sum's sign decides).
  const auto same = [](float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); };
  if (same(lo, hi) && same(lo2, lo) && same(hi2, hi)) {
    *out = lo;
    return true;
  }
  return false;
}

float exact_sum_to_fp32(std::span<const double> terms) {
  g_sums.fetch_add(1, std::memory_order_relaxed);
  double s = 0.0;
  double bound = 0.0;
  bool exact = false;
  double_sum_with_bound(terms, &s, &bound, &exact);
  if (exact) return static_cast<float>(s);  // the exact sum, rounded once (RNE)
  float r = 0.0f;
  if (fp32_rounding_determined(s, bound, &r)) {
    // RNE of the exact value. A zero result is +0 (the double sum starts at +0, so even an all −0
    // sum gives +0; the GPU kernels' round_c1_comp matches this).
    return r;
  }
  g_fallbacks.fetch_add(1, std::memory_order_relaxed);
  return static_cast<float>(exact_rounded_sum(terms, 24, -126));  // already 24 bits: the cast is exact
}

double exact_sum_to_double(std::span<const double> terms) { return exact_rounded_sum(terms, 53, -1022); }

ExactSumStats exact_sum_stats() { return {g_sums.load(), g_fallbacks.load()}; }

}  // namespace dsv4
