// The FP64 tensor-core step both tiled kernels use (linear.cu, sparse_attention.cu): one
// mma.sync m8n8k4 of doubles, and the γ factor of the rigorous bound of a DMMA sum.
#pragma once

#include <cstdint>

namespace dsv4::gpu {

// c += a·b for one 8×8×4 DMMA fragment (inline PTX, sm_80 and sm_90a): each k-step an IEEE fp64
// FMA or better (the assumption linear.cu states).
__device__ __forceinline__ void dmma_8x8x4(double a, double b, double (&c)[2]) {
  asm volatile("mma.sync.aligned.m8n8k4.row.col.f64.f64.f64.f64 {%0, %1}, {%2}, {%3}, {%0, %1};"
               : "+d"(c[0]), "+d"(c[1])
               : "d"(a), "d"(b));
}

// γ_Kp's factor for a DMMA sum of Kp terms: Kp·2^-53·(1 + 2^-20), rounded up (γ_n = n·2^-53 /
// (1 − n·2^-53) < n·2^-53·(1 + 2^-20) for n ≤ 2^25).
__device__ __forceinline__ double gamma_of(std::int64_t kp) {
  return __dmul_ru(static_cast<double>(kp), 0x1.00001p-53);
}

}  // namespace dsv4::gpu
