// spec 01 §1.3: the power-of-two scale helpers of the official kernels (fast_log2_ceil,
// fast_pow2, fast_round_scale), computed on fp32 bit patterns exactly as the kernels do.
#include <stdexcept>
#include <string>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

// spec 01 §1.3: log2ceil(t) = E_t − 127 + [M_t ≠ 0] (the sign bit is ignored, as the kernel's
// `(bits >> 23) & 0xFF` does). Equals ⌈log2 t⌉ for normal t > 0; −126 for subnormal t, −127 for 0.
int log2_ceil_fp32(float t) {
  const std::uint32_t bits = float_bits(t);
  const int exponent_field = static_cast<int>((bits >> 23) & 0xFFu);
  const std::uint32_t mantissa_field = bits & ((1u << 23) - 1u);
  return exponent_field - 127 + (mantissa_field != 0 ? 1 : 0);
}

// spec 01 §1.3: pow2(n) = the fp32 with bit pattern (n + 127) << 23, computed in 32-bit unsigned
// arithmetic (wrapping) exactly as the kernel's integer shift and reinterpret. 2^n for
// −126 ≤ n ≤ 127; the kernel's values just outside are kept, because log2ceil of a zero, inf or NaN
// amax reaches them: n = −127 → +0, n = 128 → +inf (amax = inf, e.g. after an in-place overflow),
// n = 129 → −0 (NaN amax). Anything further out cannot come from log2_ceil_fp32 and throws.
float pow2_fp32(int n) {
  if (n < -127 || n > 129) {
    throw std::domain_error("pow2_fp32: exponent " + std::to_string(n) + " outside [-127, 129]");
  }
  return float_from_bits(static_cast<std::uint32_t>(n + 127) << 23);
}

// spec 01 §1.3: fast_round_scale(amax, inv) = pow2(log2ceil(fl32(amax × inv))); the product is an
// fp32 multiplication (rounded once to fp32) before the exponent is read.
float round_scale(float amax, float inv) {
  const float product = amax * inv;
  return pow2_fp32(log2_ceil_fp32(product));
}

}  // namespace dsv4
