// Number formats of DeepSeek-V4 (spec 01 §1.1, §1.2): bf16, fp16, fp8 e4m3fn, fp8 e5m2,
// e8m0 (ue8m0 scales) and fp4 e2m1.
//
// Every narrowing conversion is defined by one routine, `encode_minifloat`, which rounds the
// exact value of a double once (round-to-nearest, ties-to-even). Encoding from float widens to
// double first; that widening is exact, so there is never a double rounding. The one exception
// in code, not in result: bf16 (on every activation of the official mode) has a bit-level fast
// path for normal values, tested equal to the routine on every pattern and every midpoint.
#pragma once

#include <cstdint>
#include <string_view>

namespace dsv4 {

// Overflow behaviour of a narrowing conversion (spec 01 §1.2).
enum class Overflow {
  kSaturateFinite,  // CUDA satfinite: beyond max finite → ±max finite (the official kernels' cast)
  kToSpecial,       // IEEE / PyTorch: → ±inf where the format has one, else NaN (e4m3fn)
};

// A binary minifloat layout: 1 sign bit (unless unsigned), E exponent bits, M mantissa bits.
struct MinifloatFormat {
  std::string_view name;
  int exponent_bits;
  int mantissa_bits;
  int bias;
  bool has_sign;
  bool has_infinity;            // IEEE-style: all-ones exponent with zero mantissa is ±inf
  bool has_nan;                 // some pattern is NaN
  bool nan_is_all_ones;         // NaN only where every exponent and mantissa bit is 1 (e4m3fn, e8m0)
  bool ieee_specials;           // all-ones exponent is reserved for inf/NaN (fp16, bf16, e5m2)
  bool has_zero;                // e8m0 has no zero
  std::uint16_t canonical_nan;  // the NaN pattern this library writes
};

// Canonical NaNs (what a NaN input, or e4m3fn/e8m0 overflow without saturation, encodes to):
// NVIDIA's host conversions (cuda_fp16.h, cuda_fp8.h; checked in tests/nvidia_formats_test.cpp)
// write fp16 0x7FFF, e4m3fn 0x7F, e5m2 0x7F, e8m0 0xFF, whatever the input NaN's sign; we use
// the same patterns. bf16 keeps PyTorch's 0x7FC0 (NVIDIA's __float2bfloat16 writes 0x7FFF): the
// cross-check compares NaN-ness only there. e2m1 has no NaN: NaN encodes to +6 (0x7), as CUDA.

inline constexpr MinifloatFormat kFormatBF16{"bf16", 8, 7, 127, true, true, true, false, true, true, 0x7FC0};
inline constexpr MinifloatFormat kFormatFP16{"fp16", 5, 10, 15, true, true, true, false, true, true, 0x7FFF};
inline constexpr MinifloatFormat kFormatE4M3{"e4m3fn", 4, 3, 7, true, false, true, true, false, true, 0x7F};
inline constexpr MinifloatFormat kFormatE5M2{"e5m2", 5, 2, 15, true, true, true, false, true, true, 0x7F};
inline constexpr MinifloatFormat kFormatE8M0{"e8m0", 8, 0, 127, false, false, true, true, false, false, 0xFF};
inline constexpr MinifloatFormat kFormatE2M1{"e2m1fn", 2, 1, 1, true, false, false, false, false, true, 0};

// Largest finite magnitude of a format.
double max_finite(const MinifloatFormat& f);
// Smallest positive magnitude (subnormal if the format has subnormals).
double min_positive(const MinifloatFormat& f);

// Exact value of a bit pattern (NaN for NaN patterns). Every pattern of every format above.
double decode_minifloat(const MinifloatFormat& f, std::uint32_t bits);
// Round the exact value x once to the nearest pattern, ties to even.
std::uint32_t encode_minifloat(const MinifloatFormat& f, double x, Overflow overflow);

// Rounding of the e8m0 scale conversion, which is not round-to-nearest in CUDA. The directed
// modes convert |x| exactly like CUDA's __nv_cvt_float_to_e8m0 (see formats.cpp).
enum class E8M0Rounding { kTowardZero, kTowardPositiveInfinity, kNearestEven };
std::uint8_t encode_e8m0(double x, E8M0Rounding rounding, Overflow overflow);

// ---- named conversions (thin wrappers; the one rounding routine above does the work) ----
// bf16 ↔ float/double is on every activation of the official mode: both have a bit-level fast
// path for normal values, equal to decode_minifloat / encode_minifloat by test
// (formats_test BF16FastPathsEqualTheGeneralRoutine); everything else takes the general routine.
float bf16_to_float(std::uint16_t b);
inline float fp16_to_float(std::uint16_t b) { return static_cast<float>(decode_minifloat(kFormatFP16, b)); }
inline float e4m3_to_float(std::uint8_t b) { return static_cast<float>(decode_minifloat(kFormatE4M3, b)); }
inline float e5m2_to_float(std::uint8_t b) { return static_cast<float>(decode_minifloat(kFormatE5M2, b)); }
inline float e8m0_to_float(std::uint8_t b) { return static_cast<float>(decode_minifloat(kFormatE8M0, b)); }
inline float e2m1_to_float(std::uint8_t b) { return static_cast<float>(decode_minifloat(kFormatE2M1, b & 0xFu)); }

std::uint16_t double_to_bf16(double x);
inline std::uint16_t float_to_bf16(float x) { return double_to_bf16(x); }
inline std::uint16_t double_to_fp16(double x) {
  return static_cast<std::uint16_t>(encode_minifloat(kFormatFP16, x, Overflow::kToSpecial));
}
inline std::uint16_t float_to_fp16(float x) { return double_to_fp16(x); }
// fp8 e4m3fn: the official kernels saturate (satfinite); PyTorch's .to() gives NaN on overflow.
inline std::uint8_t double_to_e4m3(double x, Overflow o = Overflow::kSaturateFinite) {
  return static_cast<std::uint8_t>(encode_minifloat(kFormatE4M3, x, o));
}
inline std::uint8_t float_to_e4m3(float x, Overflow o = Overflow::kSaturateFinite) { return double_to_e4m3(x, o); }
inline std::uint8_t double_to_e5m2(double x, Overflow o = Overflow::kSaturateFinite) {
  return static_cast<std::uint8_t>(encode_minifloat(kFormatE5M2, x, o));
}
inline std::uint8_t float_to_e5m2(float x, Overflow o = Overflow::kSaturateFinite) { return double_to_e5m2(x, o); }
// fp4 e2m1fn has no inf/NaN: overflow always saturates to ±6; NaN input encodes as +6 (CUDA's choice).
inline std::uint8_t double_to_e2m1(double x) {
  return static_cast<std::uint8_t>(encode_minifloat(kFormatE2M1, x, Overflow::kSaturateFinite));
}
inline std::uint8_t float_to_e2m1(float x) { return double_to_e2m1(x); }

// Round to nearest even in bf16 and return the value (the common "bf16(x)" of the spec).
inline float round_bf16(double x) { return bf16_to_float(double_to_bf16(x)); }
inline float round_bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

// Bit casts between float and its pattern.
std::uint32_t float_bits(float x);
float float_from_bits(std::uint32_t bits);
std::uint64_t double_bits(double x);

}  // namespace dsv4
