// Third-party truth for the number formats (spec 01 §1.1, §1.2): NVIDIA's host conversion
// functions from the CUDA toolkit headers (cuda_bf16.h, cuda_fp16.h, cuda_fp8.h, cuda_fp4.h),
// compiled here as plain host C++, against our decoders and encoders.
//
// - decode: every pattern of every format (2^16 for bf16/fp16, 256 for fp8/e8m0, 16 for fp4);
// - encode float32 → format: every rounding boundary of every format (the midpoints between
//   consecutive representable values, the representable values themselves, the overflow
//   threshold) with their ±1-ulp float neighbours and both signs, applied to every encoder; all
//   specials; and DSV4_XCHECK_RANDOM (default 10^8) seeded Philox float32 patterns, each
//   through every encoder.
//
// NaN conventions (see formats.hpp): patterns must be identical everywhere, except bf16 NaN
// (ours 0x7FC0 as PyTorch, NVIDIA 0x7FFF) where NaN-ness is compared, and decoded NaNs, where
// NaN-ness is compared (the float NaN payload is not part of any format).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp4.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace {

using dsv4::float_bits;
using dsv4::float_from_bits;

// ---- NVIDIA side ----
float nv_bf16_to_float(std::uint16_t b) {
  __nv_bfloat16_raw r;
  r.x = b;
  return __bfloat162float(__nv_bfloat16(r));
}
float nv_fp16_to_float(std::uint16_t b) {
  __half_raw r;
  r.x = b;
  return __half2float(__half(r));
}
float nv_e4m3_to_float(std::uint16_t b) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E4M3)));
}
float nv_e5m2_to_float(std::uint16_t b) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E5M2)));
}
float nv_e8m0_to_float(std::uint16_t b) {
  return __bfloat162float(__nv_bfloat16(__nv_cvt_e8m0_to_bf16raw(static_cast<__nv_fp8_storage_t>(b))));
}
float nv_e2m1_to_float(std::uint16_t b) {
  return __half2float(__half(__nv_cvt_fp4_to_halfraw(static_cast<__nv_fp4_storage_t>(b), __NV_E2M1)));
}

std::uint32_t nv_bf16(float x) { return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(x)).x; }
std::uint32_t nv_fp16(float x) { return static_cast<__half_raw>(__float2half_rn(x)).x; }
std::uint32_t nv_e4m3_sat(float x) { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3); }
std::uint32_t nv_e4m3_nosat(float x) { return __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3); }
std::uint32_t nv_e5m2_sat(float x) { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2); }
std::uint32_t nv_e5m2_nosat(float x) { return __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2); }
std::uint32_t nv_e2m1(float x) { return __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest); }
std::uint32_t nv_e8m0_rz_sat(float x) { return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundZero); }
std::uint32_t nv_e8m0_rz_nosat(float x) { return __nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundZero); }
std::uint32_t nv_e8m0_rp_sat(float x) { return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf); }
std::uint32_t nv_e8m0_rp_nosat(float x) { return __nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundPosInf); }

// ---- our side ----
using dsv4::E8M0Rounding;
using dsv4::Overflow;
std::uint32_t our_bf16(float x) { return dsv4::float_to_bf16(x); }
std::uint32_t our_fp16(float x) { return dsv4::float_to_fp16(x); }
std::uint32_t our_e4m3_sat(float x) { return dsv4::float_to_e4m3(x, Overflow::kSaturateFinite); }
std::uint32_t our_e4m3_nosat(float x) { return dsv4::float_to_e4m3(x, Overflow::kToSpecial); }
std::uint32_t our_e5m2_sat(float x) { return dsv4::float_to_e5m2(x, Overflow::kSaturateFinite); }
std::uint32_t our_e5m2_nosat(float x) { return dsv4::float_to_e5m2(x, Overflow::kToSpecial); }
std::uint32_t our_e2m1(float x) { return dsv4::float_to_e2m1(x); }
std::uint32_t our_e8m0_rz_sat(float x) {
  return dsv4::encode_e8m0(x, E8M0Rounding::kTowardZero, Overflow::kSaturateFinite);
}
std::uint32_t our_e8m0_rz_nosat(float x) {
  return dsv4::encode_e8m0(x, E8M0Rounding::kTowardZero, Overflow::kToSpecial);
}
std::uint32_t our_e8m0_rp_sat(float x) {
  return dsv4::encode_e8m0(x, E8M0Rounding::kTowardPositiveInfinity, Overflow::kSaturateFinite);
}
std::uint32_t our_e8m0_rp_nosat(float x) {
  return dsv4::encode_e8m0(x, E8M0Rounding::kTowardPositiveInfinity, Overflow::kToSpecial);
}

bool is_bf16_nan(std::uint32_t b) { return (b & 0x7F80u) == 0x7F80u && (b & 0x7Fu) != 0; }

struct Encoder {
  const char* name;
  std::uint32_t (*ours)(float);
  std::uint32_t (*theirs)(float);
  bool nan_ness_only;  // bf16: compare NaN-ness only for NaN outputs (formats.hpp)
};

constexpr Encoder kEncoders[] = {
    {"bf16 (RNE)", our_bf16, nv_bf16, true},
    {"fp16 (RNE)", our_fp16, nv_fp16, false},
    {"e4m3fn satfinite", our_e4m3_sat, nv_e4m3_sat, false},
    {"e4m3fn nosat", our_e4m3_nosat, nv_e4m3_nosat, false},
    {"e5m2 satfinite", our_e5m2_sat, nv_e5m2_sat, false},
    {"e5m2 nosat", our_e5m2_nosat, nv_e5m2_nosat, false},
    {"e2m1fn (RNE, satfinite)", our_e2m1, nv_e2m1, false},
    {"e8m0 toward-zero satfinite", our_e8m0_rz_sat, nv_e8m0_rz_sat, false},
    {"e8m0 toward-zero nosat", our_e8m0_rz_nosat, nv_e8m0_rz_nosat, false},
    {"e8m0 toward+inf satfinite", our_e8m0_rp_sat, nv_e8m0_rp_sat, false},
    {"e8m0 toward+inf nosat", our_e8m0_rp_nosat, nv_e8m0_rp_nosat, false},
};
constexpr std::size_t kNumEncoders = sizeof(kEncoders) / sizeof(kEncoders[0]);

bool same_encoding(const Encoder& e, std::uint32_t a, std::uint32_t b) {
  if (a == b) return true;
  return e.nan_ness_only && is_bf16_nan(a) && is_bf16_nan(b);
}

// Per-encoder tallies; the first few mismatches are kept for the report.
struct Tally {
  std::uint64_t compared[kNumEncoders] = {};
  std::uint64_t mismatches[kNumEncoders] = {};
  std::vector<std::string> examples;

  void check(std::size_t i, float x) {
    const Encoder& e = kEncoders[i];
    const std::uint32_t a = e.ours(x);
    const std::uint32_t b = e.theirs(x);
    ++compared[i];
    if (same_encoding(e, a, b)) return;
    ++mismatches[i];
    if (examples.size() < 40) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s: input 0x%08X (%.9g): ours 0x%02X, NVIDIA 0x%02X", e.name, float_bits(x),
                    static_cast<double>(x), a, b);
      examples.emplace_back(buf);
    }
  }
  void check_all(float x) {
    for (std::size_t i = 0; i < kNumEncoders; ++i) check(i, x);
  }
  void merge(const Tally& o) {
    for (std::size_t i = 0; i < kNumEncoders; ++i) {
      compared[i] += o.compared[i];
      mismatches[i] += o.mismatches[i];
    }
    for (const auto& s : o.examples) {
      if (examples.size() < 40) examples.push_back(s);
    }
  }
  void report(const char* what) const {
    std::uint64_t total_bad = 0;
    for (std::size_t i = 0; i < kNumEncoders; ++i) {
      std::printf("%s: %llu inputs compared, %llu mismatches [%s]\n", kEncoders[i].name,
                  static_cast<unsigned long long>(compared[i]), static_cast<unsigned long long>(mismatches[i]), what);
      total_bad += mismatches[i];
      EXPECT_GT(compared[i], 0u) << kEncoders[i].name;
    }
    for (const auto& s : examples) ADD_FAILURE() << s;
    EXPECT_EQ(total_bad, 0u);
  }
};

// ---- decoders: every pattern ----
struct Decoder {
  const char* name;
  std::uint32_t patterns;
  float (*ours)(std::uint16_t);
  float (*theirs)(std::uint16_t);
};
float our_bf16_dec(std::uint16_t b) { return dsv4::bf16_to_float(b); }
float our_fp16_dec(std::uint16_t b) { return dsv4::fp16_to_float(b); }
float our_e4m3_dec(std::uint16_t b) { return dsv4::e4m3_to_float(static_cast<std::uint8_t>(b)); }
float our_e5m2_dec(std::uint16_t b) { return dsv4::e5m2_to_float(static_cast<std::uint8_t>(b)); }
float our_e8m0_dec(std::uint16_t b) { return dsv4::e8m0_to_float(static_cast<std::uint8_t>(b)); }
float our_e2m1_dec(std::uint16_t b) { return dsv4::e2m1_to_float(static_cast<std::uint8_t>(b)); }

constexpr Decoder kDecoders[] = {
    {"bf16 decode", 1u << 16, our_bf16_dec, nv_bf16_to_float},
    {"fp16 decode", 1u << 16, our_fp16_dec, nv_fp16_to_float},
    {"e4m3fn decode", 256, our_e4m3_dec, nv_e4m3_to_float},
    {"e5m2 decode", 256, our_e5m2_dec, nv_e5m2_to_float},
    {"e8m0 decode", 256, our_e8m0_dec, nv_e8m0_to_float},
    {"e2m1fn decode", 16, our_e2m1_dec, nv_e2m1_to_float},
};

bool same_value(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return float_bits(a) == float_bits(b);  // distinguishes -0 from +0
}

TEST(NvidiaFormats, DecodeEveryPattern) {
  for (const Decoder& d : kDecoders) {
    std::uint64_t bad = 0;
    for (std::uint32_t p = 0; p < d.patterns; ++p) {
      const float a = d.ours(static_cast<std::uint16_t>(p));
      const float b = d.theirs(static_cast<std::uint16_t>(p));
      if (!same_value(a, b)) {
        ++bad;
        ADD_FAILURE() << d.name << ": pattern 0x" << std::hex << p << ": ours 0x" << float_bits(a) << ", NVIDIA 0x"
                      << float_bits(b);
      }
    }
    std::printf("%s: %u inputs compared, %llu mismatches\n", d.name, d.patterns, static_cast<unsigned long long>(bad));
  }
}

// ---- boundary inputs, derived from NVIDIA's own decoders ----
// The non-negative finite values of a format, ascending, plus the first value past the top
// (max + top quantum, or 2·max for e8m0) so that the overflow threshold is a midpoint too.
std::vector<double> grid(const Decoder& d, bool geometric) {
  std::vector<double> v;
  for (std::uint32_t p = 0; p < d.patterns; ++p) {
    const float f = d.theirs(static_cast<std::uint16_t>(p));
    if (std::isfinite(f) && !std::signbit(f)) v.push_back(f);
  }
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  const double top = v.back();
  const double prev = v[v.size() - 2];
  v.push_back(geometric ? 2.0 * top : top + (top - prev));
  return v;
}

void add_with_neighbours(std::vector<float>& out, double x) {
  const float f = static_cast<float>(x);
  if (static_cast<double>(f) != x) return;  // every midpoint used here is a float; guard anyway
  for (float s : {f, -f}) {
    out.push_back(s);
    out.push_back(std::nextafter(s, std::numeric_limits<float>::infinity()));
    out.push_back(std::nextafter(s, -std::numeric_limits<float>::infinity()));
  }
}

std::vector<float> boundary_inputs() {
  std::vector<float> out;
  for (std::size_t i = 0; i < sizeof(kDecoders) / sizeof(kDecoders[0]); ++i) {
    const bool geometric = std::string(kDecoders[i].name) == "e8m0 decode";
    const std::vector<double> v = grid(kDecoders[i], geometric);
    for (std::size_t k = 0; k < v.size(); ++k) {
      add_with_neighbours(out, v[k]);
      if (k + 1 < v.size()) add_with_neighbours(out, 0.5 * (v[k] + v[k + 1]));
    }
  }
  return out;
}

std::vector<float> special_inputs() {
  std::vector<std::uint32_t> bits = {
      0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u,                                         // ±0, ±inf
      0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FBFFFFFu, 0x7FFFFFFFu, 0xFFFFFFFFu,  // NaNs
      0x00000001u, 0x80000001u, 0x007FFFFFu, 0x807FFFFFu, 0x00400000u, 0x00000400u,               // subnormals
      0x00800000u, 0x80800000u, 0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F7F8000u, 0x7F7F7FFFu,               // FLT_MIN, FLT_MAX
  };
  std::vector<float> out;
  for (std::uint32_t b : bits) out.push_back(float_from_bits(b));
  // Every power of two of float32 (normal and subnormal) and its neighbours, both signs.
  for (int e = -149; e <= 127; ++e) add_with_neighbours(out, std::ldexp(1.0, e));
  return out;
}

TEST(NvidiaFormats, EncodeBoundariesAndSpecials) {
  Tally t;
  for (float x : boundary_inputs()) t.check_all(x);
  for (float x : special_inputs()) t.check_all(x);
  t.report("boundaries+specials");
}

// ---- random float32 patterns (Philox, seeded) ----
std::uint64_t random_count() {
  const char* s = std::getenv("DSV4_XCHECK_RANDOM");
  return s ? std::strtoull(s, nullptr, 10) : 100000000ull;
}

// Word 0 and 1 are raw patterns (covering the whole float range, NaNs and subnormals
// included); words 2 and 3 keep sign and mantissa but move the exponent into 2^-32..2^31,
// where the narrow formats have their grids.
float random_input(const dsv4::PhiloxCounter& w, std::uint64_t lane) {
  std::uint32_t b = w[lane];
  if (lane >= 2) {
    const std::uint32_t e = 95u + ((b >> 23) & 0x3Fu);
    b = (b & 0x807FFFFFu) | (e << 23);
  }
  return float_from_bits(b);
}

TEST(NvidiaFormats, EncodeRandomFloats) {
  const std::uint64_t n = random_count();
  // Every random pattern goes through every encoder: n inputs, n * 11 comparisons.
  const dsv4::CounterRng rng(0xD5F4'0001ull, dsv4::stream_id("nvidia_formats_test.random"));
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Tally> tallies(threads);
  std::vector<std::thread> pool;
  const std::uint64_t calls = (n + 3) / 4;  // four floats per Philox call
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const std::uint64_t begin = calls * t / threads;
      const std::uint64_t end = calls * (t + 1) / threads;
      for (std::uint64_t c = begin; c < end; ++c) {
        const dsv4::PhiloxCounter w = rng.words(c);
        for (std::uint64_t lane = 0; lane < 4 && 4 * c + lane < n; ++lane) {
          tallies[t].check_all(random_input(w, lane));
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  Tally all;
  for (const auto& t : tallies) all.merge(t);
  std::uint64_t total = 0;
  for (auto c : all.compared) total += c;
  EXPECT_EQ(total, n * kNumEncoders);
  all.report("random");
}

}  // namespace
