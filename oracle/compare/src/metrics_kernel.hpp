// Internal: the one-pass metrics kernel (metrics.hpp). One source, metrics_kernel_body.inc, is
// compiled three times — portable (metrics_portable.cpp), AVX2 and AVX-512 (metrics_avx2.cpp,
// metrics_avx512.cpp, under `#pragma GCC target`) — and written with GCC vector extensions over
// 8 lanes, whose operations are element-wise IEEE operations: every target computes the same
// bits. Those files include no standard-library header (only this one, which includes <cstdint>
// for its typedefs), so no inline function carrying wide instructions can leak into the program.
//
// Summation order (fixed, independent of the target, the thread count and the data): the
// elements are cut into chunks of kChunk and each chunk into blocks of kBlock, from element 0.
// Inside a block, lane l (0…7) adds the terms of elements 8j + l in increasing j, starting from
// +0; the block's sum is ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); a chunk's partial sum
// adds its block sums in order, starting from +0. Chunk partials are summed exactly by the caller
// (exact_sum_to_double), so the result does not depend on how chunks meet threads. A sum of
// non-negative terms is thus within γ_(512+3+15) ≈ 5.9e-14 relative of the sum of its rounded terms.
#pragma once

#include <cstdint>

namespace dsv4::compare_detail {

inline constexpr std::int64_t kBlock = 4096;         // elements per block (a multiple of 16)
inline constexpr std::int64_t kChunk = 16 * kBlock;  // elements per chunk: threads split here
inline constexpr int kLanes = 8;
inline constexpr int kBuckets = 34;  // = compare::kUlpBuckets
inline constexpr int kSums = 6;      // partial sums per chunk, in this order:
enum SumIndex { kSumErr2 = 0, kSumCand2, kSumRef2, kSumBias, kSumUlp, kSumUlp2 };

enum class Storage : std::uint8_t { kF64, kF32, kBF16 };

// The ULP grid in the form the kernel uses (see ulp.hpp for the definitions):
//   |x| ≥ min_normal: ordinal = RNE((bits(|x|) − exp_offset) / 2^shift) (carry into the exponent
//                     field is the correct rounding up to the next binade);
//   |x| < min_normal: ordinal = RNE(|x| · sub_scale) (the subnormal spacing is 1 / sub_scale);
// then clamped to clamp_ordinal. For fp64 the ordinal is bits(|x|): shift 0, exp_offset 0,
// min_normal 0.
struct KernelGrid {
  int shift;                    // 52 − M
  std::uint64_t exp_offset;     // (1023 − bias) << 52
  double min_normal;            // 2^emin (0 for fp64)
  double sub_scale;             // 2^(M − emin) (1 for fp64, unused)
  std::uint64_t max_finite;     // ordinal of the largest finite value
  std::uint64_t clamp_ordinal;  // max_finite + 1 (format with ∞) or max_finite (saturating)
  std::int64_t ulp_field_min;   // 1023 + emin: biased exponents are clamped to [min, max] …
  std::int64_t ulp_field_max;   // 1023 + emax
  int mantissa_bits;            // … and ulp(x) = 2^(clamped − 1023 − M)
  int cand_sign_shift;          // storage bits − 1: sign position, when the ordinal is the bits
};

struct KernelArgs {
  const void* cand;    // candidate storage of element `first`
  const double* ref;   // reference of element `first`
  std::int64_t first;  // global index of element 0 of these pointers (a multiple of kChunk)
  std::int64_t count;  // elements
  Storage storage;
  KernelGrid grid;
  double rel_floor;  // > 0
  double scale;      // power of two applied to the summed terms (1 normally)
  double* partials;  // [kSums][n_chunks_total] with stride `partial_stride`, at chunk first / kChunk
  std::int64_t partial_stride;
  std::uint8_t* chunk_excluded;  // per chunk (same offset as partials): 1 when it had excluded lanes
};

// Per-thread running results (maxima keep the smallest index among equal values).
struct KernelState {
  double max_abs = 0.0;
  std::int64_t max_abs_index = -1;
  double max_rel = 0.0;
  std::int64_t max_rel_index = -1;
  std::uint64_t max_ulp = 0;
  std::int64_t max_ulp_index = -1;
  double ref_max_abs = 0.0;
  std::int64_t hist[kBuckets] = {};
  std::int64_t off_grid = 0;
  std::int64_t first_off_grid = -1;
  std::int64_t excluded = 0;  // elements where the candidate or the reference is not finite
};

using KernelFn = void (*)(const KernelArgs& args, KernelState& state);

// `from_bits`: the candidate's storage is the grid's format, its ordinal is its bit pattern (else
// the candidate is rounded like the reference and checked to be on the grid). `scaled`: multiply
// the summed terms by args.scale (the overflow / underflow fallback).
KernelFn portable_kernel(Storage storage, bool from_bits, bool scaled);
KernelFn avx2_kernel(Storage storage, bool from_bits, bool scaled);
KernelFn avx512_kernel(Storage storage, bool from_bits, bool scaled);

}  // namespace dsv4::compare_detail
