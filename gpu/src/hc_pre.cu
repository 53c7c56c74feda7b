// hc_pre kernels (spec 04 §4.2), bit-exact with the official-mode reference (ref/model/src/mhc.cpp
// hc_pre) — see dsv4/gpu/hc_pre.hpp for the arithmetic.
//
// Three launches on one stream: the mixes (one block of 256 threads per token: the RMS factor and
// the (2+n)n dot products, gpu/src/hc_mixes.cuh), the Sinkhorn split (hc_split_sinkhorn_device),
// the weighted stream sum (one block per token; it also folds the Sinkhorn's flag into the token's).
// A token's bits depend only on that token: no atomics, nothing across tokens.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/hc_pre.hpp"
#include "dsv4/gpu/mhc.hpp"
#include "hc_mixes.cuh"
#include "hc_pre_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    hc_pre_mixes_kernel(const float* __restrict__ x, std::int64_t tokens, std::int64_t len,
                        const float* __restrict__ fn, int mixes, float inv_len, float norm_eps, float* __restrict__ mu,
                        std::uint8_t* __restrict__ undecided) {
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const bool ok =
        detail::rms_scaled_mixes_block<kThreads>(x + t * len, len, fn, mixes, inv_len, norm_eps, mu + t * mixes);
    if (threadIdx.x == 0) undecided[t] = ok ? 0 : 1;
  }
}

__global__ void __launch_bounds__(kThreads)
    hc_pre_sum_kernel(const float* __restrict__ x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                      const float* __restrict__ pre, const std::uint8_t* __restrict__ sinkhorn_undecided,
                      float* __restrict__ y, std::uint8_t* __restrict__ undecided) {
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const bool ok = detail::weighted_stream_sum_block<kThreads>(pre + t * n, x + t * n * d, n, d, y + t * d);
    const int all = __syncthreads_and(ok ? 1 : 0);
    if (threadIdx.x == 0 && (all == 0 || sinkhorn_undecided[t] != 0)) undecided[t] = 1;
  }
}

void check_args(std::int64_t tokens, std::int64_t n, std::int64_t d, int iters, const char* who) {
  const std::string w(who);
  if (tokens < 0) throw std::invalid_argument(w + ": tokens must be non-negative");
  if (n < 1 || n > kMaxHcMult) {
    throw std::invalid_argument(w + ": hc_mult must be in [1, " + std::to_string(kMaxHcMult) + "], got " +
                                std::to_string(n));
  }
  if (d < 1 || d > (std::int64_t{1} << 26)) {
    throw std::invalid_argument(w + ": dim must be in [1, 2^26], got " + std::to_string(d));
  }
  if (iters < 1) throw std::invalid_argument(w + ": hc_sinkhorn_iters must be at least 1");
}

}  // namespace

void hc_pre_device(const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d, const float* fn,
                   const float* base, const float* scale, int iters, float hc_eps, float norm_eps, float* y,
                   float* post, float* comb, float* mixes, float* pre, std::uint8_t* sinkhorn_undecided,
                   std::uint8_t* undecided, void* stream) {
  check_args(tokens, n, d, iters, "hc_pre_device");
  if (tokens == 0) return;
  const std::int64_t len = n * d;
  const int mix_count = static_cast<int>((2 + n) * n);
  const float inv_len = static_cast<float>(1.0 / static_cast<double>(len));  // fl32(1/(n·d)), as the reference
  const unsigned grid = static_cast<unsigned>(std::min(tokens, kMaxGrid));
  const auto s = static_cast<cudaStream_t>(stream);
  hc_pre_mixes_kernel<<<grid, kThreads, 0, s>>>(x, tokens, len, fn, mix_count, inv_len, norm_eps, mixes, undecided);
  DSV4_CUDA_CHECK_LAUNCH("hc_pre_mixes_kernel");
  hc_split_sinkhorn_device(mixes, tokens, static_cast<int>(n), scale, base, iters, hc_eps, pre, post, comb,
                           sinkhorn_undecided, stream);
  hc_pre_sum_kernel<<<grid, kThreads, 0, s>>>(x, tokens, n, d, pre, sinkhorn_undecided, y, undecided);
  DSV4_CUDA_CHECK_LAUNCH("hc_pre_sum_kernel");
}

HcPreBatch hc_pre(const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d, const float* fn,
                  const float* base, const float* scale, int iters, double hc_eps, double norm_eps) {
  check_args(tokens, n, d, iters, "hc_pre");
  const std::size_t T = static_cast<std::size_t>(tokens), N = static_cast<std::size_t>(n),
                    D = static_cast<std::size_t>(d), M = (2 + N) * N;
  HcPreBatch out;
  out.y.resize(T * D);
  out.post.resize(T * N);
  out.comb.resize(T * N * N);
  out.mixes.resize(T * M);
  if (tokens == 0) return out;
  detail::DeviceBuffer<float> d_x(T * N * D), d_fn(M * N * D), d_base(M), d_scale(3), d_y(T * D), d_post(T * N),
      d_comb(T * N * N), d_mixes(T * M), d_pre(T * N);
  detail::DeviceBuffer<std::uint8_t> d_su(T), d_u(T);
  d_x.upload(x);
  d_fn.upload(fn);
  d_base.upload(base);
  d_scale.upload(scale);
  hc_pre_device(d_x.get(), tokens, n, d, d_fn.get(), d_base.get(), d_scale.get(), iters, static_cast<float>(hc_eps),
                static_cast<float>(norm_eps), d_y.get(), d_post.get(), d_comb.get(), d_mixes.get(), d_pre.get(),
                d_su.get(), d_u.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  d_post.download(out.post.data());
  d_comb.download(out.comb.data());
  d_mixes.download(out.mixes.data());
  out.recomputed = detail::recompute_undecided(d_u, [&](std::size_t t) {
    detail::hc_pre_reference(x + t * N * D, n, d, fn, base, scale, iters, hc_eps, norm_eps, &out.y[t * D],
                             &out.post[t * N], &out.comb[t * N * N], &out.mixes[t * M]);
  });
  return out;
}

}  // namespace dsv4::gpu
