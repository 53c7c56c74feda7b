// Device helpers for the number formats and block quantisers of ref/spec/01-numerics.md
// §1.2–§1.5, usable by any kernel of dsv4_gpu: the quantisers' constants as exact fp32 bit patterns,
// the exponent-bit scale rounding, exact decoding of e4m3 / e2m1 codes, RNE bf16 rounding, the
// reference's clamp semantics and a warp max-reduction (exact, order-free).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace dsv4::gpu::common {

// The constants of dsv4/numerics/quant.hpp, as exact fp32 bit patterns (hex floats).
constexpr float kInvFp8Max = 0x1.24924ap-9f;  // fl32(1/448) = 0x3B124925
constexpr float kInvFp4Max = 0x1.555556p-3f;  // fl32(1/6) = 0x3E2AAAAB
constexpr float kFp8Max = 448.0f;
constexpr float kFp4Max = 6.0f;
constexpr float kActQuantAmaxFloor = 1e-4f;   // fl32(1e-4) = 0x38D1B717 (§1.4 step 1)
constexpr float kFp4AmaxFloor = 0x1.8p-124f;  // 6 × 2^-126 (§1.5 step 1)

constexpr unsigned kFullMask = 0xFFFFFFFFu;

// ---- spec 01 §1.3: exponent-bit helpers ----
// E_t − 127 + [M_t ≠ 0] for fp32 t > 0.
__device__ __forceinline__ int log2_ceil_fp32(float t) {
  const std::uint32_t b = __float_as_uint(t);
  return static_cast<int>((b >> 23) & 0xFFu) - 127 + ((b & 0x7FFFFFu) != 0u ? 1 : 0);
}
// The fp32 whose bit pattern is (n + 127) << 23, i.e. 2^n, −126 ≤ n ≤ 127.
__device__ __forceinline__ float pow2_fp32(int n) { return __uint_as_float(static_cast<std::uint32_t>(n + 127) << 23); }
// pow2(log2ceil(fl32(amax × inv))): the product is one fp32 multiplication (no FMA with --fmad=false).
__device__ __forceinline__ float round_scale(float amax, float inv) { return pow2_fp32(log2_ceil_fp32(amax * inv)); }
// E8M0 byte of a power-of-two fp32 scale: its biased exponent.
__device__ __forceinline__ std::uint8_t e8m0_of_pow2(float s) {
  return static_cast<std::uint8_t>((__float_as_uint(s) >> 23) & 0xFFu);
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Exact fp32 value of an e4m3fn code (0x7F / 0xFF are NaN).
__device__ __forceinline__ float e4m3_to_float(std::uint8_t q) {
  const std::uint32_t sign = static_cast<std::uint32_t>(q & 0x80u) << 24;
  const std::uint32_t e = (q >> 3) & 0xFu;
  const std::uint32_t m = q & 0x7u;
  if (e == 0xFu && m == 0x7u) return __uint_as_float(sign | 0x7FC00000u);
  if (e == 0u) {
    const float mag = static_cast<float>(m) * 0x1p-9f;  // subnormal: M × 2^-9, exact
    return __uint_as_float(sign | __float_as_uint(mag));
  }
  return __uint_as_float(sign | ((e - 7u + 127u) << 23) | (m << 20));
}

// Exact fp32 value of an e8m0 scale byte (spec 01 §1.1): 2^(c − 127); code 0 is 2^-127 (an fp32
// subnormal: e8m0 has no zero), 255 is NaN.
__device__ __forceinline__ float e8m0_to_float(std::uint8_t c) {
  if (c == 0xFFu) return __uint_as_float(0x7FC00000u);
  if (c == 0u) return __uint_as_float(0x00400000u);  // 2^-127
  return __uint_as_float(static_cast<std::uint32_t>(c) << 23);
}

// Exact fp32 value of an e2m1fn code (low nibble).
__device__ __forceinline__ float e2m1_to_float(std::uint8_t q) {
  const std::uint32_t sign = static_cast<std::uint32_t>(q & 0x8u) << 28;
  const std::uint32_t e = (q >> 1) & 0x3u;
  const std::uint32_t m = q & 0x1u;
  const std::uint32_t mag = e == 0u ? (m != 0u ? 0x3F000000u : 0u) : (((e - 1u + 127u) << 23) | (m << 22));
  return __uint_as_float(sign | mag);
}

__device__ __forceinline__ float round_to_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// min(max(v, lo), hi) with std::max / std::min semantics (a NaN v stays NaN, as in the reference).
__device__ __forceinline__ float clamp_std(float v, float lo, float hi) {
  const float m = v < lo ? lo : v;
  return hi < m ? hi : m;
}

}  // namespace dsv4::gpu::common
