// hc_split_sinkhorn kernel (spec 04 §4.3), bit-exact with the official-mode reference
// (ref/model/src/mhc.cpp) — see dsv4/gpu/mhc.hpp for the arithmetic rules.
//
// One thread block per token (grid-stride over tokens), 64 threads: thread j < n owns row j (its
// max, softmax and row sum) and column j (its sum); thread j·n + k owns comb[j][k]. Every value of
// a token depends only on that token's mixes and the shared scale/base, in a fixed order: no
// atomics, no cross-token reduction. Built with --fmad=false -prec-div=true -ftz=false
// (gpu/CMakeLists.txt); every rounding is written as an explicit _rn intrinsic anyway.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/mhc.hpp"
#include "mhc_reference.hpp"

namespace dsv4::gpu {
namespace {

using common::exp_c2_dev;
using common::sigmoid_c2_dev;
using common::sum_c1_dev;

constexpr int kThreads = 64;  // ≥ kMaxHcMult²
constexpr int kMaxMixes = (2 + kMaxHcMult) * kMaxHcMult;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    hc_split_sinkhorn_kernel(const float* __restrict__ mixes, std::int64_t tokens, int n,
                             const float* __restrict__ scale, const float* __restrict__ base, int iters, float eps,
                             float* __restrict__ pre, float* __restrict__ post, float* __restrict__ comb,
                             std::uint8_t* __restrict__ undecided) {
  __shared__ float mu[kMaxMixes];
  __shared__ float m[kMaxHcMult * kMaxHcMult];
  __shared__ float den[kMaxHcMult];
  const int tid = static_cast<int>(threadIdx.x);
  const int mix_count = (2 + n) * n;
  const int nn = n * n;
  const int j = tid / n, k = tid % n;  // the comb entry of threads tid < n²
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    bool ok = true;
    for (int i = tid; i < mix_count; i += kThreads) mu[i] = mixes[t * mix_count + i];
    __syncthreads();
    // steps 1–3: gates and comb logits, affine maps as one FMA each (C3)
    if (tid < n) {
      float s = 0.0f;
      ok &= sigmoid_c2_dev(__fmaf_rn(mu[tid], scale[0], base[tid]), &s);
      pre[t * n + tid] = __fadd_rn(s, eps);
      ok &= sigmoid_c2_dev(__fmaf_rn(mu[n + tid], scale[1], base[n + tid]), &s);
      post[t * n + tid] = __fmul_rn(2.0f, s);
    }
    if (tid < nn) m[tid] = __fmaf_rn(mu[2 * n + tid], scale[2], base[2 * n + tid]);
    __syncthreads();
    // step 4: row softmax (max subtracted), then + ε
    if (tid < n) {
      float* row = m + tid * n;
      float mx = row[0];
      for (int c = 1; c < n; ++c) mx = fmaxf(mx, row[c]);
      for (int c = 0; c < n; ++c) ok &= exp_c2_dev(__fsub_rn(row[c], mx), &row[c]);
      ok &= sum_c1_dev(row, n, 1, &den[tid]);
    }
    __syncthreads();
    if (tid < nn) m[tid] = __fadd_rn(__fdiv_rn(m[tid], den[j]), eps);
    __syncthreads();
    // step 5: column normalisation; step 6: iters − 1 × (row, column)
    for (int it = 0; it < iters; ++it) {
      if (it > 0) {
        if (tid < n) {
          float r = 0.0f;
          ok &= sum_c1_dev(m + tid * n, n, 1, &r);
          den[tid] = __fadd_rn(r, eps);
        }
        __syncthreads();
        if (tid < nn) m[tid] = __fdiv_rn(m[tid], den[j]);
        __syncthreads();
      }
      if (tid < n) {
        float c = 0.0f;
        ok &= sum_c1_dev(m + tid, n, n, &c);
        den[tid] = __fadd_rn(c, eps);
      }
      __syncthreads();
      if (tid < nn) m[tid] = __fdiv_rn(m[tid], den[k]);
      __syncthreads();
    }
    if (tid < nn) comb[t * nn + tid] = m[tid];
    const int any_undecided = __syncthreads_or(ok ? 0 : 1);
    if (tid == 0) undecided[t] = static_cast<std::uint8_t>(any_undecided != 0 ? 1 : 0);
  }
}

__global__ void exp_c2_kernel(const float* __restrict__ x, std::int64_t count, float* __restrict__ out,
                              std::uint8_t* __restrict__ undecided) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float r = 0.0f;
    undecided[i] = exp_c2_dev(x[i], &r) ? 0 : 1;
    out[i] = r;
  }
}

void check_args(std::int64_t tokens, int n, int iters, const char* who) {
  const std::string w(who);
  if (tokens < 0) throw std::invalid_argument(w + ": tokens must be non-negative");
  if (n < 1 || n > kMaxHcMult) {
    throw std::invalid_argument(w + ": hc_mult must be in [1, " + std::to_string(kMaxHcMult) + "], got " +
                                std::to_string(n));
  }
  if (iters < 1) throw std::invalid_argument(w + ": hc_sinkhorn_iters must be at least 1");
}

}  // namespace

void hc_split_sinkhorn_device(const float* mixes, std::int64_t tokens, int n, const float* scale, const float* base,
                              int iters, float eps, float* pre, float* post, float* comb, std::uint8_t* undecided,
                              void* stream) {
  check_args(tokens, n, iters, "hc_split_sinkhorn_device");
  if (tokens == 0) return;
  const unsigned grid = static_cast<unsigned>(tokens < kMaxGrid ? tokens : kMaxGrid);
  hc_split_sinkhorn_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      mixes, tokens, n, scale, base, iters, eps, pre, post, comb, undecided);
  DSV4_CUDA_CHECK_LAUNCH("hc_split_sinkhorn_kernel");
}

SinkhornBatch hc_split_sinkhorn(const float* mixes, std::int64_t tokens, int n, const float* scale, const float* base,
                                int iters, double eps) {
  check_args(tokens, n, iters, "hc_split_sinkhorn");
  const std::size_t t = static_cast<std::size_t>(tokens), nz = static_cast<std::size_t>(n);
  const std::size_t mix_count = (2 + nz) * nz;
  SinkhornBatch out;
  out.pre.resize(t * nz);
  out.post.resize(t * nz);
  out.comb.resize(t * nz * nz);
  if (tokens == 0) return out;
  detail::DeviceBuffer<float> d_mixes(t * mix_count), d_scale(3), d_base(mix_count), d_pre(t * nz), d_post(t * nz),
      d_comb(t * nz * nz);
  detail::DeviceBuffer<std::uint8_t> d_undecided(t);
  d_mixes.upload(mixes);
  d_scale.upload(scale);
  d_base.upload(base);
  hc_split_sinkhorn_device(d_mixes.get(), tokens, n, d_scale.get(), d_base.get(), iters, static_cast<float>(eps),
                           d_pre.get(), d_post.get(), d_comb.get(), d_undecided.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_pre.download(out.pre.data());
  d_post.download(out.post.data());
  d_comb.download(out.comb.data());
  out.recomputed = detail::recompute_undecided(d_undecided, [&](std::size_t i) {
    detail::hc_split_sinkhorn_reference(mixes + i * mix_count, n, scale, base, iters, eps, &out.pre[i * nz],
                                        &out.post[i * nz], &out.comb[i * nz * nz]);
  });
  return out;
}

void exp_c2(const float* x, std::int64_t count, float* out, std::uint8_t* undecided) {
  if (count < 0) throw std::invalid_argument("exp_c2: count must be non-negative");
  if (count == 0) return;
  const std::size_t c = static_cast<std::size_t>(count);
  detail::DeviceBuffer<float> d_x(c), d_out(c);
  detail::DeviceBuffer<std::uint8_t> d_u(c);
  d_x.upload(x);
  const std::int64_t blocks = (count + 255) / 256;
  exp_c2_kernel<<<static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid), 256>>>(d_x.get(), count, d_out.get(),
                                                                                       d_u.get());
  DSV4_CUDA_CHECK_LAUNCH("exp_c2_kernel");
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_out.download(out);
  d_u.download(undecided);
}

}  // namespace dsv4::gpu
