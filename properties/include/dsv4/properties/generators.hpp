// RapidCheck generators shared by the property suites and the plugin fuzzers.
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <vector>

namespace dsv4::props {

// One bf16 value (as float): mostly sign · (1 + m/128) · 2^e with e in [lo, hi], sometimes zero,
// and, when `any_pattern`, sometimes any finite bf16 pattern (subnormals and extremes included).
rc::Gen<float> gen_bf16(int lo, int hi, bool any_pattern = true);

// rows × cols bf16 values drawn with gen_bf16(lo, lo + span) for a drawn lo ∈ [−40, 30) and
// span ∈ [0, 25): one block of magnitudes per call, subnormals to 2^54.
std::vector<float> gen_bf16_rows(std::int64_t rows, std::int64_t cols);

// n fp32 values k·2^−shift with k uniform in [−2^bits, 2^bits] (exact fp32 numbers when bits ≤ 24).
std::vector<float> gen_fixed_point(std::int64_t n, int bits, int shift);

}  // namespace dsv4::props
