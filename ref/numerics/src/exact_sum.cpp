// spec 01 §1.11 rule C1.
#include "dsv4/numerics/exact_sum.hpp"

#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "dsv4/numerics/multiprecision.hpp"

namespace dsv4 {

namespace {
std::atomic<std::uint64_t> g_sums{0};
std::atomic<std::uint64_t> g_fallbacks{0};

constexpr int kFixedPointExponent = -1074;  // every finite double is an integer multiple of 2^-1074

// The exact sum as an integer N with sum = N · 2^-1074.
BigInt exact_fixed_point_sum(std::span<const double> terms) {
  BigInt total = 0;
  for (double t : terms) {
    if (!std::isfinite(t)) throw std::domain_error("exact sum of a non-finite term");
    if (t == 0.0) continue;
    int e = 0;
    const double fr = std::frexp(t, &e);  // t = fr · 2^e, |fr| in [0.5, 1)
    // t = m · 2^(e − 53) with m an integer of at most 53 bits.
    auto m = static_cast<std::int64_t>(std::ldexp(fr, 53));
    int shift = e - 53 - kFixedPointExponent;
    if (shift < 0) {  // a subnormal t: m · 2^shift is still an integer, so the division is exact
      m /= std::int64_t{1} << -shift;
      shift = 0;
    }
    BigInt term = m;
    term <<= shift;
    total += term;
  }
  return total;
}

// Round N · 2^-1074 once (RNE) to a binary format with `precision` significant bits and minimum
// normal exponent `min_exp` (the exponent of the smallest normal power of two).
double round_fixed_point(const BigInt& n, int precision, int min_exp) {
  if (n == 0) return 0.0;
  const bool negative = n < 0;
  const BigInt a = negative ? BigInt(-n) : n;
  const int msb = static_cast<int>(boost::multiprecision::msb(a));  // value in [2^msb, 2^(msb+1)) · 2^-1074
  const int unbiased = msb + kFixedPointExponent;
  const int quantum_exp = std::max(unbiased, min_exp) - (precision - 1);
  const int shift = quantum_exp - kFixedPointExponent;  // ≥ 0 for the formats used here
  BigInt q = a >> shift;
  const BigInt rem = a - (q << shift);
  if (shift > 0) {
    const BigInt half = BigInt(1) << (shift - 1);
    if (rem > half || (rem == half && (q & 1) != 0)) q += 1;
  }
  // q < 2^(precision + 1), exact in double; ldexp overflows to inf as RNE requires.
  const double v = std::ldexp(static_cast<double>(q), quantum_exp);
  return negative ? -v : v;
}

// Rigorous double summation: s and a bound on |s − exact|.
void double_sum_with_bound(std::span<const double> terms, double* s, double* bound) {
  double sum = 0.0;
  double abs_sum = 0.0;
  for (double t : terms) {
    sum += t;
    abs_sum += std::fabs(t);
  }
  *s = sum;
  // Recursive summation error ≤ γ_{n−1} Σ|t_i| (Higham eq. 4.4). abs_sum itself is computed with
  // relative error ≤ γ_{n−1}; inflating by (1 + 2γ_n) and adding the smallest subnormal to cover
  // underflow keeps the bound rigorous.
  const double g = gamma_n(terms.size());
  *bound =
      g * abs_sum * (1.0 + 2.0 * g) + std::numeric_limits<double>::denorm_min() * static_cast<double>(terms.size());
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
  const float lo2 = static_cast<float>(std::nextafter(s - err, -std::numeric_limits<double>::infinity()));
  const float hi2 = static_cast<float>(std::nextafter(s + err, std::numeric_limits<double>::infinity()));
  if (lo == hi && lo2 == lo && hi2 == hi) {
    *out = lo;
    return true;
  }
  return false;
}

float exact_sum_to_fp32(std::span<const double> terms) {
  g_sums.fetch_add(1, std::memory_order_relaxed);
  double s = 0.0;
  double bound = 0.0;
  double_sum_with_bound(terms, &s, &bound);
  float r = 0.0f;
  if (fp32_rounding_determined(s, bound, &r)) {
    // RNE of the exact value; a zero result keeps the sign rule of IEEE sums (+0 unless all −0).
    return r;
  }
  g_fallbacks.fetch_add(1, std::memory_order_relaxed);
  const BigInt n = exact_fixed_point_sum(terms);
  if (n == 0) return 0.0f;
  return static_cast<float>(round_fixed_point(n, 24, -126));
}

double exact_sum_to_double(std::span<const double> terms) {
  const BigInt n = exact_fixed_point_sum(terms);
  return round_fixed_point(n, 53, -1022);
}

ExactSumStats exact_sum_stats() { return {g_sums.load(), g_fallbacks.load()}; }

}  // namespace dsv4
