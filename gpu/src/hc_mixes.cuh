// Device parts shared by the hc_pre and hc_head kernels (private header of gpu/src): the RMS-scaled
// mixes of spec 04 §4.2 steps 2–3 (also §4.5) and the weighted stream sum of §4.2 step 5 (also
// §4.5), each for one token computed by one thread block of kThreads threads.
//
// Every sum is a C1 sum (spec 01 §1.11: the exact sum rounded once). Its terms are exact doubles
// (products of two floats, fp32 squares), accumulated per thread in double with the TwoSum errors
// kept (common::SumC1Comp: the exact sum is s + Σ err), the threads' parts merged the same way
// (a TwoSum of the two sums adds its error to the errors; common::sum_c1_comp_block), and rounded
// by common::round_c1_comp.
// A correctly rounded exact sum does not depend on the order of the terms or of the merges, so the
// result is the reference's whenever it is decided; an undecided sum makes the token undecided and
// the host recomputes it with the reference.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"

namespace dsv4::gpu::detail {

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
  bool ok = common::sum_c1_comp_block<kThreads>(squares, len, &sum);
  float r = 0.0f;
  if (tid == 0) ok = common::rsqrt_c2_dev(__fadd_rn(__fmul_rn(sum, inv_len), eps), &r) && ok;
  for (int m = 0; m < mixes; ++m) {
    const float* w = fn + static_cast<std::int64_t>(m) * len;
    common::SumC1Comp dot;
    for (std::int64_t i = tid; i < len; i += kThreads) {
      dot.add(__dmul_rn(static_cast<double>(xr[i]), static_cast<double>(w[i])));  // exact: 24 × 24 bits
    }
    float v = 0.0f;
    const bool dot_ok = common::sum_c1_comp_block<kThreads>(dot, len, &v);
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
