// Device helpers for the canonical arithmetic of ref/spec/01-numerics.md §1.11 (C1 exact sums
// rounded once, C2 correctly rounded functions), usable by any kernel of dsv4_gpu: each returns
// whether it could decide the correctly rounded result; a kernel flags what is undecided and the
// host recomputes it with the reference (gpu/README.md, "the precision contract").
// Compile with --fmad=false -prec-div=true -ftz=false (gpu/CMakeLists.txt).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dsv4::gpu::common {

// fl32 of a double y whose exact counterpart lies within ±err of it: decided when the whole
// interval rounds to one float (rounding is monotone).
__device__ __forceinline__ bool round_interval(double y, double err, float* out) {
  const float lo = __double2float_rn(__dsub_rn(y, err));
  const float hi = __double2float_rn(__dadd_rn(y, err));
  *out = lo;
  return lo == hi;
}

// C2 exp: the CUDA double exp has ≤ 1 ulp error (CUDA Math API, double-precision functions); the
// interval ±|y|·2^-51 (≥ 2 ulps) contains the exact value. Special cases as cr_exp.
__device__ __forceinline__ bool exp_c2_dev(float x, float* out) {
  if (isnan(x)) {
    *out = x;
    return true;
  }
  if (isinf(x)) {
    *out = x > 0.0f ? x : 0.0f;
    return true;
  }
  if (x == 0.0f) {
    *out = 1.0f;
    return true;
  }
  const double y = exp(static_cast<double>(x));
  if (isinf(y) || y == 0.0) {
    *out = __double2float_rn(y);
    return true;
  }
  return round_interval(y, __dmul_rn(fabs(y), 0x1p-51), out);
}

// C2 sigmoid: fl(1 / fl(1 + exp(−x))).
__device__ __forceinline__ bool sigmoid_c2_dev(float x, float* out) {
  float e = 0.0f;
  const bool ok = exp_c2_dev(-x, &e);
  *out = __fdiv_rn(1.0f, __fadd_rn(1.0f, e));
  return ok;
}

// C2 log1p: the CUDA double log1p has ≤ 1 ulp error (CUDA Math API, double-precision functions);
// the interval ±|y|·2^-51 contains the exact value. Special cases as cr_log1p: ±0 → ±0, −1 → −inf,
// +inf → +inf, x < −1 or NaN → NaN.
__device__ __forceinline__ bool log1p_c2_dev(float x, float* out) {
  if (isnan(x) || x == 0.0f || isinf(x) || x <= -1.0f) {
    *out = __double2float_rn(log1p(static_cast<double>(x)));
    return true;
  }
  const double y = log1p(static_cast<double>(x));
  return round_interval(y, __dmul_rn(fabs(y), 0x1p-51), out);
}

// C2 softplus (PyTorch's, β = 1, threshold 20; the reference's softplus_c2): x when x > 20, else
// fl(log1p(fl(exp(x)))).
__device__ __forceinline__ bool softplus_c2_dev(float x, float* out) {
  if (x > 20.0f) {
    *out = x;
    return true;
  }
  float e = 0.0f;
  const bool ok = exp_c2_dev(x, &e);
  return log1p_c2_dev(e, out) && ok;
}

// C2 silu (the reference's silu_c2): fl(x / fl(1 + exp(−x))).
__device__ __forceinline__ bool silu_c2_dev(float x, float* out) {
  float e = 0.0f;
  const bool ok = exp_c2_dev(-x, &e);
  *out = __fdiv_rn(x, __fadd_rn(1.0f, e));
  return ok;
}

// Knuth's TwoSum, each step one round-to-nearest intrinsic: t = fl(s + a) and err, the exact
// rounding error of that addition (s + a = t + err exactly, barring overflow).
struct TwoSum {
  double t, err;
};
__device__ __forceinline__ TwoSum two_sum(double s, double a) {
  const double t = __dadd_rn(s, a);
  const double bp = __dsub_rn(t, s);
  return {t, __dadd_rn(__dsub_rn(s, __dsub_rn(t, bp)), __dsub_rn(a, bp))};
}

// Sequential double accumulation of one thread's share of a C1 sum: s (the double sum), mag (Σ|v|)
// and whether every TwoSum error so far was zero (then s is the exact sum).
struct SumC1Part {
  double s = 0.0, mag = 0.0;
  bool exact = true;
  __device__ __forceinline__ void add(double a) {
    const TwoSum r = two_sum(s, a);
    if (r.err != 0.0) exact = false;
    s = r.t;
    mag = __dadd_rn(mag, fabs(a));
  }
};

// C1 sum of count floats at v[0], v[stride], …: the exact sum rounded once. The sequential double
// sum is exact when every TwoSum error is zero; otherwise its error is ≤ (count − 1)·2^-53·Σ|v|,
// bounded here by 2·count·2^-53·Σ|v| (Σ|v| itself computed in double).
// The rounding of a C1 sum s of `count` terms (any order), Σ|v| = mag: exact sums round once;
// otherwise decided when the interval of the error bound 2·count·2^-53·mag rounds to one float.
__device__ __forceinline__ bool round_c1(double s, double mag, bool exact, int count, float* out) {
  if (exact || !isfinite(s)) {
    *out = __double2float_rn(s);
    return true;
  }
  return round_interval(s, __dmul_rn(mag, 2.0 * count * 0x1p-53), out);
}

__device__ __forceinline__ bool sum_c1_dev(const float* v, int count, int stride, float* out) {
  SumC1Part part;
  for (int i = 0; i < count; ++i) part.add(static_cast<double>(v[i * stride]));
  return round_c1(part.s, part.mag, part.exact, count, out);
}

// A C1 sum of a few terms with its rounding errors kept (compensated summation): s is the
// sequential double sum, c the double sum of the TwoSum errors (exact errors: the exact sum of the
// terms is s + Σ err exactly, barring overflow), cmag = Σ|err|. Where the plain error bound of
// round_c1 is too wide — an exact sum on or next to an fp32 rounding boundary, decided by terms far
// smaller than the large ones — round_c1_comp still decides, from s + c within the small bound of c.
struct SumC1Comp {
  double s = 0.0, c = 0.0, cmag = 0.0;
  bool exact = true;
  __device__ __forceinline__ void add(double a) {
    const TwoSum r = two_sum(s, a);
    if (r.err != 0.0) exact = false;
    s = r.t;
    c = __dadd_rn(c, r.err);
    cmag = __dadd_rn(cmag, fabs(r.err));
  }
};

// Whether the exact value V, known to lie in [s + lo, s + hi] (lo ≤ hi), lies strictly between the
// rounding boundaries of the float r: then RNE(V) = r, stored in *out. Each comparison is evaluated
// with directed roundings, so "true" is rigorous; the boundaries (r ± half an ulp) are exact in
// double. For r = ±0 the zero's sign is V's, so it is decided only when V's sign is (a V of exactly
// 0 — +0 by the sum rule — is left undecided: the bounds cannot tell it from a tiny V of either sign).
__device__ __forceinline__ bool rounds_to(double s, double lo, double hi, float r, float* out) {
  if (!isfinite(r)) return false;
  const float up = nextafterf(r, __int_as_float(0x7f800000)), dn = nextafterf(r, -__int_as_float(0x7f800000));
  if (!isfinite(up) || !isfinite(dn)) return false;
  const double mu = __dmul_rn(0.5, __dadd_rn(static_cast<double>(r), static_cast<double>(up)));
  const double ml = __dmul_rn(0.5, __dadd_rn(static_cast<double>(r), static_cast<double>(dn)));
  const bool above_ml = __dadd_rd(__dsub_rd(s, ml), lo) > 0.0;  // V − ml ≥ (s − ml) + lo > 0
  const bool below_mu = __dadd_ru(__dsub_ru(s, mu), hi) < 0.0;  // V − mu ≤ (s − mu) + hi < 0
  if (!above_ml || !below_mu) return false;
  if (r == 0.0f) {
    if (__dadd_rd(s, lo) > 0.0) {
      *out = 0.0f;
      return true;
    }
    if (__dadd_ru(s, hi) < 0.0) {
      *out = -0.0f;
      return true;
    }
    return false;
  }
  *out = r;
  return true;
}

// The C1 rounding of a compensated sum of `count` terms: exact sums round once; otherwise V lies in
// s + c ± b with b = 2·count·2^-53·cmag (the error of the double sum c of the count exact errors,
// any order, with cmag's own error covered by the factor 2); decided when that interval lies
// strictly inside the rounding range of RN(s) or of one of its neighbours, or wholly beyond the
// overflow threshold (±inf).
__device__ __forceinline__ bool round_c1_comp(const SumC1Comp& p, int count, float* out) {
  if (p.exact || !isfinite(p.s)) {
    *out = __double2float_rn(p.s);
    return true;
  }
  const double b = __dmul_ru(p.cmag, 2.0 * count * 0x1p-53);
  const double lo = __dsub_rd(p.c, b), hi = __dadd_ru(p.c, b);
  // Beyond the fp32 range: RNE sends |V| ≥ FLT_MAX + half an ulp = (2 − 2^-24)·2^127 to ±inf (the
  // tie goes to the even 2^128), decided when the whole interval lies there.
  constexpr double kOverflow = 0x1.ffffffp127;
  if (__dadd_rd(p.s, lo) >= kOverflow) {
    *out = __int_as_float(0x7f800000);
    return true;
  }
  if (__dadd_ru(p.s, hi) <= -kOverflow) {
    *out = -__int_as_float(0x7f800000);
    return true;
  }
  const float r = __double2float_rn(p.s);
  const float inf = __int_as_float(0x7f800000);
  const float candidates[3] = {r, nextafterf(r, inf), nextafterf(r, -inf)};
  for (int i = 0; i < 3; ++i) {
    if (rounds_to(p.s, lo, hi, candidates[i], out)) return true;
  }
  *out = r;
  return false;
}

// C2 rsqrt (spec 01 §1.11 C2; the reference's cr_rsqrt): 1/sqrt(double(x)) is two correctly
// rounded double operations (relative error < 3 double ulps); the interval ±|y|·2^-51 contains the
// exact value. Special cases as cr_rsqrt: ±0 → ±inf, +inf → +0 (x < 0 or NaN never reach it here).
__device__ __forceinline__ bool rsqrt_c2_dev(float x, float* out) {
  if (x == 0.0f) {
    *out = copysignf(__int_as_float(0x7f800000), x);
    return true;
  }
  if (isinf(x)) {
    *out = 0.0f;
    return true;
  }
  const double y = __drcp_rn(__dsqrt_rn(static_cast<double>(x)));
  return round_interval(y, __dmul_rn(fabs(y), 0x1p-51), out);
}

// a + b of two compensated parts: the TwoSum of the sums (its error joins the errors), the errors'
// sums and magnitudes added. The exact sum of both parts' terms is s + (exact Σ err) afterwards.
__device__ __forceinline__ SumC1Comp merge_comp(const SumC1Comp& a, const SumC1Comp& b) {
  SumC1Comp r = a;
  r.add(b.s);  // s ← s_a + s_b rounded, its TwoSum error added to c and cmag
  r.c = __dadd_rn(r.c, b.c);
  r.cmag = __dadd_rn(r.cmag, b.cmag);
  r.exact = r.exact && b.exact;
  return r;
}

// The merge of the 32 lanes' parts of a warp by butterflies (every lane must call it; every lane
// gets a merge of all 32 parts, 31 merges deep in a tree).
__device__ __forceinline__ SumC1Comp warp_merge_comp(SumC1Comp p) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) {
    SumC1Comp o;
    o.s = __shfl_xor_sync(0xFFFFFFFFu, p.s, m);
    o.c = __shfl_xor_sync(0xFFFFFFFFu, p.c, m);
    o.cmag = __shfl_xor_sync(0xFFFFFFFFu, p.cmag, m);
    o.exact = __shfl_xor_sync(0xFFFFFFFFu, p.exact ? 1 : 0, m) != 0;
    p = merge_comp(p, o);
  }
  return p;
}

// The C1 rounding of a sum of `count` terms split over the kThreads threads of a block (each
// holding its compensated part): warp butterflies, then thread 0 merges the warps' parts in warp
// order. The error sum c then holds at most count + kThreads exact errors (one per term, one per
// merge), which round_c1_comp's bound is given; the exact sum rounded once does not depend on the
// order, so the result is the reference's whenever decided. Every thread of the block must call it;
// *out and the result are valid in thread 0.
template <int kThreads>
__device__ __forceinline__ bool sum_c1_comp_block(const SumC1Comp& part, std::int64_t count, float* out) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps");
  constexpr int kWarps = kThreads / 32;
  __shared__ double sh_s[kWarps], sh_c[kWarps], sh_cmag[kWarps];
  __shared__ int sh_exact[kWarps];
  const SumC1Comp w = warp_merge_comp(part);
  const int tid = static_cast<int>(threadIdx.x);
  if (tid % 32 == 0) {
    sh_s[tid / 32] = w.s;
    sh_c[tid / 32] = w.c;
    sh_cmag[tid / 32] = w.cmag;
    sh_exact[tid / 32] = w.exact ? 1 : 0;
  }
  __syncthreads();
  bool decided = true;
  if (tid == 0) {
    SumC1Comp all;
    for (int i = 0; i < kWarps; ++i) {
      SumC1Comp p;
      p.s = sh_s[i];
      p.c = sh_c[i];
      p.cmag = sh_cmag[i];
      p.exact = sh_exact[i] != 0;
      all = merge_comp(all, p);
    }
    decided = round_c1_comp(all, static_cast<int>(count + kThreads), out);
  }
  __syncthreads();  // the shared arrays may be reused after the call
  return decided;
}

}  // namespace dsv4::gpu::common
