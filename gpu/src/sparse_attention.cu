// Sparse attention with the attention sink (spec 02 §2.9), bit-exact with the official-mode
// reference (ref/model/src/sparse_attention.cpp) — see dsv4/gpu/sparse_attention.hpp, and
// dsv4/gpu/sparse_attention_steps.hpp for the fixed-order fp32 steps these kernels run with the
// device primitives below.
//
// The reference's recurrence per (token t, head h) runs over the chunks of 64 list positions; its two
// products per chunk are GEMM-shaped and shared by all heads of a token: S = Q_t · V_kᵀ ([H, n]: the
// logits) and P·V ([H, n]·[n, c]). Three kernels a batch of tokens, every value's bits depending on
// its own token's inputs only (no atomics on values, no dependence on the grid or the batch):
//   1. chunk_logits_kernel, one CTA of 4 warps per (token, chunk, 64 heads): the chunk's entries
//      compacted (chunk_entries), the 64 × 64 logits dots on the FP64 tensor cores (DMMA m8n8k4, the
//      gathered kv rows shared by the 64 heads through shared memory), each decided from the DMMA
//      value and its rigorous bound (decide_interval below) or — undecided — recomputed at once by
//      the warp with the compensated sum (dot_comp_warp: the former kernel's exact-product
//      compensated C1 sum); s = fl(dot·τ) into the workspace;
//   2. softmax_kernel, one warp per (token, head): the chunks in order — the running max (max_first:
//      the first maximal value, as std::max left to right), α, the p_j (C2 exp), their C1 sum
//      (compensated, warp merge), ℓ's FMA; bf16(p_j) over the logits in place, α and ‖bf16(p)‖₂ per
//      chunk; at the end the denominator with the sink;
//   3. chunk_pv_kernel, one CTA per (token, 64 heads, 64 output columns): the chunks in order, the
//      P·V tile on the FP64 tensor cores with its bound (undecided: the warp's compensated sum), and
//      o ← fl(fl(o·α) + pv) in registers; at the end bf16(fl(o / den)).
// The max, α, the p_j and ℓ are computed once per (token, head) (kernel 2) and the recurrence on o in
// the reference's chunk order (kernel 3), so the output equals the former one-CTA-a-token kernel's
// (and the reference's) bit for bit; the C1 sums are exact sums rounded once, independent of any
// order, which is what lets the dots run on tensor cores in their own order.
//
// The assumption on DMMA's arithmetic (as gpu/src/linear.cu's tiled kernel): each k-step of each
// output is an IEEE fp64 fused multiply-add d = a·b + c, round-to-nearest, or better. The products
// of two fp32 values are exact in double (≤ 48 bits, ≥ 2^-298: never subnormal), so the DMMA sum V'
// of Kp terms (K padded to a multiple of 32 with zeros) has at most Kp roundings:
// |V' − V| ≤ γ_Kp·Σ|a_k b_k| ≤ γ_Kp·‖a‖₂‖b‖₂ (Cauchy–Schwarz), with the norms rounded upward. The
// logits' norms: the q rows and the kv rows (row_norms_up); P·V's: ‖bf16(p)‖₂ of the head over the
// chunk (kernel 2) and the chunk's column norms of V (kernel 3, from the shared tile). That interval
// alone leaves bf16 data undecided far too often (measured on an H100: 2.8 % of the logits, 16 % of
// the P·V values of the v4-flash bench): their exact sums are coarse — often a float or exactly a
// midpoint between two — so any interval around a midpoint straddles it. First, then, the exact
// case (steps::sum_exact_in_double): with the least trailing exponents of both rows, the double sum
// is provably the exact sum, rounded once.
//
// Undecided: any C1 rounding or exp the device could not decide (after the compensated recompute)
// flags the token; so does an invalid list (an entry outside [−1, n_kv), or a first chunk without a
// valid entry, where the official kernel returns NaN and the reference refuses); the host entry point
// recomputes flagged tokens with the reference.
#include <cuda_runtime.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dmma.cuh"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/sparse_attention.hpp"
#include "dsv4/gpu/sparse_attention_steps.hpp"
#include "sparse_attention_reference.hpp"

namespace dsv4::gpu {
namespace {

namespace steps = sparse_attention_steps;

constexpr int kChunk = steps::kChunk;
constexpr int kTile = 64;          // heads (and entries, output columns) of a CTA's tile
constexpr int kTileK = 32;         // the k-step of the tiles through shared memory
constexpr int kTileThreads = 128;  // 4 warps, each a 32 × 32 quarter of the tile
constexpr int kTilePad = 4;        // doubles of padding per row-major shared row (fragment loads: 2 wavefronts)
constexpr int kSoftmaxThreads = 256;
constexpr std::int64_t kMaxDim = std::int64_t{1} << 16;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;
// The workspace of a batch of tokens: at most this many bytes (the token batches of the host loop),
// kept by the default memory pool across calls.
constexpr std::size_t kWorkspaceBytes = std::size_t{64} << 20;
static_assert(kChunk == kTile, "a chunk of 64 entries is one tile");
static_assert(kTile * kTileK % kTileThreads == 0, "whole loads");

// The primitives of sparse_attention_steps on the device: single IEEE fp32 operations (intrinsics:
// never contracted, never approximated), C2 exp, compensated C1 sums, bf16 RNE.
struct DeviceArith {
  __device__ __forceinline__ float add(float a, float b) const { return __fadd_rn(a, b); }
  __device__ __forceinline__ float sub(float a, float b) const { return __fsub_rn(a, b); }
  __device__ __forceinline__ float mul(float a, float b) const { return __fmul_rn(a, b); }
  __device__ __forceinline__ float div(float a, float b) const { return __fdiv_rn(a, b); }
  __device__ __forceinline__ float fma(float a, float b, float c) const { return __fmaf_rn(a, b, c); }
  __device__ __forceinline__ bool exp(float x, float* out) const { return common::exp_c2_dev(x, out); }
  __device__ __forceinline__ float bf16(float x) const { return common::round_to_bf16(x); }
};

// The C1 rounding of an exact value V known to lie in [v − err, v + err]: both ends, each with its
// directed rounding, rounded to fp32; equal bits decide (rounding is monotone). A zero v with a
// nonzero bound is never decided (the ends' zeros differ in sign), nor a non-finite v or bound.
__device__ __forceinline__ bool decide_interval(double v, double err, float* out) {
  if (!isfinite(v) || !isfinite(err)) return false;
  const float lo = __double2float_rn(__dsub_rd(v, err)), hi = __double2float_rn(__dadd_ru(v, err));
  *out = lo;
  return __float_as_uint(lo) == __float_as_uint(hi);
}

// An operand row's (or column's) Euclidean norm rounded upward and the least trailing exponent of
// its nonzero elements (steps::trailing_exponent; kNoTrail when all are zero).
struct NormTrail {
  double norm;
  int trail;
};

// The C1 rounding of a DMMA dot product V' of rows a, b: the norms (≥ the exact norms) both finite
// with a zero product means one operand is all zeros, V = 0 exactly: +0 (the sum rule); a sum exact
// in double (steps::sum_exact_in_double, bound ‖a‖₂‖b‖₂: the common case of bf16 operands, whose
// exact sums are often a float or a midpoint between two) is rounded once, fl32(V'); otherwise the
// Cauchy–Schwarz interval V' ± γ·‖a‖₂‖b‖₂ (decide_interval). False: undecided.
__device__ __forceinline__ bool decide_dot(double v, NormTrail a, NormTrail b, double gamma, float* out) {
  const double s = __dmul_ru(a.norm, b.norm);
  if (isfinite(s) && s == 0.0) {
    *out = 0.0f;
    return true;
  }
  if (steps::sum_exact_in_double(s, a.trail, b.trail)) {
    *out = v == 0.0 ? 0.0f : __double2float_rn(v);
    return true;
  }
  return decide_interval(v, __dmul_ru(s, gamma), out);
}

__device__ __forceinline__ int warp_min(int v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = min(v, __shfl_xor_sync(0xFFFFFFFFu, v, m));
  return v;
}

// Upper bounds of the Euclidean norms of `rows` contiguous rows of length k (one warp per row): each
// square, sum and the square root rounded upward, so norm[r] ≥ ‖row r‖₂ exactly (+inf / NaN for
// non-finite rows); and the rows' least trailing exponents.
__global__ void __launch_bounds__(kSoftmaxThreads)
    row_norms_up(const float* __restrict__ v, std::int64_t rows, std::int64_t k, NormTrail* __restrict__ norm) {
  constexpr int kWarps = kSoftmaxThreads / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    double sq = 0.0;
    int trail = steps::kNoTrail;
    for (std::int64_t i = lane; i < k; i += 32) {
      const float f = v[r * k + i];
      const double x = static_cast<double>(f);
      sq = __dadd_ru(sq, __dmul_ru(x, x));
      trail = min(trail, steps::trailing_exponent(f));
    }
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) sq = __dadd_ru(sq, __shfl_xor_sync(0xFFFFFFFFu, sq, m));
    trail = warp_min(trail);
    if (lane == 0) norm[r] = NormTrail{__dsqrt_ru(sq), trail};
  }
}

// The exact-product compensated C1 sum of a[i]·b[i] over i < count, split over the warp's lanes
// (lane l takes i ≡ l mod 32), merged by butterflies and rounded once (count + 32: the terms' and the
// merges' errors). Every lane must call it; every lane gets the result.
template <class Term>
__device__ __forceinline__ bool dot_comp_warp(int count, Term term, float* out) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  common::SumC1Comp part;
  for (int i = lane; i < count; i += 32) part.add(term(i));
  const common::SumC1Comp all = common::warp_merge_comp(part);
  return common::round_c1_comp(all, count + 32, out);
}

// The warp's leftovers: for each of a lane's 32 fragment outputs (slot), the lanes whose value at that
// slot is undecided (ok false) hand it to the whole warp in turn, which recomputes it with
// dot_comp_warp(count, term_of(slot's coordinates)). recompute(slot, src lane) → (decided, value) in
// the lane src; *count (when given) counts the recomputed dots. Warp-uniform control flow.
template <class Recompute>
__device__ __forceinline__ void warp_leftovers(bool (&ok)[4][4][2], float (&val)[4][4][2], Recompute recompute,
                                               bool* undecided, unsigned long long* count) {
  const int lane = static_cast<int>(threadIdx.x % 32);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        unsigned mask = __ballot_sync(0xFFFFFFFFu, !ok[i][j][c]);
        while (mask != 0) {
          const int src = __ffs(static_cast<int>(mask)) - 1;
          mask &= mask - 1;
          float v = 0.0f;
          const bool decided = recompute(i, j, c, src, &v);
          if (lane == src) {
            val[i][j][c] = v;
            if (!decided) *undecided = true;
            if (count != nullptr) atomicAdd(count, 1ULL);  // a count only: no value depends on it
          }
        }
      }
    }
  }
}

// The workspace of a batch of tb tokens (device pointers), nch = ⌈width / 64⌉ chunks a token:
//   s      [tb, nch, H, 64] the chunk's logits, then bf16(p_j) (positions 0..n−1 of the compacted chunk)
//   idx    [tb, nch, 64]    the chunk's valid entries in list order (chunk_entries)
//   n      [tb, nch]        their count
//   alpha  [tb, nch, H]     α of the chunk
//   pnorm  [tb, nch, H]     ‖bf16(p)‖₂ over the chunk, rounded upward, and the least trailing exponent
//   den    [tb, H]          the denominator with the sink
//   qnorm  [tb·H]           ‖q_h‖₂ rounded upward and the least trailing exponent
struct Work {
  float* s;
  std::int32_t* idx;
  int* n;
  float* alpha;
  NormTrail* pnorm;
  float* den;
  NormTrail* qnorm;
};

struct Args {
  const float* q;  // the batch's first token
  std::int64_t tokens, heads, c, width, nch, n_kv;
  const std::int32_t* lists;  // the batch's first token
  const float* kv;
  const NormTrail* kv_norm;  // [n_kv]
  const float* sink;
  float tau;
  float* o;                 // the batch's first token
  std::uint8_t* undecided;  // the batch's first token
  Work w;
  unsigned long long* counts;  // null, or [2]: logit dots, P·V dots recomputed by a warp
};

// 1. The logits of (token t, chunk k, heads h0..h0 + 63): DMMA over c in k-steps of 32 (the q rows
// and the chunk's gathered kv rows as exact doubles in shared memory), decided, s = fl(dot·τ).
__global__ void __launch_bounds__(kTileThreads) chunk_logits_kernel(const Args g) {
  __shared__ double sa[kTile][kTileK + kTilePad], sb[kTile][kTileK + kTilePad];
  __shared__ std::int32_t sidx[kChunk];
  __shared__ int s_n, s_bad;
  const DeviceArith ar;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int gid = lane / 4, tig = lane % 4;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const std::int64_t head_tiles = (g.heads + kTile - 1) / kTile;
  const std::int64_t ksteps = (g.c + kTileK - 1) / kTileK;
  const double gamma = gamma_of(ksteps * kTileK);
  constexpr int kRowStep = kTileThreads / kTileK, kLoads = kTile * kTileK / kTileThreads;
  const int r0 = tid / kTileK, kc = tid % kTileK;
  const std::int64_t blocks = g.tokens * g.nch * head_tiles;
  for (std::int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const std::int64_t ht = b % head_tiles, k = (b / head_tiles) % g.nch, t = b / (head_tiles * g.nch);
    const std::int64_t h0 = ht * kTile;
    if (tid == 0) {
      bool bad = false;
      s_n = steps::chunk_entries(g.lists + t * g.width, g.width, k * kChunk, g.n_kv, sidx, &bad);
      s_bad = bad ? 1 : 0;
    }
    __syncthreads();
    const int n = s_n;
    if (tid == 0 && (s_bad != 0 || (k == 0 && n == 0))) g.undecided[t] = 1;  // refused by the reference
    if (ht == 0) {
      if (tid == 0) g.w.n[t * g.nch + k] = n;
      if (tid < n) g.w.idx[(t * g.nch + k) * kChunk + tid] = sidx[tid];
    }
    if (n == 0) {  // a dead chunk (or a refused first chunk): nothing to compute
      __syncthreads();
      continue;
    }
    const float* qt = g.q + (t * g.heads + h0) * g.c;
    float rx[kLoads], rw[kLoads];
    const auto load = [&](std::int64_t step) {
      const std::int64_t i = step * kTileK + kc;
#pragma unroll
      for (int r = 0; r < kLoads; ++r) {
        const int row = r0 + kRowStep * r;
        rx[r] = (h0 + row < g.heads && i < g.c) ? qt[row * g.c + i] : 0.0f;
        rw[r] = (row < n && i < g.c) ? g.kv[static_cast<std::int64_t>(sidx[row]) * g.c + i] : 0.0f;
      }
    };
    double acc[4][4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j][0] = acc[i][j][1] = 0.0;
    }
    load(0);
    for (std::int64_t step = 0; step < ksteps; ++step) {
      __syncthreads();  // the previous step's fragments are read
#pragma unroll
      for (int r = 0; r < kLoads; ++r) {
        sa[r0 + kRowStep * r][kc] = static_cast<double>(rx[r]);
        sb[r0 + kRowStep * r][kc] = static_cast<double>(rw[r]);
      }
      __syncthreads();
      if (step + 1 < ksteps) load(step + 1);  // in flight during the DMMAs
#pragma unroll
      for (int ks = 0; ks < kTileK; ks += 4) {
        double a[4], bb[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = sa[wm + 8 * i + gid][ks + tig];
#pragma unroll
        for (int j = 0; j < 4; ++j) bb[j] = sb[wn + 8 * j + gid][ks + tig];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
          for (int j = 0; j < 4; ++j) dmma_8x8x4(a[i], bb[j], acc[i][j]);
        }
      }
    }
    // Decide each dot; the warp recomputes the undecided ones.
    bool ok[4][4][2];
    float dot[4][4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int hl = wm + 8 * i + gid;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int jl = wn + 8 * j + 2 * tig + c;
          dot[i][j][c] = 0.0f;
          ok[i][j][c] = true;
          if (h0 + hl < g.heads && jl < n) {
            ok[i][j][c] =
                decide_dot(acc[i][j][c], g.w.qnorm[t * g.heads + h0 + hl], g.kv_norm[sidx[jl]], gamma, &dot[i][j][c]);
          }
        }
      }
    }
    bool flag = false;
    warp_leftovers(
        ok, dot,
        [&](int i, int j, int c, int src, float* v) {
          const int hl = __shfl_sync(0xFFFFFFFFu, wm + 8 * i + gid, src);
          const int jl = __shfl_sync(0xFFFFFFFFu, wn + 8 * j + 2 * tig + c, src);
          const float* qh = qt + static_cast<std::int64_t>(hl) * g.c;
          const float* vj = g.kv + static_cast<std::int64_t>(sidx[jl]) * g.c;
          return dot_comp_warp(
              static_cast<int>(g.c),
              [&](int d) { return __dmul_rn(static_cast<double>(qh[d]), static_cast<double>(vj[d])); }, v);
        },
        &flag, g.counts);
    if (flag) g.undecided[t] = 1;
    float* st = g.w.s + ((t * g.nch + k) * g.heads + h0) * kChunk;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int hl = wm + 8 * i + gid;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int jl = wn + 8 * j + 2 * tig + c;
          if (h0 + hl < g.heads && jl < n) st[hl * kChunk + jl] = steps::logit(ar, dot[i][j][c], g.tau);
        }
      }
    }
    __syncthreads();  // sidx, s_n are rewritten by the next block
  }
}

// 2. One warp per (token, head): the softmax steps of every chunk in order (steps::max_step's max,
// α, the p_j, ℓ), bf16(p_j) over the logits, α and ‖bf16(p)‖₂ per chunk; the denominator.
__global__ void __launch_bounds__(kSoftmaxThreads) softmax_kernel(const Args g) {
  constexpr int kWarps = kSoftmaxThreads / 32;
  const DeviceArith ar;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t tasks = g.tokens * g.heads;
  for (std::int64_t w = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; w < tasks;
       w += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    const std::int64_t t = w / g.heads, h = w % g.heads;
    float mu = -__int_as_float(0x7f800000), ell = 0.0f;
    bool ok = true;
    for (std::int64_t k = 0; k < g.nch; ++k) {
      const int n = g.w.n[t * g.nch + k];
      if (n == 0) continue;  // a dead chunk: μ, ℓ unchanged
      const std::int64_t hk = (t * g.nch + k) * g.heads + h;
      float* s = g.w.s + hk * kChunk;
      float sv[2];
      steps::MaxAt m{-__int_as_float(0x7f800000), steps::kAbsent};
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int j = lane + 32 * r;
        sv[r] = j < n ? s[j] : 0.0f;
        if (j < n && !isnan(sv[r])) m = steps::max_first(m, steps::MaxAt{sv[r], j});
      }
#pragma unroll
      for (int x = 16; x > 0; x >>= 1) {
        const steps::MaxAt o{__shfl_xor_sync(0xFFFFFFFFu, m.v, x), __shfl_xor_sync(0xFFFFFFFFu, m.at, x)};
        m = steps::max_first(m, o);
      }
      const float mu_new = steps::max_step(mu, m.v);
      float al = 0.0f;
      ok = steps::rescale_factor(ar, mu, mu_new, &al) && ok;
      common::SumC1Comp part;
      double sq = 0.0;
      int trail = steps::kNoTrail;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int j = lane + 32 * r;
        if (j >= n) continue;
        float p = 0.0f;
        ok = steps::probability(ar, sv[r], mu_new, &p) && ok;
        part.add(static_cast<double>(p));
        const float pb = ar.bf16(p);
        s[j] = pb;
        sq = __dadd_ru(sq, __dmul_ru(static_cast<double>(pb), static_cast<double>(pb)));
        trail = min(trail, steps::trailing_exponent(pb));
      }
      const common::SumC1Comp all = common::warp_merge_comp(part);
      float total = 0.0f;
      ok = common::round_c1_comp(all, n + 32, &total) && ok;
#pragma unroll
      for (int x = 16; x > 0; x >>= 1) sq = __dadd_ru(sq, __shfl_xor_sync(0xFFFFFFFFu, sq, x));
      trail = warp_min(trail);
      ell = steps::ell_update(ar, ell, al, total);
      mu = mu_new;
      if (lane == 0) {
        g.w.alpha[hk] = al;
        g.w.pnorm[hk] = NormTrail{__dsqrt_ru(sq), trail};
      }
    }
    float den = 0.0f;
    ok = steps::denominator(ar, ell, mu, g.sink[h], &den) && ok;
    const bool all_ok = __all_sync(0xFFFFFFFFu, ok) != 0;
    if (lane == 0) {
      g.w.den[t * g.heads + h] = den;
      if (!all_ok) g.undecided[t] = 1;
    }
  }
}

// 3. The output tile of (token t, heads h0..h0 + 63, columns d0..d0 + 63): per chunk in order, P·V on
// the FP64 tensor cores (P the bf16(p_j) rows, row-major; V the chunk's gathered rows held k-major,
// vt[j][d]: a warp's global loads run along a kv row), decided, o ← fl(fl(o·α) + pv) in registers;
// at the end bf16(fl(o / den)).
__global__ void __launch_bounds__(kTileThreads) chunk_pv_kernel(const Args g) {
  __shared__ double sp[kTile][kTileK + kTilePad], vt[kTileK][kTile + kTilePad];
  __shared__ std::int32_t sidx[kChunk];
  __shared__ float salpha[kTile];
  __shared__ NormTrail spn[kTile], svn[kTile];
  const DeviceArith ar;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int gid = lane / 4, tig = lane % 4;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const std::int64_t head_tiles = (g.heads + kTile - 1) / kTile, col_tiles = (g.c + kTile - 1) / kTile;
  constexpr int kRowStep = kTileThreads / kTileK, kLoads = kTile * kTileK / kTileThreads;
  constexpr int kVRowStep = kTileThreads / kTile;
  const int r0 = tid / kTileK, kc = tid % kTileK;  // P loads: rows r0 + 4r, column kc
  const int vd = tid % kTile, vj0 = tid / kTile;   // V loads: column vd, entries vj0 + 2r
  const std::int64_t blocks = g.tokens * head_tiles * col_tiles;
  for (std::int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const std::int64_t ct = b % col_tiles, ht = (b / col_tiles) % head_tiles, t = b / (col_tiles * head_tiles);
    const std::int64_t h0 = ht * kTile, d0 = ct * kTile;
    float o[4][4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) o[i][j][0] = o[i][j][1] = 0.0f;
    }
    bool flag = false;
    for (std::int64_t k = 0; k < g.nch; ++k) {
      const int n = g.w.n[t * g.nch + k];
      if (n == 0) continue;  // a dead chunk: o unchanged (block-uniform)
      const std::int64_t tk = t * g.nch + k;
      if (tid < n) sidx[tid] = g.w.idx[tk * kChunk + tid];
      if (tid < kTile) {
        const bool live = h0 + tid < g.heads;
        salpha[tid] = live ? g.w.alpha[tk * g.heads + h0 + tid] : 0.0f;
        spn[tid] = live ? g.w.pnorm[tk * g.heads + h0 + tid] : NormTrail{0.0, steps::kNoTrail};
      }
      const float* pt = g.w.s + (tk * g.heads + h0) * kChunk;
      __syncthreads();
      const int ksteps = (n + kTileK - 1) / kTileK;
      float rp[kLoads], rv[kLoads];
      const auto load = [&](int step) {
#pragma unroll
        for (int r = 0; r < kLoads; ++r) {
          const int row = r0 + kRowStep * r, j = step * kTileK + kc;
          rp[r] = (h0 + row < g.heads && j < n) ? pt[row * kChunk + j] : 0.0f;
          const int jv = step * kTileK + vj0 + kVRowStep * r;
          rv[r] = (jv < n && d0 + vd < g.c) ? g.kv[static_cast<std::int64_t>(sidx[jv]) * g.c + d0 + vd] : 0.0f;
        }
      };
      double acc[4][4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j][0] = acc[i][j][1] = 0.0;
      }
      double vsq = 0.0;              // thread tid < 64: Σ v_jd² of column d0 + tid over the chunk, rounded upward
      int vtrail = steps::kNoTrail;  // and its least trailing exponent
      load(0);
      for (int step = 0; step < ksteps; ++step) {
        __syncthreads();
#pragma unroll
        for (int r = 0; r < kLoads; ++r) {
          sp[r0 + kRowStep * r][kc] = static_cast<double>(rp[r]);
          vt[vj0 + kVRowStep * r][vd] = static_cast<double>(rv[r]);
        }
        __syncthreads();
        if (step + 1 < ksteps) load(step + 1);
        if (tid < kTile) {
#pragma unroll 8
          for (int j = 0; j < kTileK; ++j) {
            const double x = vt[j][tid];
            vsq = __dadd_ru(vsq, __dmul_ru(x, x));
            vtrail = min(vtrail, steps::trailing_exponent(__double2float_rn(x)));  // x is a float: exact
          }
        }
#pragma unroll
        for (int ks = 0; ks < kTileK; ks += 4) {
          double a[4], bb[4];
#pragma unroll
          for (int i = 0; i < 4; ++i) a[i] = sp[wm + 8 * i + gid][ks + tig];
#pragma unroll
          for (int j = 0; j < 4; ++j) bb[j] = vt[ks + tig][wn + 8 * j + gid];
#pragma unroll
          for (int i = 0; i < 4; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) dmma_8x8x4(a[i], bb[j], acc[i][j]);
          }
        }
      }
      if (tid < kTile) svn[tid] = NormTrail{__dsqrt_ru(vsq), vtrail};
      __syncthreads();
      const double gamma = gamma_of(static_cast<std::int64_t>(ksteps) * kTileK);
      bool ok[4][4][2];
      float pv[4][4][2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int hl = wm + 8 * i + gid;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int dl = wn + 8 * j + 2 * tig + c;
            pv[i][j][c] = 0.0f;
            ok[i][j][c] = true;
            if (h0 + hl < g.heads && d0 + dl < g.c) {
              ok[i][j][c] = decide_dot(acc[i][j][c], spn[hl], svn[dl], gamma, &pv[i][j][c]);
            }
          }
        }
      }
      warp_leftovers(
          ok, pv,
          [&](int i, int j, int c, int src, float* v) {
            const int hl = __shfl_sync(0xFFFFFFFFu, wm + 8 * i + gid, src);
            const int dl = __shfl_sync(0xFFFFFFFFu, wn + 8 * j + 2 * tig + c, src);
            const float* ph = pt + static_cast<std::int64_t>(hl) * kChunk;
            return dot_comp_warp(
                n,
                [&](int jj) {
                  return __dmul_rn(static_cast<double>(ph[jj]),
                                   static_cast<double>(g.kv[static_cast<std::int64_t>(sidx[jj]) * g.c + d0 + dl]));
                },
                v);
          },
          &flag, g.counts == nullptr ? nullptr : g.counts + 1);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float al = salpha[wm + 8 * i + gid];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
          for (int c = 0; c < 2; ++c) o[i][j][c] = steps::rescale_add(ar, o[i][j][c], al, pv[i][j][c]);
        }
      }
      __syncthreads();  // sidx, salpha, spn, svn are rewritten by the next chunk
    }
    if (flag) g.undecided[t] = 1;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int hl = wm + 8 * i + gid;
      if (h0 + hl >= g.heads) continue;
      const float den = g.w.den[t * g.heads + h0 + hl];
      float* oh = g.o + (t * g.heads + h0 + hl) * g.c + d0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int dl = wn + 8 * j + 2 * tig + c;
          if (d0 + dl < g.c) oh[dl] = steps::output(ar, o[i][j][c], den);
        }
      }
    }
  }
}

// The most tokens a batch of the host loop holds: as many as kWorkspaceBytes allows, or fewer where
// DSV4_GPU_SPARSE_ATTENTION_BATCH says (a test knob: the bits do not depend on the batches; a positive
// integer, anything else refused).
std::int64_t batch_tokens_cap() {
  static const std::int64_t v = [] {
    const char* e = std::getenv("DSV4_GPU_SPARSE_ATTENTION_BATCH");
    if (e == nullptr || *e == '\0') return std::numeric_limits<std::int64_t>::max();
    char* end = nullptr;
    errno = 0;
    const long long r = std::strtoll(e, &end, 10);
    if (errno != 0 || *end != '\0' || r < 1) {
      throw std::invalid_argument(std::string("DSV4_GPU_SPARSE_ATTENTION_BATCH = '") + e +
                                  "' is not a positive integer");
    }
    return static_cast<std::int64_t>(r);
  }();
  return v;
}

void check_args(const float* q, std::int64_t tokens, std::int64_t heads, std::int64_t c, const std::int32_t* lists,
                std::int64_t width, const float* kv, std::int64_t n_kv, const float* sink, const char* who) {
  const std::string f(who);
  if (tokens < 0) throw std::invalid_argument(f + ": tokens = " + std::to_string(tokens) + " < 0");
  if (heads < 1 || heads > kSparseAttentionMaxHeads) {
    throw std::invalid_argument(f + ": heads = " + std::to_string(heads) + " outside [1, " +
                                std::to_string(kSparseAttentionMaxHeads) + "]");
  }
  if (c < 1 || c > kMaxDim) throw std::invalid_argument(f + ": c = " + std::to_string(c) + " outside [1, 2^16]");
  if (width < 1) throw std::invalid_argument(f + ": list width = " + std::to_string(width) + " < 1");
  if (n_kv < 1 || n_kv > INT32_MAX)
    throw std::invalid_argument(f + ": n_kv = " + std::to_string(n_kv) + " outside [1, 2^31)");
  if (kv == nullptr || sink == nullptr) throw std::invalid_argument(f + ": kv and sink must be given");
  if (tokens > 0 && (q == nullptr || lists == nullptr)) throw std::invalid_argument(f + ": q and lists must be given");
}

}  // namespace

void sparse_attention_device(const float* q, std::int64_t tokens, std::int64_t heads, std::int64_t c,
                             const std::int32_t* lists, std::int64_t width, const float* kv, std::int64_t n_kv,
                             const float* sink, float tau, float* o, std::uint8_t* undecided, void* stream,
                             std::uint64_t* warp_recomputed) {
  check_args(q, tokens, heads, c, lists, width, kv, n_kv, sink, "sparse_attention_device");
  if (tokens > 0 && (o == nullptr || undecided == nullptr)) {
    throw std::invalid_argument("sparse_attention_device: o and undecided must be given");
  }
  if (tokens == 0) return;
  const auto st = static_cast<cudaStream_t>(stream);
  const std::int64_t nch = (width + kChunk - 1) / kChunk, heads_tiles = (heads + kTile - 1) / kTile,
                     col_tiles = (c + kTile - 1) / kTile;
  // The workspace of one batch of tokens (Work), a token's share first; tokens in batches so that it
  // stays within kWorkspaceBytes (at least one token).
  const auto align = [](std::size_t b) { return (b + 255) / 256 * 256; };
  const std::size_t per_token = static_cast<std::size_t>(nch * heads * kChunk) * sizeof(float) +
                                static_cast<std::size_t>(nch * kChunk) * sizeof(std::int32_t) +
                                static_cast<std::size_t>(nch) * sizeof(int) +
                                static_cast<std::size_t>(nch * heads) * (sizeof(float) + sizeof(NormTrail)) +
                                static_cast<std::size_t>(heads) * (sizeof(float) + sizeof(NormTrail));
  const std::int64_t batch = std::max<std::int64_t>(
      1, std::min({tokens, static_cast<std::int64_t>(kWorkspaceBytes / per_token), batch_tokens_cap()}));
  const auto tb = static_cast<std::size_t>(batch);
  const std::size_t sizes[] = {tb * static_cast<std::size_t>(nch * heads * kChunk) * sizeof(float),
                               tb * static_cast<std::size_t>(nch * kChunk) * sizeof(std::int32_t),
                               tb * static_cast<std::size_t>(nch) * sizeof(int),
                               tb * static_cast<std::size_t>(nch * heads) * sizeof(float),
                               tb * static_cast<std::size_t>(nch * heads) * sizeof(NormTrail),
                               tb * static_cast<std::size_t>(heads) * sizeof(float),
                               tb * static_cast<std::size_t>(heads) * sizeof(NormTrail),
                               static_cast<std::size_t>(n_kv) * sizeof(NormTrail)};
  std::size_t total = 0;
  for (const std::size_t z : sizes) total += align(z);
  // From the device's default pool (stream-ordered); its release threshold raised to keep at least
  // this workspace across synchronisations (the default 0 would map fresh memory at every call).
  int device = 0;
  cudaMemPool_t pool = nullptr;
  DSV4_CUDA_CHECK(cudaGetDevice(&device));
  DSV4_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  std::uint64_t keep = 0;
  DSV4_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  if (keep < total) {
    keep = total;
    DSV4_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  char* base = nullptr;
  DSV4_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&base), total, st));
  char* cursor = base;
  const auto take = [&](std::size_t i) {
    char* p = cursor;
    cursor += align(sizes[i]);
    return p;
  };
  Work w{};
  w.s = reinterpret_cast<float*>(take(0));
  w.idx = reinterpret_cast<std::int32_t*>(take(1));
  w.n = reinterpret_cast<int*>(take(2));
  w.alpha = reinterpret_cast<float*>(take(3));
  w.pnorm = reinterpret_cast<NormTrail*>(take(4));
  w.den = reinterpret_cast<float*>(take(5));
  w.qnorm = reinterpret_cast<NormTrail*>(take(6));
  auto* kv_norm = reinterpret_cast<NormTrail*>(take(7));
  const auto blocks = [](std::int64_t n, std::int64_t per) {
    return static_cast<unsigned>(std::min((n + per - 1) / per, kMaxGrid));
  };
  cudaError_t failed = cudaMemsetAsync(undecided, 0, static_cast<std::size_t>(tokens), st);
  constexpr int kNormRows = kSoftmaxThreads / 32;
  if (failed == cudaSuccess) {
    row_norms_up<<<blocks(n_kv, kNormRows), kSoftmaxThreads, 0, st>>>(kv, n_kv, c, kv_norm);
    failed = cudaGetLastError();
  }
  for (std::int64_t t0 = 0; t0 < tokens && failed == cudaSuccess; t0 += batch) {
    const std::int64_t tn = std::min(batch, tokens - t0);
    const Args a{q + t0 * heads * c,
                 tn,
                 heads,
                 c,
                 width,
                 nch,
                 n_kv,
                 lists + t0 * width,
                 kv,
                 kv_norm,
                 sink,
                 tau,
                 o + t0 * heads * c,
                 undecided + t0,
                 w,
                 reinterpret_cast<unsigned long long*>(warp_recomputed)};
    row_norms_up<<<blocks(tn * heads, kNormRows), kSoftmaxThreads, 0, st>>>(a.q, tn * heads, c, w.qnorm);
    chunk_logits_kernel<<<blocks(tn * nch * heads_tiles, 1), kTileThreads, 0, st>>>(a);
    softmax_kernel<<<blocks(tn * heads, kNormRows), kSoftmaxThreads, 0, st>>>(a);
    chunk_pv_kernel<<<blocks(tn * heads_tiles * col_tiles, 1), kTileThreads, 0, st>>>(a);
    failed = cudaGetLastError();
  }
  DSV4_CUDA_CHECK(cudaFreeAsync(base, st));
  if (failed != cudaSuccess) {
    detail::throw_cuda_error(failed, "the sparse_attention kernels", __FILE__, __LINE__);
  }
}

SparseAttentionBatch sparse_attention(const float* q, std::int64_t tokens, std::int64_t heads, std::int64_t c,
                                      const std::int32_t* lists, std::int64_t width, const float* kv, std::int64_t n_kv,
                                      const float* sink, double scale) {
  check_args(q, tokens, heads, c, lists, width, kv, n_kv, sink, "sparse_attention");
  // The reference's refusals, before any CUDA call (the device would only flag these tokens).
  for (std::int64_t t = 0; t < tokens; ++t) {
    bool first_valid = false;
    for (std::int64_t j = 0; j < width; ++j) {
      const std::int32_t e = lists[t * width + j];
      if (e < -1 || e >= n_kv) {
        throw std::invalid_argument("sparse_attention: lists: row " + std::to_string(t) + " entry " +
                                    std::to_string(j) + " = " + std::to_string(e) + " outside [-1, " +
                                    std::to_string(n_kv) + ")");
      }
      if (j < steps::kChunk && e != -1) first_valid = true;
    }
    if (!first_valid) {
      throw std::invalid_argument("sparse_attention: lists: row " + std::to_string(t) +
                                  ": the first chunk of 64 entries is all -1");
    }
  }
  const std::size_t T = static_cast<std::size_t>(tokens), H = static_cast<std::size_t>(heads),
                    C = static_cast<std::size_t>(c), W = static_cast<std::size_t>(width),
                    N = static_cast<std::size_t>(n_kv);
  SparseAttentionBatch out;
  out.o.resize(T * H * C);
  if (tokens == 0) return out;
  detail::DeviceBuffer<float> d_q(T * H * C), d_kv(N * C), d_sink(H), d_o(T * H * C);
  detail::DeviceBuffer<std::int32_t> d_lists(T * W);
  detail::DeviceBuffer<std::uint8_t> d_undecided(T);
  detail::DeviceBuffer<std::uint64_t> d_counts(2);
  const std::uint64_t zero[2] = {0, 0};
  d_counts.upload(zero);
  d_q.upload(q);
  d_kv.upload(kv);
  d_sink.upload(sink);
  d_lists.upload(lists);
  sparse_attention_device(d_q.get(), tokens, heads, c, d_lists.get(), width, d_kv.get(), n_kv, d_sink.get(),
                          static_cast<float>(scale), d_o.get(), d_undecided.get(), nullptr, d_counts.get());
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_o.download(out.o.data());
  std::uint64_t counts[2] = {0, 0};
  d_counts.download(counts);
  out.warp_recomputed = static_cast<std::int64_t>(counts[0] + counts[1]);
  std::vector<std::int64_t> flagged;
  out.recomputed =
      detail::recompute_undecided(d_undecided, [&](std::size_t t) { flagged.push_back(static_cast<std::int64_t>(t)); });
  detail::sparse_attention_reference_tokens(q, heads, c, lists, width, kv, n_kv, sink, scale, flagged, out.o.data());
  return out;
}

}  // namespace dsv4::gpu
