// Properties of every encoder (spec 01 §1.2, RNE on the exact value): monotonicity,
// decode∘encode idempotence, encode∘decode = id on non-NaN patterns, and the half-quantum
// error bound.
#include <rapidcheck.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {
namespace {

struct Fmt {
  const MinifloatFormat* f;
  Overflow overflow;
};
// Saturating encoders, plus the IEEE ones whose overflow (inf) keeps the order. e8m0 is drawn
// non-negative (a negative value is NaN there: an unsigned format).
const Fmt kFmts[] = {
    {&kFormatBF16, Overflow::kToSpecial},      {&kFormatFP16, Overflow::kToSpecial},
    {&kFormatE4M3, Overflow::kSaturateFinite}, {&kFormatE5M2, Overflow::kSaturateFinite},
    {&kFormatE5M2, Overflow::kToSpecial},      {&kFormatE8M0, Overflow::kSaturateFinite},
    {&kFormatE2M1, Overflow::kSaturateFinite},
};

// A double with a random sign and mantissa and an exponent from 4 below the format's smallest
// value to 2 above its largest (covers subnormals, flush to zero and overflow).
double draw(const MinifloatFormat& f) {
  const int lo = std::ilogb(min_positive(f)) - 4;
  const int hi = std::ilogb(max_finite(f)) + 2;
  const auto mant = *rc::gen::arbitrary<std::uint64_t>();
  const int exp = *rc::gen::inRange(lo, hi + 1);
  const bool neg = *rc::gen::arbitrary<bool>();
  const double m = 1.0 + static_cast<double>(mant >> 12) * 0x1p-52;
  const double x = (neg && f.has_sign ? -1.0 : 1.0) * std::ldexp(m, exp);
  // Sometimes a value of the format itself, or a midpoint of two neighbours, exactly.
  switch (*rc::gen::inRange(0, 4)) {
    case 0: {
      const double v = decode_minifloat(f, encode_minifloat(f, x, Overflow::kSaturateFinite));
      return v;
    }
    case 1: {
      const double v = decode_minifloat(f, encode_minifloat(f, x, Overflow::kSaturateFinite));
      const double q = std::ldexp(1.0, std::max(std::ilogb(v), f.has_zero ? 1 - f.bias : -f.bias) - f.mantissa_bits);
      return v + q / 2;  // exact: one more bit than the format
    }
    default:
      return x;
  }
}

// Draws per format per RapidCheck case (1000 cases in CI): 10,000 per format and property.
constexpr int kRepeats = 10;

double value(const Fmt& f, double x) { return decode_minifloat(*f.f, encode_minifloat(*f.f, x, f.overflow)); }

void encoders_are_monotone() {
  for (int rep = 0; rep < kRepeats; ++rep)
    for (const Fmt& f : kFmts) {
      double x = draw(*f.f);
      double y = *rc::gen::inRange(0, 2) == 0 ? std::nextafter(x, INFINITY) : draw(*f.f);
      if (y < x) std::swap(x, y);
      RC_ASSERT(value(f, x) <= value(f, y));
    }
}

void decode_encode_is_idempotent() {
  for (int rep = 0; rep < kRepeats; ++rep)
    for (const Fmt& f : kFmts) {
      const double once = value(f, draw(*f.f));
      RC_ASSERT(!std::isnan(once));
      const double twice = value(f, once);
      RC_ASSERT(std::bit_cast<std::uint64_t>(once) == std::bit_cast<std::uint64_t>(twice));
    }
}

void encode_of_decode_is_identity() {
  for (int rep = 0; rep < kRepeats; ++rep)
    for (const Fmt& f : kFmts) {
      const int bits = (f.f->has_sign ? 1 : 0) + f.f->exponent_bits + f.f->mantissa_bits;
      const auto p = *rc::gen::inRange<std::uint32_t>(0, 1u << bits);
      const double v = decode_minifloat(*f.f, p);
      if (std::isnan(v)) continue;
      if (std::isinf(v) && f.overflow == Overflow::kSaturateFinite) continue;  // inf saturates: not a round trip
      RC_ASSERT(encode_minifloat(*f.f, v, f.overflow) == p);
    }
}

// |value(enc(x)) − x| ≤ half the spacing of x's binade, for min_positive ≤ |x| ≤ max_finite.
// The spacing is 2^(max(floor(log2|x|), emin) − M): the grid of [2^e, 2^(e+1)], both ends
// included, or the subnormal grid (spec 01 §1.1).
void error_at_most_half_a_quantum() {
  for (int rep = 0; rep < kRepeats; ++rep)
    for (const Fmt& f : kFmts) {
      const double x = draw(*f.f);
      if (std::fabs(x) > max_finite(*f.f)) continue;
      if (!f.f->has_zero && std::fabs(x) < min_positive(*f.f)) continue;
      const int emin = f.f->has_zero ? 1 - f.f->bias : -f.f->bias;
      const int e = std::max(std::ilogb(x), emin);
      const double half_quantum = std::ldexp(1.0, e - f.f->mantissa_bits - 1);
      RC_ASSERT(std::fabs(value(f, x) - x) <= half_quantum);
    }
}

}  // namespace

void register_formats_properties(Registry& r) {
  r.add_rc("formats.monotone", "formats", "every encoder is monotone (bf16, fp16, e4m3, e5m2, e8m0, e2m1)", 1000,
           encoders_are_monotone);
  r.add_rc("formats.idempotent", "formats", "decode(encode(decode(encode(x)))) = decode(encode(x)), bit for bit", 1000,
           decode_encode_is_idempotent);
  r.add_rc("formats.round_trip", "formats", "encode(decode(p)) = p for every non-NaN bit pattern p", 1000,
           encode_of_decode_is_identity);
  r.add_rc("formats.half_quantum", "formats", "|decode(encode(x)) - x| <= half the spacing of x's binade (RNE)", 1000,
           error_at_most_half_a_quantum);
}

}  // namespace dsv4::props
