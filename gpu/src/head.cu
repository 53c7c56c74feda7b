// Model head kernels (spec 05 §5.3), bit-exact with the official-mode reference
// (ref/model/src/head.cpp head_forward) — see dsv4/gpu/head.hpp for the arithmetic.
//
// Three launches on one stream: hc_head_device, rmsnorm_device, then the logits (one warp per
// (row, vocabulary entry), grid-stride: lanes split the d products, their compensated parts merged
// by butterflies, lane 0 rounds). Each logit depends on its row and the head weight only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/hc_head.hpp"
#include "dsv4/gpu/head.hpp"
#include "dsv4/gpu/rmsnorm.hpp"
#include "head_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    head_logits_kernel(const float* __restrict__ x, std::int64_t rows, std::int64_t d, const float* __restrict__ w,
                       std::int64_t vocab, float* __restrict__ logits, std::uint8_t* __restrict__ undecided) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const std::int64_t total = rows * vocab;
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; o < total;
       o += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    const float* xr = x + (o / vocab) * d;
    const float* wr = w + (o % vocab) * d;
    common::SumC1Comp part;
    for (std::int64_t i = lane; i < d; i += 32) {
      part.add(__dmul_rn(static_cast<double>(xr[i]), static_cast<double>(wr[i])));  // exact: 24 × 24 bits
    }
    part = common::warp_merge_comp(part);
    if (lane == 0) {
      float v = 0.0f;
      undecided[o] = common::round_c1_comp(part, static_cast<int>(d + 32), &v) ? 0 : 1;
      logits[o] = v;
    }
  }
}

void check_args(std::int64_t rows, std::int64_t d, std::int64_t vocab, const char* who) {
  const std::string w(who);
  if (rows < 0) throw std::invalid_argument(w + ": rows must be non-negative");
  if (d < 1 || d > (std::int64_t{1} << 24)) throw std::invalid_argument(w + ": dim must be in [1, 2^24]");
  if (vocab < 1) throw std::invalid_argument(w + ": vocab must be positive");
}

}  // namespace

void head_logits_device(const float* x, std::int64_t rows, std::int64_t d, const float* weight, std::int64_t vocab,
                        float* logits, std::uint8_t* undecided, void* stream) {
  check_args(rows, d, vocab, "head_logits_device");
  if (rows == 0) return;
  const std::int64_t blocks = std::min((rows * vocab + kWarps - 1) / kWarps, kMaxGrid);
  head_logits_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, rows, d, weight, vocab, logits, undecided);
  DSV4_CUDA_CHECK_LAUNCH("head_logits_kernel");
}

HeadBatch head(const float* x, std::int64_t rows, std::int64_t n, std::int64_t d, const float* hc_fn,
               const float* hc_base, float hc_scale, const float* norm, const float* head_w, std::int64_t vocab,
               double hc_eps, double norm_eps) {
  check_args(rows, d, vocab, "head");
  if (n < 1 || n > 64) throw std::invalid_argument("head: hc_mult must be in [1, 64], got " + std::to_string(n));
  const std::size_t R = static_cast<std::size_t>(rows), N = static_cast<std::size_t>(n),
                    D = static_cast<std::size_t>(d), V = static_cast<std::size_t>(vocab);
  HeadBatch out;
  out.hc_head.resize(R * D);
  out.norm.resize(R * D);
  out.logits.resize(R * V);
  if (rows == 0) return out;
  detail::DeviceBuffer<float> d_x(R * N * D), d_fn(N * N * D), d_base(N), d_norm_w(D), d_head(V * D), d_hc(R * D),
      d_norm(R * D), d_logits(R * V);
  detail::DeviceBuffer<std::uint8_t> d_u_hc(R), d_u_norm(R), d_u_logits(R * V);
  d_x.upload(x);
  d_fn.upload(hc_fn);
  d_base.upload(hc_base);
  d_norm_w.upload(norm);
  d_head.upload(head_w);
  hc_head_device(d_x.get(), rows, n, d, d_fn.get(), d_base.get(), hc_scale, static_cast<float>(hc_eps),
                 static_cast<float>(norm_eps), d_hc.get(), d_u_hc.get(), nullptr);
  rmsnorm_device(d_hc.get(), rows, d, d_norm_w.get(), static_cast<float>(norm_eps), d_norm.get(), d_u_norm.get(),
                 nullptr);
  head_logits_device(d_norm.get(), rows, d, d_head.get(), vocab, d_logits.get(), d_u_logits.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_hc.download(out.hc_head.data());
  d_norm.download(out.norm.data());
  d_logits.download(out.logits.data());
  std::vector<std::uint8_t> u_hc(R), u_norm(R), u_logits(R * V);
  d_u_hc.download(u_hc.data());
  d_u_norm.download(u_norm.data());
  d_u_logits.download(u_logits.data());
  for (std::size_t r = 0; r < R; ++r) {
    out.undecided_hc_head += u_hc[r];
    out.undecided_norm += u_norm[r];
    std::int64_t logits_flagged = 0;
    for (std::size_t v = 0; v < V; ++v) logits_flagged += u_logits[r * V + v];
    out.undecided_logits += logits_flagged;
    if (u_hc[r] == 0 && u_norm[r] == 0 && logits_flagged == 0) continue;
    detail::head_reference(x + r * N * D, n, d, hc_fn, hc_base, hc_scale, norm, head_w, vocab, hc_eps, norm_eps,
                           &out.hc_head[r * D], &out.norm[r * D], &out.logits[r * V]);
    ++out.recomputed;
  }
  return out;
}

}  // namespace dsv4::gpu
