// SwiGLU-with-clamp kernel (spec 03 §3.2 steps 2–4), bit-exact with the official-mode reference
// (ref/model/src/expert.cpp clamped_swiglu) — see dsv4/gpu/swiglu.hpp for the arithmetic.
//
// One thread per element, grid-stride over the flat [tokens, de] array: nothing is shared, no
// reduction; an element's bits depend on its own g, u and its token's routing weight only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/swiglu.hpp"
#include "swiglu_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

__global__ void __launch_bounds__(kThreads)
    swiglu_kernel(const float* __restrict__ g, const float* __restrict__ u, std::int64_t count, std::int64_t de,
                  float limit, const float* __restrict__ route_weight, float* __restrict__ h,
                  std::uint8_t* __restrict__ undecided) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    float gi = g[i], ui = u[i];
    if (limit > 0.0f) {
      ui = common::clamp_std(ui, -limit, limit);
      gi = limit < gi ? limit : gi;  // std::min(g, λ): the gate only capped above
    }
    float s = 0.0f;
    const bool ok = common::silu_c2_dev(gi, &s);
    float v = __fmul_rn(s, ui);
    if (route_weight != nullptr) v = __fmul_rn(route_weight[i / de], v);
    h[i] = common::round_to_bf16(v);
    undecided[i] = ok ? 0 : 1;
  }
}

void check_args(std::int64_t tokens, std::int64_t de, const char* who) {
  if (tokens < 0 || de < 1) {
    throw std::invalid_argument(std::string(who) + ": tokens must be non-negative and de positive");
  }
}

}  // namespace

void clamped_swiglu_device(const float* g, const float* u, std::int64_t tokens, std::int64_t de, float limit,
                           const float* route_weight, float* h, std::uint8_t* undecided, void* stream) {
  check_args(tokens, de, "clamped_swiglu_device");
  const std::int64_t count = tokens * de;
  if (count == 0) return;
  const std::int64_t blocks = std::min((count + kThreads - 1) / kThreads, kMaxGrid);
  swiglu_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      g, u, count, de, limit, route_weight, h, undecided);
  DSV4_CUDA_CHECK_LAUNCH("swiglu_kernel");
}

SwigluBatch clamped_swiglu(const float* g, const float* u, std::int64_t tokens, std::int64_t de, double limit,
                           const float* route_weight) {
  check_args(tokens, de, "clamped_swiglu");
  const std::size_t n = static_cast<std::size_t>(tokens * de), T = static_cast<std::size_t>(tokens);
  SwigluBatch out;
  out.h.resize(n);
  if (n == 0) return out;
  detail::DeviceBuffer<float> d_g(n), d_u(n), d_w(route_weight != nullptr ? T : 0), d_h(n);
  detail::DeviceBuffer<std::uint8_t> d_undecided(n);
  d_g.upload(g);
  d_u.upload(u);
  if (route_weight != nullptr) d_w.upload(route_weight);
  clamped_swiglu_device(d_g.get(), d_u.get(), tokens, de, static_cast<float>(limit),
                        route_weight != nullptr ? d_w.get() : nullptr, d_h.get(), d_undecided.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_h.download(out.h.data());
  out.recomputed = detail::recompute_undecided(d_undecided, [&](std::size_t i) {
    const std::size_t t = i / static_cast<std::size_t>(de);
    out.h[i] = detail::swiglu_reference(g[i], u[i], limit, route_weight != nullptr ? &route_weight[t] : nullptr);
  });
  return out;
}

}  // namespace dsv4::gpu
