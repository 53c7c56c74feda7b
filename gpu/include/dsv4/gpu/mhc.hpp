// GPU hc_split_sinkhorn (spec 04 §4.3), bit-exact with the CPU reference in official mode
// (dsv4/model/mhc.hpp: hc_split_sinkhorn with Precision(Mode::kOfficial)) and batch-invariant: one
// thread block per token computes that token from its own mixes alone, in a fixed order.
//
// The canonical arithmetic on the device (spec 01 §1.11):
// - C3: the affine maps μ·α + b are one fp32 FMA (__fmaf_rn); every other operation is one IEEE
//   fp32 operation (__fadd_rn, __fdiv_rn, …), never contracted;
// - C2: exp is correctly rounded — the CUDA double exp (≤ 1 double ulp, CUDA Math API) rounded to
//   fp32 when the whole interval ±2 double ulps rounds to one float;
// - C1: the row and column sums are the exact sums rounded once — a double sum, exact when every
//   TwoSum error is zero, otherwise rounded when the interval of its error bound rounds to one float.
// A token where one of these checks leaves the rounding undecided is flagged; the host entry point
// recomputes flagged tokens with the CPU reference (so its result is always the reference's), and
// reports how many it recomputed.
//
// Plain C++ header (no CUDA types). *_device functions take device pointers and a stream
// (cudaStream_t as void*, nullptr = default stream) and only enqueue work. CUDA failures throw
// dsv4::gpu::CudaError; bad arguments throw std::invalid_argument naming the field.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

// The largest hc_mult the kernel supports (one thread per comb entry, n² ≤ 64).
inline constexpr int kMaxHcMult = 8;

struct SinkhornBatch {
  std::vector<float> pre;       // [tokens, n]
  std::vector<float> post;      // [tokens, n]
  std::vector<float> comb;      // [tokens, n, n] row-major: comb[t][j][k]
  std::int64_t recomputed = 0;  // tokens the device left undecided, recomputed by the CPU reference
};

// mixes [tokens, (2+n)n], scale [3], base [(2+n)n] (fp32 values); n = hc_mult ∈ [1, 8],
// iters = hc_sinkhorn_iters ≥ 1, eps = hc_eps (used as fl32(eps), as the reference does).
SinkhornBatch hc_split_sinkhorn(const float* mixes, std::int64_t tokens, int n, const float* scale, const float* base,
                                int iters, double eps);

// Device-pointer form: writes pre, post, comb and undecided[t] (1 when token t must be recomputed
// on the host, else 0).
void hc_split_sinkhorn_device(const float* mixes, std::int64_t tokens, int n, const float* scale, const float* base,
                              int iters, float eps, float* pre, float* post, float* comb, std::uint8_t* undecided,
                              void* stream = nullptr);

// For tests: the device's C2 exp on host data (out[i] = exp(x[i]) correctly rounded where
// undecided[i] == 0).
void exp_c2(const float* x, std::int64_t count, float* out, std::uint8_t* undecided);

}  // namespace dsv4::gpu
