// hc_post kernel (spec 04 §4.4), bit-exact with the official-mode reference (ref/model/src/mhc.cpp
// hc_post) — see dsv4/gpu/hc_post.hpp for the arithmetic.
//
// One thread block of 256 threads per token (grid-stride over tokens): thread t computes elements
// t, t + 256, … of the token's n·d outputs, each from its own n products (a C1 sum of n ≤ 64 terms
// in one thread); the block's "all decided" is a barrier reduction (__syncthreads_and, exact), thread
// 0 writes the token's flag. A token's bits depend only on that token: no atomics, nothing across
// tokens.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/hc_post.hpp"
#include "hc_post_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;
constexpr std::int64_t kMaxStreams = 64;

__global__ void __launch_bounds__(kThreads)
    hc_post_kernel(const float* __restrict__ f, const float* __restrict__ residual, const float* __restrict__ post,
                   const float* __restrict__ comb, std::int64_t tokens, std::int64_t n, std::int64_t d,
                   float* __restrict__ y, std::uint8_t* __restrict__ undecided) {
  const std::int64_t width = n * d;
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const float* ft = f + t * d;
    const float* xt = residual + t * width;
    const float* pt = post + t * n;
    const float* ct = comb + t * n * n;
    float* yt = y + t * width;
    int ok = 1;
    for (std::int64_t e = threadIdx.x; e < width; e += kThreads) {
      const std::int64_t k = e / d;
      const std::int64_t delta = e - k * d;
      common::SumC1Comp part;
      for (std::int64_t j = 0; j < n; ++j) {
        part.add(static_cast<double>(__fmul_rn(ct[j * n + k], xt[j * d + delta])));  // fl32(comb[j, k] · X_j)
      }
      float mixed = 0.0f;
      if (!common::round_c1_comp(part, static_cast<int>(n), &mixed)) ok = 0;
      yt[e] = common::round_to_bf16(__fadd_rn(__fmul_rn(pt[k], ft[delta]), mixed));
    }
    const int all = __syncthreads_and(ok);  // also orders this token's work before the next token's
    if (threadIdx.x == 0) undecided[t] = all != 0 ? 0 : 1;
  }
}

void check_args(std::int64_t tokens, std::int64_t n, std::int64_t d, const char* who) {
  if (tokens < 0) throw std::invalid_argument(std::string(who) + ": tokens must be non-negative");
  if (n < 1 || n > kMaxStreams) {
    throw std::invalid_argument(std::string(who) + ": hc_mult must be in [1, 64], got " + std::to_string(n));
  }
  if (d < 1 || d > (std::int64_t{1} << 30)) {
    throw std::invalid_argument(std::string(who) + ": dim must be in [1, 2^30], got " + std::to_string(d));
  }
}

}  // namespace

void hc_post_device(const float* f, const float* residual, const float* post, const float* comb, std::int64_t tokens,
                    std::int64_t n, std::int64_t d, float* y, std::uint8_t* undecided, void* stream) {
  check_args(tokens, n, d, "hc_post_device");
  if (tokens == 0) return;
  const unsigned grid = static_cast<unsigned>(tokens < kMaxGrid ? tokens : kMaxGrid);
  hc_post_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(f, residual, post, comb, tokens, n, d, y,
                                                                           undecided);
  DSV4_CUDA_CHECK_LAUNCH("hc_post_kernel");
}

HcPostBatch hc_post(const float* f, const float* residual, const float* post, const float* comb, std::int64_t tokens,
                    std::int64_t n, std::int64_t d) {
  check_args(tokens, n, d, "hc_post");
  const std::size_t T = static_cast<std::size_t>(tokens), N = static_cast<std::size_t>(n),
                    D = static_cast<std::size_t>(d);
  HcPostBatch out;
  out.y.resize(T * N * D);
  if (tokens == 0) return out;
  detail::DeviceBuffer<float> d_f(T * D), d_x(T * N * D), d_post(T * N), d_comb(T * N * N), d_y(T * N * D);
  detail::DeviceBuffer<std::uint8_t> d_u(T);
  d_f.upload(f);
  d_x.upload(residual);
  d_post.upload(post);
  d_comb.upload(comb);
  hc_post_device(d_f.get(), d_x.get(), d_post.get(), d_comb.get(), tokens, n, d, d_y.get(), d_u.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  out.recomputed = detail::recompute_undecided(d_u, [&](std::size_t t) {
    detail::hc_post_reference(f + t * D, residual + t * N * D, post + t * N, comb + t * N * N, n, d, &out.y[t * N * D]);
  });
  return out;
}

}  // namespace dsv4::gpu
