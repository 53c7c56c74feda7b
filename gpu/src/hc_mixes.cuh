// Device parts shared by the hc_pre and hc_head kernels (private header of gpu/src): the RMS-scaled
// mixes of spec 04 §4.2 steps 2–3 (also §4.5) and the weighted stream sum of §4.2 step 5 (also
// §4.5), each for one token computed by one thread block of kThreads threads.
//
// Every sum is a C1 sum (spec 01 §1.11: the exact sum rounded once). Its terms are exact doubles
// (products of two floats, fp32 squares), accumulated per thread in double with the TwoSum errors
// kept (common::SumC1Comp: the exact sum is s + Σ err), the threads' parts merged the same way
// (a TwoSum of the two sums adds its error to the errors), and rounded by common::round_c1_comp.
// A correctly rounded exact sum does not depend on the order of the terms or of the merges, so the
// result is the reference's whenever it is decided; an undecided sum makes the token undecided and
// the host recomputes it with the reference.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"

namespace dsv4::gpu::detail {

// a + b of two compensated parts: the TwoSum of the sums (its error joins the errors), the errors'
// sums and magnitudes added. The exact sum of both parts' terms is s + (exact Σ err) afterwards.
__device__ __forceinline__ common::SumC1Comp merge_comp(const common::SumC1Comp& a, const common::SumC1Comp& b) {
  common::SumC1Comp r = a;
  r.add(b.s);  // s ← s_a + s_b rounded, its TwoSum error added to c and cmag
  r.c = __dadd_rn(r.c, b.c);
  r.cmag = __dadd_rn(r.cmag, b.cmag);
  r.exact = r.exact && b.exact;
  return r;
}

__device__ __forceinline__ common::SumC1Comp shfl_xor_comp(const common::SumC1Comp& p, int lane_mask) {
  common::SumC1Comp o;
  o.s = __shfl_xor_sync(common::kFullMask, p.s, lane_mask);
  o.c = __shfl_xor_sync(common::kFullMask, p.c, lane_mask);
  o.cmag = __shfl_xor_sync(common::kFullMask, p.cmag, lane_mask);
  o.exact = __shfl_xor_sync(common::kFullMask, p.exact ? 1 : 0, lane_mask) != 0;
  return o;
}

// The C1 rounding of a sum of `count` terms split over the block's threads (each holding its part):
// warp butterflies, then thread 0 merges the warps' parts in warp order. The error sum c then holds
// at most count + kThreads exact errors (one per term, one per merge), which round_c1_comp's bound
// is given. Every thread of the block must call it; *out and the result are valid in thread 0.
template <int kThreads>
__device__ __forceinline__ bool round_c1_block(common::SumC1Comp part, std::int64_t count, float* out) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps");
  constexpr int kWarps = kThreads / 32;
  __shared__ double sh_s[kWarps], sh_c[kWarps], sh_cmag[kWarps];
  __shared__ int sh_exact[kWarps];
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) part = merge_comp(part, shfl_xor_comp(part, m));
  const int tid = static_cast<int>(threadIdx.x);
  if (tid % 32 == 0) {
    sh_s[tid / 32] = part.s;
    sh_c[tid / 32] = part.c;
    sh_cmag[tid / 32] = part.cmag;
    sh_exact[tid / 32] = part.exact ? 1 : 0;
  }
  __syncthreads();
  bool decided = true;
  if (tid == 0) {
    common::SumC1Comp all;
    for (int w = 0; w < kWarps; ++w) {
      common::SumC1Comp p;
      p.s = sh_s[w];
      p.c = sh_c[w];
      p.cmag = sh_cmag[w];
      p.exact = sh_exact[w] != 0;
      all = merge_comp(all, p);
    }
    decided = common::round_c1_comp(all, static_cast<int>(count + kThreads), out);
  }
  __syncthreads();  // the shared arrays may be reused after the call
  return decided;
}

// spec 04 §4.2 steps 2–3 (also §4.5) for one token's flattened state xr [len]: r = rsqrt(fl(fl(S ×
// inv_len) + eps)) with S the C1 sum of the fp32 squares fl(v²) (C7 mean, C2 rsqrt), and for each
// of the `mixes` rows of fn [mixes, len]: μ_m = fl(fl32(C1 Σ_i x_i·fn_mi) × r) (the GEMM rounded
// first; x·fn is exact in double). Thread 0 writes mu[0, mixes) and gets the result (decided).
template <int kThreads>
__device__ bool rms_scaled_mixes_block(const float* __restrict__ xr, std::int64_t len, const float* __restrict__ fn,
                                       int mixes, float inv_len, float eps, float* mu) {
  const int tid = static_cast<int>(threadIdx.x);
  common::SumC1Comp squares;
  for (std::int64_t i = tid; i < len; i += kThreads) squares.add(static_cast<double>(__fmul_rn(xr[i], xr[i])));
  float sum = 0.0f;
  bool ok = round_c1_block<kThreads>(squares, len, &sum);
  float r = 0.0f;
  if (tid == 0) ok = common::rsqrt_c2_dev(__fadd_rn(__fmul_rn(sum, inv_len), eps), &r) && ok;
  for (int m = 0; m < mixes; ++m) {
    const float* w = fn + static_cast<std::int64_t>(m) * len;
    common::SumC1Comp dot;
    for (std::int64_t i = tid; i < len; i += kThreads) {
      dot.add(__dmul_rn(static_cast<double>(xr[i]), static_cast<double>(w[i])));  // exact: 24 × 24 bits
    }
    float v = 0.0f;
    const bool dot_ok = round_c1_block<kThreads>(dot, len, &v);
    if (tid == 0) {
      ok = ok && dot_ok;
      mu[m] = __fmul_rn(v, r);
    }
  }
  return ok;
}

// spec 04 §4.2 step 5 (also §4.5) for one token: y_δ = bf16(C1 Σ_k fl(pre_k · x[k·d + δ])), δ < d,
// each element's n terms summed by one thread. Returns whether this thread decided all its elements.
template <int kThreads>
__device__ bool weighted_stream_sum_block(const float* pre, const float* __restrict__ xr, std::int64_t n,
                                          std::int64_t d, float* __restrict__ yr) {
  bool ok = true;
  for (std::int64_t delta = threadIdx.x; delta < d; delta += kThreads) {
    common::SumC1Comp part;
    for (std::int64_t k = 0; k < n; ++k) part.add(static_cast<double>(__fmul_rn(pre[k], xr[k * d + delta])));
    float sum = 0.0f;
    if (!common::round_c1_comp(part, static_cast<int>(n), &sum)) ok = false;
    yr[delta] = common::round_to_bf16(sum);
  }
  return ok;
}

}  // namespace dsv4::gpu::detail
