// Softmax pooling of the compressor (spec 02 §2.6.2), bit-exact with the official-mode reference
// (ref/model/src/compressor.cpp compressor_softmax_pool) — see dsv4/gpu/compressor_pool.hpp for the
// arithmetic.
//
// One thread per (entry, channel), grid-stride over the flat [entries, D] output; consecutive
// threads take consecutive channels, so every slot's loads are coalesced. The thread walks its S
// slots three times in increasing order — the max, the exps and their C1 sum, then the weights, the
// products and their C1 sum — recomputing each exp in the third pass (the same deterministic call:
// the same float) instead of keeping S of them. No reduction crosses threads: an element's bits
// depend on its own channel's slots only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "compressor_pool_reference.hpp"
#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/compressor_pool.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

// e_j of one slot: 0 for a padding slot (z = −∞), else the C2 exp of fl(z − m) (the reference's
// Precision::sub then Precision::exp: the double difference of two floats rounded to fp32 is the
// correctly rounded fp32 difference).
__device__ __forceinline__ bool slot_exp(float z, float m, float* e) {
  if (z == -__int_as_float(0x7f800000)) {
    *e = 0.0f;
    return true;
  }
  return common::exp_c2_dev(__fsub_rn(z, m), e);
}

__global__ void __launch_bounds__(kThreads)
    compressor_pool_kernel(const float* __restrict__ u, const float* __restrict__ z, std::int64_t entries,
                           std::int64_t slots, std::int64_t channels, float* __restrict__ c,
                           std::uint8_t* __restrict__ undecided) {
  const float inf = __int_as_float(0x7f800000);
  const std::int64_t count = entries * channels;
  const int S = static_cast<int>(slots);
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    const std::int64_t entry = i / channels, ch = i % channels;
    const float* ue = u + entry * slots * channels + ch;
    const float* ze = z + entry * slots * channels + ch;
    // 1. m = max_j z_j in std::max's order (m < z ? z : m); inputs outside the arithmetic flagged.
    bool ok = true;
    float m = -inf;
    for (int j = 0; j < S; ++j) {
      const float zj = ze[j * channels], uj = ue[j * channels];
      if (isnan(zj) || zj == inf || !isfinite(uj)) ok = false;
      m = m < zj ? zj : m;
    }
    if (m == -inf) ok = false;  // every slot padding: the reference throws
    // 2. S_e = C1 Σ_j e_j.
    common::SumC1Comp se;
    for (int j = 0; j < S; ++j) {
      float e = 0.0f;
      ok = slot_exp(ze[j * channels], m, &e) && ok;
      se.add(static_cast<double>(e));
    }
    float sum_e = 0.0f;
    ok = common::round_c1_comp(se, S, &sum_e) && ok;
    // 3. C = C1 Σ_j fl(u_j · fl(e_j / S_e)).
    common::SumC1Comp sc;
    for (int j = 0; j < S; ++j) {
      float e = 0.0f;
      (void)slot_exp(ze[j * channels], m, &e);  // pass 2's value (its flag already taken)
      const float w = __fdiv_rn(e, sum_e);
      sc.add(static_cast<double>(__fmul_rn(ue[j * channels], w)));
    }
    float out = 0.0f;
    ok = common::round_c1_comp(sc, S, &out) && ok;
    c[i] = out;
    undecided[i] = ok ? 0 : 1;
  }
}

void check_args(std::int64_t entries, std::int64_t slots, std::int64_t channels, const char* who) {
  if (entries < 0 || slots < 1 || channels < 1 || slots > (std::int64_t{1} << 20)) {
    throw std::invalid_argument(std::string(who) +
                                ": entries must be non-negative, slots in [1, 2^20] and channels positive");
  }
}

}  // namespace

void compressor_pool_device(const float* u, const float* z, std::int64_t entries, std::int64_t slots,
                            std::int64_t channels, float* c, std::uint8_t* undecided, void* stream) {
  check_args(entries, slots, channels, "compressor_pool_device");
  const std::int64_t count = entries * channels;
  if (count == 0) return;
  const std::int64_t blocks = std::min((count + kThreads - 1) / kThreads, kMaxGrid);
  compressor_pool_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      u, z, entries, slots, channels, c, undecided);
  DSV4_CUDA_CHECK_LAUNCH("compressor_pool_kernel");
}

CompressorPoolBatch compressor_pool(const float* u, const float* z, std::int64_t entries, std::int64_t slots,
                                    std::int64_t channels) {
  check_args(entries, slots, channels, "compressor_pool");
  const std::size_t in = static_cast<std::size_t>(entries * slots * channels),
                    n = static_cast<std::size_t>(entries * channels);
  CompressorPoolBatch out;
  out.c.resize(n);
  if (n == 0) return out;
  detail::DeviceBuffer<float> d_u(in), d_z(in), d_c(n);
  detail::DeviceBuffer<std::uint8_t> d_undecided(n);
  d_u.upload(u);
  d_z.upload(z);
  compressor_pool_device(d_u.get(), d_z.get(), entries, slots, channels, d_c.get(), d_undecided.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_c.download(out.c.data());
  out.recomputed = detail::recompute_undecided(d_undecided, [&](std::size_t i) {
    const std::size_t D = static_cast<std::size_t>(channels), e = i / D;
    const std::size_t off = e * static_cast<std::size_t>(slots) * D;
    out.c[i] = detail::compressor_pool_reference(u + off, z + off, slots, channels, static_cast<std::int64_t>(i % D));
  });
  return out;
}

}  // namespace dsv4::gpu
