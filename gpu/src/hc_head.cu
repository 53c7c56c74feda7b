// hc_head kernel (spec 04 §4.5), bit-exact with the official-mode reference (ref/model/src/mhc.cpp
// hc_head) — see dsv4/gpu/hc_head.hpp for the arithmetic.
//
// One thread block of 256 threads per token (grid-stride over tokens): the n mixes (gpu/src/
// hc_mixes.cuh, thread 0 writes them to shared memory), the n gates (threads k < n), then the
// weighted stream sum. A token's bits depend only on that token: no atomics, nothing across tokens.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/hc_head.hpp"
#include "hc_head_reference.hpp"
#include "hc_mixes.cuh"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxStreams = 64;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    hc_head_kernel(const float* __restrict__ x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                   const float* __restrict__ fn, const float* __restrict__ base, float scale, float inv_len,
                   float hc_eps, float norm_eps, float* __restrict__ y, std::uint8_t* __restrict__ undecided) {
  __shared__ float mu[kMaxStreams];
  __shared__ float pre[kMaxStreams];
  __shared__ int mixes_ok;
  const int tid = static_cast<int>(threadIdx.x);
  const std::int64_t len = n * d;
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const float* xt = x + t * len;
    const bool ok_mixes =
        detail::rms_scaled_mixes_block<kThreads>(xt, len, fn, static_cast<int>(n), inv_len, norm_eps, mu);
    if (tid == 0) mixes_ok = ok_mixes ? 1 : 0;
    __syncthreads();
    bool ok = true;
    if (tid < n) {  // pre_k = fl(σ(fl(fl(μ_k·α) + b_k)) + ε)
      float s = 0.0f;
      ok = common::sigmoid_c2_dev(__fadd_rn(__fmul_rn(mu[tid], scale), base[tid]), &s);
      pre[tid] = __fadd_rn(s, hc_eps);
    }
    __syncthreads();
    ok = detail::weighted_stream_sum_block<kThreads>(pre, xt, n, d, y + t * d) && ok;
    const int all = __syncthreads_and(ok ? 1 : 0);  // also orders this token's shared use before the next's
    if (tid == 0) undecided[t] = all != 0 && mixes_ok != 0 ? 0 : 1;
    __syncthreads();  // mixes_ok is rewritten for the next token
  }
}

void check_args(std::int64_t tokens, std::int64_t n, std::int64_t d, const char* who) {
  const std::string w(who);
  if (tokens < 0) throw std::invalid_argument(w + ": tokens must be non-negative");
  if (n < 1 || n > kMaxStreams) {
    throw std::invalid_argument(w + ": hc_mult must be in [1, " + std::to_string(kMaxStreams) + "], got " +
                                std::to_string(n));
  }
  if (d < 1 || d > (std::int64_t{1} << 24)) {
    throw std::invalid_argument(w + ": dim must be in [1, 2^24], got " + std::to_string(d));
  }
}

}  // namespace

void hc_head_device(const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d, const float* fn,
                    const float* base, float scale, float hc_eps, float norm_eps, float* y, std::uint8_t* undecided,
                    void* stream) {
  check_args(tokens, n, d, "hc_head_device");
  if (tokens == 0) return;
  const float inv_len = static_cast<float>(1.0 / static_cast<double>(n * d));  // fl32(1/(n·d)), as the reference
  const unsigned grid = static_cast<unsigned>(std::min(tokens, kMaxGrid));
  hc_head_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, tokens, n, d, fn, base, scale, inv_len,
                                                                           hc_eps, norm_eps, y, undecided);
  DSV4_CUDA_CHECK_LAUNCH("hc_head_kernel");
}

HcHeadBatch hc_head(const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d, const float* fn,
                    const float* base, float scale, double hc_eps, double norm_eps) {
  check_args(tokens, n, d, "hc_head");
  const std::size_t T = static_cast<std::size_t>(tokens), N = static_cast<std::size_t>(n),
                    D = static_cast<std::size_t>(d);
  HcHeadBatch out;
  out.y.resize(T * D);
  if (tokens == 0) return out;
  detail::DeviceBuffer<float> d_x(T * N * D), d_fn(N * N * D), d_base(N), d_y(T * D);
  detail::DeviceBuffer<std::uint8_t> d_u(T);
  d_x.upload(x);
  d_fn.upload(fn);
  d_base.upload(base);
  hc_head_device(d_x.get(), tokens, n, d, d_fn.get(), d_base.get(), scale, static_cast<float>(hc_eps),
                 static_cast<float>(norm_eps), d_y.get(), d_u.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  out.recomputed = detail::recompute_undecided(d_u, [&](std::size_t t) {
    detail::hc_head_reference(x + t * N * D, n, d, fn, base, scale, hc_eps, norm_eps, &out.y[t * D]);
  });
  return out;
}

}  // namespace dsv4::gpu
