// spec 01 §1.1 (format table) and §1.2 (conversions): one exact RNE rounding for every format.
#include "dsv4/numerics/formats.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace dsv4 {

namespace {

// ldexp(x, k) as one multiplication by 2^k where 2^k is a normal double (k in [−1022, 1023]): the
// product is x·2^k rounded once, which is what ldexp returns (the same bits, without a library call
// per element: the conversions below run on every activation the reference quantises); ldexp itself
// for other k.
double scale2(double x, int k) {
  if (k < -1022 || k > 1023) return std::ldexp(x, k);
  return x * std::bit_cast<double>(static_cast<std::uint64_t>(k + 1023) << 52);
}

int exponent_all_ones(const MinifloatFormat& f) { return (1 << f.exponent_bits) - 1; }
std::uint32_t mantissa_all_ones(const MinifloatFormat& f) { return (1u << f.mantissa_bits) - 1u; }
std::uint32_t sign_bit(const MinifloatFormat& f) {
  return f.has_sign ? (1u << (f.exponent_bits + f.mantissa_bits)) : 0u;
}

// Largest biased exponent a finite value may use, and the largest mantissa field with it.
int max_finite_exponent(const MinifloatFormat& f) {
  if (f.ieee_specials) return exponent_all_ones(f) - 1;
  // e8m0: no mantissa, so the all-ones exponent is the NaN itself and 254 is the top finite one.
  if (f.nan_is_all_ones && f.mantissa_bits == 0) return exponent_all_ones(f) - 1;
  return exponent_all_ones(f);
}
std::uint32_t max_finite_mantissa(const MinifloatFormat& f) {
  if (f.nan_is_all_ones) return f.mantissa_bits == 0 ? 0u : mantissa_all_ones(f) - 1u;
  return mantissa_all_ones(f);
}

// Patterns without a sign bit for e8m0 have no subnormals: exponent field 0 is 2^-127.
bool has_subnormals(const MinifloatFormat& f) { return f.has_zero; }

}  // namespace

double max_finite(const MinifloatFormat& f) {
  const int e = max_finite_exponent(f);
  const double m = 1.0 + scale2(static_cast<double>(max_finite_mantissa(f)), -f.mantissa_bits);
  return scale2(m, e - f.bias);
}

double min_positive(const MinifloatFormat& f) {
  if (!has_subnormals(f)) return scale2(1.0, -f.bias);
  return scale2(1.0, 1 - f.bias - f.mantissa_bits);
}

double decode_minifloat(const MinifloatFormat& f, std::uint32_t bits) {
  const std::uint32_t mant = bits & mantissa_all_ones(f);
  const int exp = static_cast<int>((bits >> f.mantissa_bits) & static_cast<std::uint32_t>(exponent_all_ones(f)));
  const bool negative = (bits & sign_bit(f)) != 0;
  const double sign = negative ? -1.0 : 1.0;
  if (f.ieee_specials && exp == exponent_all_ones(f)) {
    if (mant == 0) return sign * std::numeric_limits<double>::infinity();
    return std::numeric_limits<double>::quiet_NaN();
  }
  if (f.nan_is_all_ones && exp == exponent_all_ones(f) && mant == mantissa_all_ones(f)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  if (!has_subnormals(f)) return scale2(1.0, exp - f.bias);  // e8m0
  if (exp == 0) return sign * scale2(static_cast<double>(mant), 1 - f.bias - f.mantissa_bits);
  const double significand = static_cast<double>((1u << f.mantissa_bits) | mant);
  return sign * scale2(significand, exp - f.bias - f.mantissa_bits);
}

namespace {

// The one rounding routine (spec 01 §1.2). `rounding` is RNE for every conversion of the spec;
// the directed modes exist only for CUDA's e8m0 scale conversion (encode_e8m0 below).
std::uint32_t round_to_format(const MinifloatFormat& f, double x, Overflow overflow, E8M0Rounding rounding) {
  const std::uint32_t sign = (std::signbit(x) && f.has_sign) ? sign_bit(f) : 0u;
  if (std::isnan(x)) {
    if (!f.has_nan)
      return max_finite_mantissa(f) | (static_cast<std::uint32_t>(max_finite_exponent(f)) << f.mantissa_bits);
    return f.canonical_nan;
  }
  if (!f.has_sign && std::signbit(x) && x != 0.0) {
    return f.canonical_nan;  // an unsigned format cannot hold a negative value
  }
  const double a = std::fabs(x);
  const std::uint32_t max_pattern =
      (static_cast<std::uint32_t>(max_finite_exponent(f)) << f.mantissa_bits) | max_finite_mantissa(f);
  auto overflowed = [&]() -> std::uint32_t {
    if (overflow == Overflow::kSaturateFinite || !f.has_nan) return sign | max_pattern;
    if (f.has_infinity) return sign | (static_cast<std::uint32_t>(exponent_all_ones(f)) << f.mantissa_bits);
    return sign | f.canonical_nan;
  };
  if (std::isinf(a)) return overflowed();
  if (a == 0.0) return f.has_zero ? sign : 0u;  // e8m0 has no zero: 2^-127 is its smallest pattern

  // The quantum (spacing) of the binade of a, limited below by the subnormal spacing.
  int e2 = 0;
  (void)std::frexp(a, &e2);  // a = fr * 2^e2 with fr in [0.5, 1): unbiased exponent e2 - 1
  const int min_exp = has_subnormals(f) ? 1 - f.bias : -f.bias;
  const int unbiased = std::max(e2 - 1, min_exp);
  const int quantum_exp = unbiased - f.mantissa_bits;
  // a / quantum is exact (power-of-two scaling of a double, far from the double range limits).
  const double scaled = scale2(a, -quantum_exp);
  const double floor_v = std::floor(scaled);
  const double frac = scaled - floor_v;  // exact
  double rounded = floor_v;
  // Directed modes act on the signed value: toward +inf rounds a negative magnitude down.
  const bool up_on_fraction = rounding == E8M0Rounding::kTowardPositiveInfinity && sign == 0u;
  if (rounding == E8M0Rounding::kNearestEven) {
    if (frac > 0.5 || (frac == 0.5 && std::fmod(floor_v, 2.0) != 0.0)) rounded = floor_v + 1.0;
  } else if (up_on_fraction && frac > 0.0) {
    rounded = floor_v + 1.0;
  }
  // e8m0 (no mantissa, no subnormals): all quanta below 2^-127 flush to the smallest pattern.
  if (rounded == 0.0) return f.has_zero ? sign : 0u;
  const double value = scale2(rounded, quantum_exp);
  if (value > max_finite(f)) return overflowed();
  // Re-derive the pattern of the (exactly representable) rounded value.
  int ve = 0;
  (void)std::frexp(value, &ve);
  int biased = (ve - 1) + f.bias;
  std::uint32_t mant;
  if (has_subnormals(f) && biased <= 0) {
    biased = 0;
    mant = static_cast<std::uint32_t>(scale2(value, f.bias - 1 + f.mantissa_bits));
  } else {
    const double significand = scale2(value, -(ve - 1) + f.mantissa_bits);  // in [2^M, 2^(M+1))
    mant = static_cast<std::uint32_t>(significand) & mantissa_all_ones(f);
  }
  return sign | (static_cast<std::uint32_t>(biased) << f.mantissa_bits) | mant;
}

}  // namespace

// spec 01 §1.2: round-to-nearest, ties-to-even on the exact value, then the overflow rule.
std::uint32_t encode_minifloat(const MinifloatFormat& f, double x, Overflow overflow) {
  return round_to_format(f, x, overflow, E8M0Rounding::kNearestEven);
}

float bf16_to_float(std::uint16_t b) {
  if ((b & 0x7F80u) == 0x7F80u && (b & 0x7Fu) != 0u) return static_cast<float>(decode_minifloat(kFormatBF16, b));
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);  // bf16 is fp32's top half
}

std::uint16_t double_to_bf16(double x) {
  // RNE of the double's 52 fraction bits to bf16's 7, on the bit pattern, where x and its rounding
  // are normal bf16 numbers (biased double exponent 897 … 1150 = unbiased −126 … 127).
  const auto bits = std::bit_cast<std::uint64_t>(x);
  const std::uint64_t magnitude = bits & ~(std::uint64_t{1} << 63);
  if ((magnitude >> 52) >= 897) {
    constexpr int kDrop = 52 - 7;
    const std::uint64_t odd = (magnitude >> kDrop) & 1u;
    const std::uint64_t rounded = (magnitude + ((std::uint64_t{1} << (kDrop - 1)) - 1 + odd)) >> kDrop << kDrop;
    const auto exponent = static_cast<int>(rounded >> 52);
    if (exponent <= 1150) {
      const std::uint32_t sign = (bits >> 63) != 0 ? 0x8000u : 0u;
      const auto bf_exponent = static_cast<std::uint32_t>(exponent - 1023 + 127);
      return static_cast<std::uint16_t>(sign | (bf_exponent << 7) |
                                        static_cast<std::uint32_t>((rounded >> kDrop) & 0x7Fu));
    }
  }
  return static_cast<std::uint16_t>(encode_minifloat(kFormatBF16, x, Overflow::kToSpecial));
}

// CUDA's __nv_cvt_float_to_e8m0 rounds toward zero or toward +inf; spec 01 §1.2 only ever
// converts exact powers of two, where all three rules agree. The directed modes follow CUDA's
// conversion exactly (cross-checked in tests/nvidia_formats_test.cpp): the sign is ignored (the
// magnitude is converted), ±inf gives 0xFE (satfinite) or 0xFF, NaN gives 0xFF, and magnitudes
// below 2^-127 (zero included) give 0x00, the smallest pattern. RNE keeps encode_minifloat's
// rule (a negative input is NaN).
std::uint8_t encode_e8m0(double x, E8M0Rounding rounding, Overflow overflow) {
  const double v = rounding == E8M0Rounding::kNearestEven ? x : std::fabs(x);
  return static_cast<std::uint8_t>(round_to_format(kFormatE8M0, v, overflow, rounding));
}

std::uint32_t float_bits(float x) { return std::bit_cast<std::uint32_t>(x); }
float float_from_bits(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint64_t double_bits(double x) { return std::bit_cast<std::uint64_t>(x); }

}  // namespace dsv4
