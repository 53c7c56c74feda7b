// Linear-layer kernels (spec 01 §1.6–§1.8), bit-exact with the official-mode reference
// (ref/model/src/linear.cpp) — see dsv4/gpu/linear.hpp for the arithmetic. Two kernels give the same
// bits: the tiled kernel on the FP64 tensor cores ("The tiled kernel" below: from 8 rows, no per-row
// weight blocks) and the warp kernel (fewer rows, per-row weight blocks, and the elements the tiled
// kernel leaves undecided).
//
// The warp kernel: one warp per output element (m, n), grid-stride over the rows × N elements (the loop is
// warp-uniform: every lane of a warp runs the same iterations). Lane l takes the k ≡ l (mod 32) terms
// of each sum; the lanes' compensated parts are merged by butterflies (a fixed tree, whatever the
// grid) and lane 0 rounds, accumulates the quantised kinds' blocks in increasing order and writes.
// No shared memory, no atomics, nothing crosses outputs: an element's bits depend on row m of x and
// row n of the weight alone, never on the batch, the element's position or the launch.
//
// Exactness of the products (all formed in double, then summed with TwoSum errors kept):
// - bf16 × bf16 (kBF16): 8-bit significands, a 16-bit product; |v| < 2^128 and ≥ 2^-133 (bf16
//   subnormals), so products lie in [2^-266, 2^256) — inside double's normal range: exact.
// - fp32 × fp32 (kFP32): 24-bit significands, a 48-bit product ≤ 53 bits; |v| in [2^-149, 2^128),
//   products in [2^-298, 2^256) — normal doubles: exact (so is bf16 × fp32).
// - e4m3 × e4m3 (kFP8): 4-bit significands, values multiples of 2^-9 with |v| ≤ 448: every product
//   is a multiple of 2^-18 of magnitude ≤ 448² < 2^18: exact.
// - e4m3 × e2m1 (kFP4): e2m1 values are multiples of 2^-1 with |v| ≤ 6: products are multiples of
//   2^-10 of magnitude ≤ 2688: exact.
// The quantised kinds' block sums are even exact in double in any order: a sum of 128 e4m3 × e4m3
// products is a multiple of 2^-18 below 128·448² < 2^25 (43 bits), a sum of 32 e4m3 × e2m1 products
// a multiple of 2^-10 below 32·2688 < 2^17 (27 bits), and so is every partial sum. Their TwoSum errors
// are zero, round_c1_comp takes its exact branch (a single RNE), and those kinds never flag.
//
// The zero's sign: the reference's C1 sum of an exactly-zero total is +0, even when every term is −0
// (its double sum starts at +0.0, as the official kernels' accumulators do: exact_sum_to_fp32). So
// does every lane's part here (SumC1Comp starts at +0.0; +0 + −0 = +0 and x + (−x) = +0 under RNE),
// and the butterflies add the lanes' sums. A zero total that is not exact in double is left
// undecided by round_c1_comp (its sign cannot be told) and recomputed on the host.
//
// The fp32 steps of fp8_gemm / fp4_gemm (σ, the scaled partials, the accumulator) are single IEEE
// fp32 operations (__fmul_rn, __fadd_rn; --fmad=false, -ftz=false), which the reference's
// fl32(double op) reproduces: the double product of two floats is exact, and fl32 of the double
// sum of two floats is their correctly rounded fp32 sum (53 ≥ 2·24 + 2).
#include <cuda_runtime.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dmma.cuh"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/linear.hpp"
#include "dsv4/gpu/quant.hpp"
#include "dsv4/gpu/resident.hpp"
#include "linear_dense.hpp"
#include "linear_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;
constexpr std::int64_t kActBlock = 128;  // act_quant block of every quantised linear (spec 01 §1.6)
constexpr std::int64_t kFp8Tile = 128;   // fp8 weight scale tile 128×128 (spec 01 §1.7)
constexpr std::int64_t kFp4Block = 32;   // fp4 weight scale block 1×32 (spec 01 §1.8)
constexpr std::int64_t kMaxK = std::int64_t{1} << 24;

// The rounded C1 block sum of lane parts `part` (every lane must call it; valid in lane 0): the
// butterflies, then round_c1_comp over `count` terms plus the 31 merges.
__device__ __forceinline__ bool warp_c1(const common::SumC1Comp& part, std::int64_t count, float* out) {
  const common::SumC1Comp all = common::warp_merge_comp(part);
  return common::round_c1_comp(all, static_cast<int>(count + 32), out);
}

// Calls f(o), each call by the whole warp (warp-uniform), for the outputs o < total of this warp:
// all of them (`only` null: warp w takes o ≡ w modulo the grid's warps) or those with only[o] ≠ 0
// (the tiled kernel's leftovers: warp w scans the 32 flags o ∈ [32w, 32w + 32) modulo the grid's
// 32·warps, a ballot per chunk, then computes each flagged output of it in turn). A flag is read by
// its lane before the ballot, so f may overwrite only[o] (undecided aliases it).
template <class F>
__device__ __forceinline__ void for_each_warp_output(std::int64_t total, const std::uint8_t* only, F&& f) {
  const std::int64_t warp = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32,
                     warps = static_cast<std::int64_t>(gridDim.x) * kWarps;
  if (only == nullptr) {
    for (std::int64_t o = warp; o < total; o += warps) f(o);
    return;
  }
  const std::int64_t lane = threadIdx.x % 32;
  for (std::int64_t base = warp * 32; base < total; base += warps * 32) {
    unsigned todo = __ballot_sync(0xFFFFFFFFu, base + lane < total && only[base + lane] != 0);
    while (todo != 0) {
      const int i = __ffs(static_cast<int>(todo)) - 1;
      todo &= todo - 1;
      f(base + i);
    }
  }
}

// kBF16 / kFP32: y = C1 Σ_k x_k w_k (bf16-rounded for kBF16), in the layout of linear_dense_launch
// (linear_dense.hpp): output o = (m, g, n) reads x row ⌊m / x_repeat⌋ at columns g·K.., weight row
// (b_m·G + g)·N + n.
template <bool kBf16Out>
__global__ void __launch_bounds__(kThreads)
    linear_dense_kernel(const float* __restrict__ x, std::int64_t rows, std::int64_t x_repeat, std::int64_t groups,
                        std::int64_t k, const float* __restrict__ w, const std::int64_t* __restrict__ w_block,
                        std::int64_t n_out, const std::uint8_t* only, float* __restrict__ y, std::uint8_t* undecided) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t width = groups * n_out, total = rows * width;
  for_each_warp_output(total, only, [&](std::int64_t o) {
    const std::int64_t m = o / width, gn = o % width;
    const float* xr = x + ((m / x_repeat) * groups + gn / n_out) * k;
    const float* wr = w + ((w_block != nullptr ? w_block[m] : 0) * width + gn) * k;
    common::SumC1Comp part;
    for (std::int64_t i = lane; i < k; i += 32) {
      part.add(__dmul_rn(static_cast<double>(xr[i]), static_cast<double>(wr[i])));  // exact (see top)
    }
    float v = 0.0f;
    const bool ok = warp_c1(part, k, &v);
    if (lane == 0) {
      y[o] = kBf16Out ? common::round_to_bf16(v) : v;
      undecided[o] = ok ? 0 : 1;
    }
  });
}

// kFP8 (spec 01 §1.7): a = act_quant codes [rows / x_repeat, K], sa = their fp32 scales
// [rows / x_repeat, K/128] (output row m reads act row ⌊m / x_repeat⌋); codes [N, K] e4m3, scales
// [⌈N/128⌉, K/128] e8m0, stacked per weight block (row m's block w_block[m], or 0 when null). Lane l
// takes k = 128κ + l + 32j, j = 0..3.
__global__ void __launch_bounds__(kThreads)
    linear_fp8_kernel(const std::uint8_t* __restrict__ a, const float* __restrict__ sa, std::int64_t rows,
                      std::int64_t x_repeat, std::int64_t k, const std::uint8_t* __restrict__ codes,
                      const std::uint8_t* __restrict__ scales, const std::int64_t* __restrict__ w_block,
                      std::int64_t n_out, const std::uint8_t* only, float* __restrict__ y, std::uint8_t* undecided) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t total = rows * n_out, blocks = k / kActBlock;
  for_each_warp_output(total, only, [&](std::int64_t o) {
    const std::int64_t m = o / n_out, n = o % n_out, b = w_block != nullptr ? w_block[m] : 0;
    const std::uint8_t* ar = a + (m / x_repeat) * k;
    const std::uint8_t* wr = codes + (b * n_out + n) * k;
    const float* sar = sa + (m / x_repeat) * blocks;
    const std::uint8_t* swr = scales + (b * ((n_out + kFp8Tile - 1) / kFp8Tile) + n / kFp8Tile) * blocks;
    float acc = 0.0f;
    bool ok = true;
    for (std::int64_t kb = 0; kb < blocks; ++kb) {
      common::SumC1Comp part;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const std::int64_t i = kb * kActBlock + lane + 32 * j;
        part.add(__dmul_rn(static_cast<double>(common::e4m3_to_float(ar[i])),
                           static_cast<double>(common::e4m3_to_float(wr[i]))));  // exact (see top)
      }
      float p = 0.0f;
      const bool block_ok = warp_c1(part, kActBlock, &p);
      if (lane == 0) {
        ok = ok && block_ok;
        const float sigma = __fmul_rn(sar[kb], common::e8m0_to_float(swr[kb]));
        acc = __fadd_rn(acc, __fmul_rn(p, sigma));
      }
    }
    if (lane == 0) {
      y[o] = common::round_to_bf16(acc);
      undecided[o] = ok ? 0 : 1;
    }
  });
}

// kFP4 (spec 01 §1.8): a, sa, x_repeat and w_block as for kFP8; packed [N, K/2] e2m1 (element 2j in
// the low nibble of byte j), scales [N, K/32] e8m0, stacked per block. Lane l takes k = 32κ + l.
__global__ void __launch_bounds__(kThreads)
    linear_fp4_kernel(const std::uint8_t* __restrict__ a, const float* __restrict__ sa, std::int64_t rows,
                      std::int64_t x_repeat, std::int64_t k, const std::uint8_t* __restrict__ packed,
                      const std::uint8_t* __restrict__ scales, const std::int64_t* __restrict__ w_block,
                      std::int64_t n_out, const std::uint8_t* only, float* __restrict__ y, std::uint8_t* undecided) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t total = rows * n_out, blocks = k / kFp4Block;
  for_each_warp_output(total, only, [&](std::int64_t o) {
    const std::int64_t m = o / n_out, n = o % n_out, b = w_block != nullptr ? w_block[m] : 0;
    const std::uint8_t* ar = a + (m / x_repeat) * k;
    const std::uint8_t* wr = packed + (b * n_out + n) * (k / 2);
    const float* sar = sa + (m / x_repeat) * (k / kActBlock);
    const std::uint8_t* swr = scales + (b * n_out + n) * blocks;
    float acc = 0.0f;
    bool ok = true;
    for (std::int64_t kb = 0; kb < blocks; ++kb) {
      const std::int64_t i = kb * kFp4Block + lane;
      const std::uint8_t byte = wr[i / 2];
      const std::uint8_t code =
          (i % 2 == 0) ? static_cast<std::uint8_t>(byte & 0x0Fu) : static_cast<std::uint8_t>(byte >> 4);
      common::SumC1Comp part;
      part.add(__dmul_rn(static_cast<double>(common::e4m3_to_float(ar[i])),
                         static_cast<double>(common::e2m1_to_float(code))));  // exact (see top)
      float p = 0.0f;
      const bool block_ok = warp_c1(part, kFp4Block, &p);
      if (lane == 0) {
        ok = ok && block_ok;
        acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(p, sar[kb * kFp4Block / kActBlock]), common::e8m0_to_float(swr[kb])));
      }
    }
    if (lane == 0) {
      y[o] = common::round_to_bf16(acc);
      undecided[o] = ok ? 0 : 1;
    }
  });
}

// ---- The tiled kernel on the FP64 tensor cores (DMMA) ----
//
// A CTA of kTileThreads = 4 warps computes a kTileM × kTileN tile of outputs (one group g of
// linear_dense_launch: blockIdx.z), each warp a 32 × 32 quarter as 4 × 4 DMMA tiles of 8 × 8
// (PTX mma.sync.aligned.m8n8k4.row.col.f64: A 8×4 row-major, B 4×8 column-major, C/D 8×8; lane ℓ
// holds A[ℓ/4][ℓ%4], B[ℓ%4][ℓ/4] and C[ℓ/4][2(ℓ%4) + i], i = 0, 1 — PTX ISA, "Matrix Fragments for
// mma.m8n8k4 with .f64"). K advances in steps of kTileK = 32: every thread loads its 16 x and 16 w
// values of the next step into registers (the operands' exact double values: bf16, fp32, e4m3 and
// e2m1 values are doubles), stores them into shared memory, and the warps run 8 DMMA k-steps.
//
// The assumption on DMMA's arithmetic: each k-step of each output is an IEEE fp64 fused
// multiply-add d = a·b + c, round-to-nearest, or better (fewer roundings: a sum of the 4 products
// rounded once). Under it:
// - kFP8 / kFP4: every product and every partial sum of one 128-K (fp8) / 32-K (fp4) block is exact
//   in double (see the top of this file), so whatever the order, the block's DMMA sum from C = +0 is
//   the exact block sum p_κ; an exactly zero p_κ is taken as +0 (the sum rule of the reference).
//   The fp32 steps (p_κ rounded once to fp32, σ, the scaled partial, acc in increasing κ) are those
//   of the warp kernels above, in registers, per output. A non-finite p_κ (a NaN or ±inf code) is
//   left to the warp kernel.
// - kBF16 / kFP32 (spec 01 §1.11 C1: the exact sum rounded once): V' (the DMMA sum of the K exact
//   products from C = +0, the zero padding beyond K adding exact zeros) is a sum of Kp ≤ K + 31
//   terms with at most Kp roundings, so
//   |V' − V| ≤ γ_Kp·Σ_k |x_k w_k| ≤ γ_Kp·‖x‖₂‖w‖₂ (Cauchy–Schwarz), γ_n = n·2^-53/(1 − n·2^-53)
//   < n·2^-53·(1 + 2^-20) for n ≤ 2^25. No partial sum is subnormal (every product, hence every
//   partial sum, is 0 or a multiple of 2^-298 — above double's smallest normal 2^-1022), so a
//   flush-to-zero of subnormals could not change V'. The norms come from row_norms_ru (upward
//   roundings: ≥ the exact norms). decide_dense then rounds the ends of [V' − err, V' + err] (each
//   with its directed rounding) to fp32 (and bf16 for kBF16): equal bits decide the output
//   (rounding is monotone); otherwise — a rounding boundary or zero inside the interval (a zero V'
//   with a nonzero bound is never decided: the ends' zeros differ in sign), or a non-finite V' or
//   bound — the warp kernel computes the output (compensated: it may flag it for the host in turn).
//   Both norms finite and their product 0 means x or w is all zeros: V = 0 exactly, +0.
// Batch invariance: the output's bits are the exactly rounded value of its own x row and w row (the
// quantised kinds' block sums are exact; a dense output is decided only when the interval proves
// the correctly rounded value), so they do not depend on M, on the tile it falls in, on the grid or
// on the other rows. The leftovers are computed by the warp kernels, whose bits have the same
// property, and the tiled and warp paths give the same bits (ops_test checks both on a GPU).
constexpr int kTileM = 64, kTileN = 64, kTileK = 32, kTileThreads = 128;
constexpr int kTilePad = 4;  // doubles of padding per shared row: the fragment loads hit distinct banks
constexpr int kLoads = kTileM * kTileK / kTileThreads;  // values of each operand a thread loads per step
static_assert(kTileM == kTileN && kActBlock % kTileK == 0 && kTileK == kFp4Block, "tile shape");

// The default number of rows from which linear_launch / linear_dense_launch take the tiled kernel
// (below it the warp kernels: one warp per output reads each weight row once per output row, which
// at a few rows beats a tile of 64 rows mostly empty). DSV4_GPU_LINEAR_TILE_MIN_ROWS overrides it
// (a benchmark and test knob: the bits are the same on both paths).
constexpr std::int64_t kTileMinRowsDefault = 8;

// Bytes the default memory pool keeps for the dense kinds' norms (linear_dense_launch).
constexpr std::uint64_t kNormPoolKeep = std::uint64_t{64} << 20;

enum class TileKind { kDense, kFP8, kFP4 };

// Upper bounds of the Euclidean norms of `rows` contiguous rows of length k (one warp per row): each
// square, sum and the square root rounded upward, so norm[r] ≥ ‖row r‖₂ exactly (+inf / NaN for
// non-finite rows).
__global__ void __launch_bounds__(kThreads)
    row_norms_ru(const float* __restrict__ v, std::int64_t rows, std::int64_t k, double* __restrict__ norm) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    double sq = 0.0;
    for (std::int64_t i = lane; i < k; i += 32) {
      const double x = static_cast<double>(v[r * k + i]);
      sq = __dadd_ru(sq, __dmul_ru(x, x));
    }
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) sq = __dadd_ru(sq, __shfl_xor_sync(0xFFFFFFFFu, sq, m));
    if (lane == 0) norm[r] = __dsqrt_ru(sq);
  }
}

// The dense output's rounding from V' and the bound err (see above); false: undecided.
__device__ __forceinline__ bool decide_dense(double v, double err, bool bf16_out, float* out) {
  if (!isfinite(v) || !isfinite(err)) return false;
  float lo = __double2float_rn(__dsub_rd(v, err)), hi = __double2float_rn(__dadd_ru(v, err));
  if (bf16_out) {
    lo = common::round_to_bf16(lo);
    hi = common::round_to_bf16(hi);
  }
  *out = lo;
  return __float_as_uint(lo) == __float_as_uint(hi);
}

// The operands of one tile kernel: x (dense: [x rows, G·K] floats; quantised: act codes [x rows, K]
// with scales sa [x rows, K/128]) and w (dense: [G·N, K] floats; fp8: codes [N, K], scales
// [⌈N/128⌉, K/128]; fp4: packed [N, K/2], scales [N, K/32]); norms of x rows and w rows (dense).
struct TileArgs {
  const float* x;
  const std::uint8_t* a;
  const float* sa;
  const float* w;
  const std::uint8_t* codes;
  const std::uint8_t* scales;
  const double* x_norm;
  const double* w_norm;
  std::int64_t rows, groups, k, n_out;
  float* y;
  std::uint8_t* undecided;
};

// A prefetched operand value: dense kinds the float, quantised kinds the code (e2m1: its nibble).
template <TileKind kKind>
using TileReg = std::conditional_t<kKind == TileKind::kDense, float, std::uint8_t>;

// The exact double value of a prefetched operand: x codes are e4m3, w codes e4m3 (kFP8) or e2m1.
template <TileKind kKind, bool kIsW>
__device__ __forceinline__ double tile_value(TileReg<kKind> v) {
  if constexpr (kKind == TileKind::kDense) {
    return static_cast<double>(v);
  } else if constexpr (kKind == TileKind::kFP4 && kIsW) {
    return static_cast<double>(common::e2m1_to_float(v));
  } else {
    return static_cast<double>(common::e4m3_to_float(v));
  }
}

template <TileKind kKind, bool kBf16Out>
__global__ void __launch_bounds__(kTileThreads) linear_tile_kernel(const TileArgs t) {
  __shared__ double sx[kTileM][kTileK + kTilePad], sw[kTileN][kTileK + kTilePad];
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int gid = lane / 4, tig = lane % 4;              // the fragment coordinates (PTX groupID, threadID_in_group)
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;  // the warp's quarter of the tile
  const std::int64_t m0 = static_cast<std::int64_t>(blockIdx.x) * kTileM,
                     n0 = static_cast<std::int64_t>(blockIdx.y) * kTileN, g = blockIdx.z, k = t.k;
  const std::int64_t steps = (k + kTileK - 1) / kTileK;

  // This thread loads column step·kTileK + kc of the tile rows r0 + kRowStep·r, r < kLoads, of both
  // operands (a warp reads 32 consecutive k of a row: coalesced).
  constexpr int kRowStep = kTileThreads / kTileK;
  const int r0 = tid / kTileK, kc = tid % kTileK;
  TileReg<kKind> rx[kLoads], rw[kLoads];
  const auto load = [&](std::int64_t step) {
    const std::int64_t i = step * kTileK + kc;
#pragma unroll
    for (int r = 0; r < kLoads; ++r) {
      const std::int64_t m = m0 + r0 + kRowStep * r, n = n0 + r0 + kRowStep * r;
      if constexpr (kKind == TileKind::kDense) {
        rx[r] = (m < t.rows && i < k) ? t.x[(m * t.groups + g) * k + i] : 0.0f;
        rw[r] = (n < t.n_out && i < k) ? t.w[(g * t.n_out + n) * k + i] : 0.0f;
      } else {
        rx[r] = m < t.rows ? t.a[m * k + i] : std::uint8_t{0};  // K is a multiple of 128: i < K
        if constexpr (kKind == TileKind::kFP8) {
          rw[r] = n < t.n_out ? t.codes[n * k + i] : std::uint8_t{0};
        } else {
          const std::uint8_t byte = n < t.n_out ? t.codes[n * (k / 2) + i / 2] : std::uint8_t{0};
          rw[r] = i % 2 == 0 ? static_cast<std::uint8_t>(byte & 0x0Fu) : static_cast<std::uint8_t>(byte >> 4);
        }
      }
    }
  };

  double acc[4][4][2];
  float acc32[4][4][2];
  unsigned bad = 0;  // bit 2(4i + j) + c: the output's block sum was not finite (quantised kinds)
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      acc[i][j][0] = acc[i][j][1] = 0.0;
      acc32[i][j][0] = acc32[i][j][1] = 0.0f;
    }
  }

  load(0);
  for (std::int64_t step = 0; step < steps; ++step) {
    __syncthreads();  // the previous step's fragments are read
#pragma unroll
    for (int r = 0; r < kLoads; ++r) {
      sx[r0 + kRowStep * r][kc] = tile_value<kKind, false>(rx[r]);
      sw[r0 + kRowStep * r][kc] = tile_value<kKind, true>(rw[r]);
    }
    __syncthreads();
    if (step + 1 < steps) load(step + 1);  // in flight during the DMMAs
#pragma unroll
    for (int ks = 0; ks < kTileK; ks += 4) {
      double a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = sx[wm + 8 * i + gid][ks + tig];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = sw[wn + 8 * j + gid][ks + tig];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) dmma_8x8x4(a[i], b[j], acc[i][j]);
      }
    }
    if constexpr (kKind != TileKind::kDense) {
      // The end of a quantisation block κ: the fp32 steps of fp8_gemm / fp4_gemm, then a fresh sum.
      constexpr std::int64_t kBlock = kKind == TileKind::kFP8 ? kActBlock : kFp4Block;
      const std::int64_t end = (step + 1) * kTileK;
      if (end % kBlock == 0) {
        const std::int64_t kb = end / kBlock - 1, act_blocks = k / kActBlock;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const std::int64_t m = m0 + wm + 8 * i + gid;
          if (m >= t.rows) continue;
          const float* sar = t.sa + m * act_blocks;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const std::int64_t n = n0 + wn + 8 * j + 2 * tig + c;
              double p = acc[i][j][c];
              acc[i][j][c] = 0.0;
              if (n >= t.n_out) continue;
              if (!isfinite(p)) bad |= 1u << (2 * (4 * i + j) + c);
              if (p == 0.0) p = 0.0;  // an exact zero sum is +0
              const float p32 = __double2float_rn(p);
              if constexpr (kKind == TileKind::kFP8) {
                const std::uint8_t s_w = t.scales[(n / kFp8Tile) * act_blocks + kb];
                const float sigma = __fmul_rn(sar[kb], common::e8m0_to_float(s_w));
                acc32[i][j][c] = __fadd_rn(acc32[i][j][c], __fmul_rn(p32, sigma));
              } else {
                const std::uint8_t s_w = t.scales[n * (k / kFp4Block) + kb];
                acc32[i][j][c] = __fadd_rn(acc32[i][j][c], __fmul_rn(__fmul_rn(p32, sar[kb * kFp4Block / kActBlock]),
                                                                     common::e8m0_to_float(s_w)));
              }
            }
          }
        }
      }
    }
  }

  const double gamma = gamma_of(steps * kTileK);
  const std::int64_t width = t.groups * t.n_out;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const std::int64_t m = m0 + wm + 8 * i + gid;
    if (m >= t.rows) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const std::int64_t n = n0 + wn + 8 * j + 2 * tig + c;
        if (n >= t.n_out) continue;
        const std::int64_t o = m * width + g * t.n_out + n;
        float v = 0.0f;
        bool ok = true;
        if constexpr (kKind == TileKind::kDense) {
          const double s = __dmul_ru(t.x_norm[m * t.groups + g], t.w_norm[g * t.n_out + n]);
          if (isfinite(s) && s == 0.0) {
            v = 0.0f;  // x or w all zeros: V = 0 exactly, +0
          } else {
            ok = decide_dense(acc[i][j][c], __dmul_ru(s, gamma), kBf16Out, &v);
          }
        } else {
          ok = (bad >> (2 * (4 * i + j) + c) & 1u) == 0;
          v = common::round_to_bf16(acc32[i][j][c]);
        }
        t.y[o] = v;
        t.undecided[o] = ok ? 0 : 1;
      }
    }
  }
}

bool quantised(LinearKind kind) { return kind == LinearKind::kFP8 || kind == LinearKind::kFP4; }

void check_args(const float* x, std::int64_t rows, const LinearWeightView& w, ScaleFormat fmt, const char* who) {
  const std::string f(who);
  const int kind = static_cast<int>(w.kind);
  if (kind < 0 || kind > 3) throw std::invalid_argument(f + ": unknown weight kind " + std::to_string(kind));
  if (fmt != ScaleFormat::kUE8M0 && fmt != ScaleFormat::kFP32) {
    throw std::invalid_argument(f + ": unknown activation scale format");
  }
  if (rows < 0) throw std::invalid_argument(f + ": rows = " + std::to_string(rows) + " < 0");
  if (w.out_features < 1) throw std::invalid_argument(f + ": out_features must be positive");
  if (w.in_features < 1 || w.in_features > kMaxK) throw std::invalid_argument(f + ": in_features must be in [1, 2^24]");
  if (quantised(w.kind) && w.in_features % kActBlock != 0) {
    throw std::invalid_argument(f + ": in_features K = " + std::to_string(w.in_features) +
                                " is not a multiple of the activation quantisation block 128");
  }
  if (quantised(w.kind) ? (w.codes == nullptr || w.scales == nullptr) : w.values == nullptr) {
    throw std::invalid_argument(f + (quantised(w.kind) ? ": a quantised weight needs codes and scales"
                                                       : ": a bf16 / fp32 weight needs values"));
  }
  if (rows > 0 && x == nullptr) throw std::invalid_argument(f + ": x is null");
}

}  // namespace

LinearWeightSizes linear_weight_sizes(const LinearWeightView& w) {
  const std::size_t n = static_cast<std::size_t>(w.out_features), k = static_cast<std::size_t>(w.in_features);
  LinearWeightSizes s;
  switch (w.kind) {
    case LinearKind::kBF16:
    case LinearKind::kFP32:
      s.values = n * k;
      break;
    case LinearKind::kFP8:
      s.codes = n * k;
      s.scales = ((n + kFp8Tile - 1) / kFp8Tile) * (k / kFp8Tile);
      break;
    case LinearKind::kFP4:
      s.codes = n * k / 2;
      s.scales = n * (k / kFp4Block);
      break;
  }
  return s;
}

namespace {

// The rows from which the tiled kernel runs (kTileMinRowsDefault, or DSV4_GPU_LINEAR_TILE_MIN_ROWS: a
// positive integer; anything else is refused).
std::int64_t tile_min_rows() {
  static const std::int64_t v = [] {
    const char* e = std::getenv("DSV4_GPU_LINEAR_TILE_MIN_ROWS");
    if (e == nullptr || *e == '\0') return kTileMinRowsDefault;
    char* end = nullptr;
    errno = 0;
    const long long r = std::strtoll(e, &end, 10);
    if (errno != 0 || *end != '\0' || r < 1) {
      throw std::invalid_argument(std::string("DSV4_GPU_LINEAR_TILE_MIN_ROWS = '") + e + "' is not a positive integer");
    }
    return static_cast<std::int64_t>(r);
  }();
  return v;
}

// Whether the tiled kernel takes a launch: no per-row weight blocks (an MoE's routed experts keep the
// warp kernels: their rows pick different weights), enough rows, and a grid CUDA can launch.
bool tiled(std::int64_t rows, std::int64_t x_repeat, const std::int64_t* w_block, std::int64_t groups,
           std::int64_t n_out) {
  return w_block == nullptr && x_repeat == 1 && rows >= tile_min_rows() &&
         (rows + kTileM - 1) / kTileM < (std::int64_t{1} << 31) && (n_out + kTileN - 1) / kTileN <= 65535 &&
         groups <= 65535;
}

template <TileKind kKind, bool kBf16Out>
void launch_tile(const TileArgs& t, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((t.rows + kTileM - 1) / kTileM),
                  static_cast<unsigned>((t.n_out + kTileN - 1) / kTileN), static_cast<unsigned>(t.groups));
  linear_tile_kernel<kKind, kBf16Out><<<grid, kTileThreads, 0, stream>>>(t);
}

// The grid of the warp kernels: one warp per output, or (the leftovers of the tiled kernel) one warp
// per 32 flags.
unsigned warp_grid(std::int64_t total, bool leftovers) {
  const std::int64_t warps = leftovers ? (total + 31) / 32 : total;
  return static_cast<unsigned>(std::min((warps + kWarps - 1) / kWarps, kMaxGrid));
}

}  // namespace

void detail::linear_dense_launch(const float* x, std::int64_t rows, std::int64_t x_repeat, std::int64_t groups,
                                 std::int64_t k, const float* w, const std::int64_t* w_block, std::int64_t n_out,
                                 bool bf16_out, float* y, std::uint8_t* undecided, cudaStream_t stream) {
  const std::int64_t total = rows * groups * n_out;
  if (total == 0) return;
  const bool tile = tiled(rows, x_repeat, w_block, groups, n_out);
  if (tile) {
    // The norms' workspace: x rows (each group's K columns apart), then the G·N weight rows.
    const std::int64_t x_rows = rows * groups, w_rows = groups * n_out;  // x_repeat = 1 here
    // From the device's default pool (stream-ordered), which keeps up to kNormPoolKeep bytes across
    // synchronisations instead of returning them to the driver (its default threshold 0 would map
    // fresh memory at every call).
    int device = 0;
    cudaMemPool_t pool = nullptr;
    DSV4_CUDA_CHECK(cudaGetDevice(&device));
    DSV4_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    std::uint64_t keep = kNormPoolKeep;
    DSV4_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    double* norms = nullptr;
    DSV4_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&norms),
                                    static_cast<std::size_t>(x_rows + w_rows) * sizeof(double), stream));
    row_norms_ru<<<warp_grid(x_rows, false), kThreads, 0, stream>>>(x, x_rows, k, norms);
    row_norms_ru<<<warp_grid(w_rows, false), kThreads, 0, stream>>>(w, w_rows, k, norms + x_rows);
    const TileArgs t{x,    nullptr, nullptr, w,     nullptr, nullptr,  norms, norms + x_rows,
                     rows, groups,  k,       n_out, y,       undecided};
    if (bf16_out) {
      launch_tile<TileKind::kDense, true>(t, stream);
    } else {
      launch_tile<TileKind::kDense, false>(t, stream);
    }
    const cudaError_t launched = cudaGetLastError();
    DSV4_CUDA_CHECK(cudaFreeAsync(norms, stream));
    DSV4_CUDA_CHECK(launched);
  }
  // All outputs, or the tiled kernel's leftovers (undecided = 1), by the warp kernel.
  const std::uint8_t* only = tile ? undecided : nullptr;
  if (bf16_out) {
    linear_dense_kernel<true><<<warp_grid(total, tile), kThreads, 0, stream>>>(x, rows, x_repeat, groups, k, w, w_block,
                                                                               n_out, only, y, undecided);
  } else {
    linear_dense_kernel<false><<<warp_grid(total, tile), kThreads, 0, stream>>>(x, rows, x_repeat, groups, k, w,
                                                                                w_block, n_out, only, y, undecided);
  }
  DSV4_CUDA_CHECK_LAUNCH("linear_dense_kernel");
}

void detail::linear_launch(const float* x, std::int64_t rows, std::int64_t x_repeat, const LinearWeightView& w,
                           const std::int64_t* w_block, ScaleFormat act_fmt, float* y, std::uint8_t* undecided,
                           std::uint8_t* act_codes, float* act_scales, cudaStream_t stream) {
  if (rows == 0) return;
  const std::int64_t n = w.out_features, k = w.in_features;
  const std::int64_t x_rows = (rows + x_repeat - 1) / x_repeat;
  if (!quantised(w.kind)) {
    linear_dense_launch(x, rows, x_repeat, 1, k, w.values, w_block, n, w.kind == LinearKind::kBF16, y, undecided,
                        stream);
    return;
  }
  act_quant_device(x, x_rows, k, static_cast<int>(kActBlock), act_fmt, act_codes, act_scales, nullptr, stream);
  const bool tile = tiled(rows, x_repeat, w_block, 1, n);
  if (tile) {
    const TileArgs t{nullptr, act_codes, act_scales, nullptr, w.codes, w.scales, nullptr,
                     nullptr, rows,      1,          k,       n,       y,        undecided};
    if (w.kind == LinearKind::kFP8) {
      launch_tile<TileKind::kFP8, true>(t, stream);
    } else {
      launch_tile<TileKind::kFP4, true>(t, stream);
    }
    DSV4_CUDA_CHECK_LAUNCH("linear_tile_kernel");
  }
  // All outputs, or the tiled kernel's leftovers (a non-finite block sum), by the warp kernel.
  const std::uint8_t* only = tile ? undecided : nullptr;
  const unsigned grid = warp_grid(rows * n, tile);
  if (w.kind == LinearKind::kFP8) {
    linear_fp8_kernel<<<grid, kThreads, 0, stream>>>(act_codes, act_scales, rows, x_repeat, k, w.codes, w.scales,
                                                     w_block, n, only, y, undecided);
    DSV4_CUDA_CHECK_LAUNCH("linear_fp8_kernel");
  } else {
    linear_fp4_kernel<<<grid, kThreads, 0, stream>>>(act_codes, act_scales, rows, x_repeat, k, w.codes, w.scales,
                                                     w_block, n, only, y, undecided);
    DSV4_CUDA_CHECK_LAUNCH("linear_fp4_kernel");
  }
}

void linear_device(const float* x, std::int64_t rows, const LinearWeightView& w, ScaleFormat act_fmt, float* y,
                   std::uint8_t* undecided, std::uint8_t* act_codes, float* act_scales, void* stream) {
  check_args(x, rows, w, act_fmt, "linear_device");
  if (rows > 0 && (y == nullptr || undecided == nullptr)) {
    throw std::invalid_argument("linear_device: y and undecided must be given");
  }
  if (quantised(w.kind) && rows > 0 && (act_codes == nullptr || act_scales == nullptr)) {
    throw std::invalid_argument("linear_device: fp8 / fp4 weights need the act_codes and act_scales workspace");
  }
  if (rows == 0) return;
  detail::linear_launch(x, rows, 1, w, nullptr, act_fmt, y, undecided, act_codes, act_scales,
                        static_cast<cudaStream_t>(stream));
}

LinearBatch linear_resident(const float* x, std::int64_t rows, const LinearWeightView& w, const LinearWeightView& dw,
                            ScaleFormat act_fmt) {
  check_args(x, rows, w, act_fmt, "linear");
  if (dw.kind != w.kind || dw.out_features != w.out_features || dw.in_features != w.in_features) {
    throw std::invalid_argument("linear: the device weight's kind or shape differs from the host weight's");
  }
  const std::size_t R = static_cast<std::size_t>(rows), N = static_cast<std::size_t>(w.out_features),
                    K = static_cast<std::size_t>(w.in_features);
  LinearBatch out;
  out.y.resize(R * N);
  if (rows == 0) return out;
  const bool q = quantised(w.kind);
  detail::DeviceBuffer<float> d_x(R * K), d_y(R * N), d_act_scales(q ? R * (K / kActBlock) : 0);
  detail::DeviceBuffer<std::uint8_t> d_undecided(R * N), d_act_codes(q ? R * K : 0);
  d_x.upload(x);
  linear_device(d_x.get(), rows, dw, act_fmt, d_y.get(), d_undecided.get(), d_act_codes.get(), d_act_scales.get(),
                nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  std::vector<std::uint8_t> undecided(R * N);
  d_undecided.download(undecided.data());
  for (std::size_t o = 0; o < R * N; ++o) {
    if (undecided[o] == 0) continue;
    out.y[o] = detail::linear_reference_element(x + (o / N) * K, w, static_cast<std::int64_t>(o % N), act_fmt);
    ++out.recomputed;
  }
  return out;
}

// The weight uploaded for this call, then linear_resident.
LinearBatch linear(const float* x, std::int64_t rows, const LinearWeightView& w, ScaleFormat act_fmt) {
  check_args(x, rows, w, act_fmt, "linear");
  if (rows == 0) return LinearBatch{};
  const LinearWeightSizes ws = linear_weight_sizes(w);
  detail::DeviceBuffer<float> d_values(ws.values);
  detail::DeviceBuffer<std::uint8_t> d_codes(ws.codes), d_scales(ws.scales);
  if (ws.values > 0) d_values.upload(w.values);
  if (ws.codes > 0) d_codes.upload(w.codes);
  if (ws.scales > 0) d_scales.upload(w.scales);
  LinearWeightView dw = w;
  dw.values = d_values.get();
  dw.codes = d_codes.get();
  dw.scales = d_scales.get();
  return linear_resident(x, rows, w, dw, act_fmt);
}

}  // namespace dsv4::gpu
