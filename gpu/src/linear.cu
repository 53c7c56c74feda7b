// Linear-layer kernels (spec 01 §1.6–§1.8), bit-exact with the official-mode reference
// (ref/model/src/linear.cpp) — see dsv4/gpu/linear.hpp for the arithmetic.
//
// One warp per output element (m, n), grid-stride over the rows × N elements (the loop is
// warp-uniform: every lane of a warp runs the same iterations). Lane l takes the k ≡ l (mod 32) terms
// of each sum; the lanes' compensated parts are merged by butterflies (a fixed tree, whatever the
// grid) and lane 0 rounds, accumulates the quantised kinds' blocks in increasing order and writes.
// No shared memory, no atomics, nothing crosses outputs: an element's bits depend on row m of x and
// row n of the weight alone, never on the batch, the element's position or the launch.
//
// Exactness of the products (all formed in double, then summed with TwoSum errors kept):
// - bf16 × bf16 (kBF16): 8-bit significands, a 16-bit product; |v| < 2^128 and ≥ 2^-133 (bf16
//   subnormals), so products lie in [2^-266, 2^256) — inside double's normal range: exact.
// - fp32 × fp32 (kFP32): 24-bit significands, a 48-bit product ≤ 53 bits; |v| in [2^-149, 2^128),
//   products in [2^-298, 2^256) — normal doubles: exact (so is bf16 × fp32).
// - e4m3 × e4m3 (kFP8): 4-bit significands, values multiples of 2^-9 with |v| ≤ 448: every product
//   is a multiple of 2^-18 of magnitude ≤ 448² < 2^18: exact.
// - e4m3 × e2m1 (kFP4): e2m1 values are multiples of 2^-1 with |v| ≤ 6: products are multiples of
//   2^-10 of magnitude ≤ 2688: exact.
// The quantised kinds' block sums are even exact in double in any order: a sum of 128 e4m3 × e4m3
// products is a multiple of 2^-18 below 128·448² < 2^25 (43 bits), a sum of 32 e4m3 × e2m1 products
// a multiple of 2^-10 below 32·2688 < 2^17 (27 bits), and so is every partial sum. Their TwoSum errors
// are zero, round_c1_comp takes its exact branch (a single RNE), and those kinds never flag.
//
// The zero's sign: the reference's C1 sum of an exactly-zero total is +0, even when every term is −0
// (its double sum starts at +0.0, as the official kernels' accumulators do: exact_sum_to_fp32). So
// does every lane's part here (SumC1Comp starts at +0.0; +0 + −0 = +0 and x + (−x) = +0 under RNE),
// and the butterflies add the lanes' sums. A zero total that is not exact in double is left
// undecided by round_c1_comp (its sign cannot be told) and recomputed on the host.
//
// The fp32 steps of fp8_gemm / fp4_gemm (σ, the scaled partials, the accumulator) are single IEEE
// fp32 operations (__fmul_rn, __fadd_rn; --fmad=false, -ftz=false), which the reference's
// fl32(double op) reproduces: the double product of two floats is exact, and fl32 of the double
// sum of two floats is their correctly rounded fp32 sum (53 ≥ 2·24 + 2).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/linear.hpp"
#include "dsv4/gpu/quant.hpp"
#include "dsv4/gpu/resident.hpp"
#include "linear_dense.hpp"
#include "linear_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;
constexpr std::int64_t kActBlock = 128;  // act_quant block of every quantised linear (spec 01 §1.6)
constexpr std::int64_t kFp8Tile = 128;   // fp8 weight scale tile 128×128 (spec 01 §1.7)
constexpr std::int64_t kFp4Block = 32;   // fp4 weight scale block 1×32 (spec 01 §1.8)
constexpr std::int64_t kMaxK = std::int64_t{1} << 24;

// The rounded C1 block sum of lane parts `part` (every lane must call it; valid in lane 0): the
// butterflies, then round_c1_comp over `count` terms plus the 31 merges.
__device__ __forceinline__ bool warp_c1(const common::SumC1Comp& part, std::int64_t count, float* out) {
  const common::SumC1Comp all = common::warp_merge_comp(part);
  return common::round_c1_comp(all, static_cast<int>(count + 32), out);
}

// kBF16 / kFP32: y = C1 Σ_k x_k w_k (bf16-rounded for kBF16), in the layout of linear_dense_launch
// (linear_dense.hpp): output o = (m, g, n) reads x row ⌊m / x_repeat⌋ at columns g·K.., weight row
// (b_m·G + g)·N + n.
template <bool kBf16Out>
__global__ void __launch_bounds__(kThreads)
    linear_dense_kernel(const float* __restrict__ x, std::int64_t rows, std::int64_t x_repeat, std::int64_t groups,
                        std::int64_t k, const float* __restrict__ w, const std::int64_t* __restrict__ w_block,
                        std::int64_t n_out, float* __restrict__ y, std::uint8_t* __restrict__ undecided) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t width = groups * n_out, total = rows * width;
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; o < total;
       o += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    const std::int64_t m = o / width, gn = o % width;
    const float* xr = x + ((m / x_repeat) * groups + gn / n_out) * k;
    const float* wr = w + ((w_block != nullptr ? w_block[m] : 0) * width + gn) * k;
    common::SumC1Comp part;
    for (std::int64_t i = lane; i < k; i += 32) {
      part.add(__dmul_rn(static_cast<double>(xr[i]), static_cast<double>(wr[i])));  // exact (see top)
    }
    float v = 0.0f;
    const bool ok = warp_c1(part, k, &v);
    if (lane == 0) {
      y[o] = kBf16Out ? common::round_to_bf16(v) : v;
      undecided[o] = ok ? 0 : 1;
    }
  }
}

// kFP8 (spec 01 §1.7): a = act_quant codes [rows / x_repeat, K], sa = their fp32 scales
// [rows / x_repeat, K/128] (output row m reads act row ⌊m / x_repeat⌋); codes [N, K] e4m3, scales
// [⌈N/128⌉, K/128] e8m0, stacked per weight block (row m's block w_block[m], or 0 when null). Lane l
// takes k = 128κ + l + 32j, j = 0..3.
__global__ void __launch_bounds__(kThreads)
    linear_fp8_kernel(const std::uint8_t* __restrict__ a, const float* __restrict__ sa, std::int64_t rows,
                      std::int64_t x_repeat, std::int64_t k, const std::uint8_t* __restrict__ codes,
                      const std::uint8_t* __restrict__ scales, const std::int64_t* __restrict__ w_block,
                      std::int64_t n_out, float* __restrict__ y, std::uint8_t* __restrict__ undecided) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t total = rows * n_out, blocks = k / kActBlock;
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; o < total;
       o += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    const std::int64_t m = o / n_out, n = o % n_out, b = w_block != nullptr ? w_block[m] : 0;
    const std::uint8_t* ar = a + (m / x_repeat) * k;
    const std::uint8_t* wr = codes + (b * n_out + n) * k;
    const float* sar = sa + (m / x_repeat) * blocks;
    const std::uint8_t* swr = scales + (b * ((n_out + kFp8Tile - 1) / kFp8Tile) + n / kFp8Tile) * blocks;
    float acc = 0.0f;
    bool ok = true;
    for (std::int64_t kb = 0; kb < blocks; ++kb) {
      common::SumC1Comp part;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const std::int64_t i = kb * kActBlock + lane + 32 * j;
        part.add(__dmul_rn(static_cast<double>(common::e4m3_to_float(ar[i])),
                           static_cast<double>(common::e4m3_to_float(wr[i]))));  // exact (see top)
      }
      float p = 0.0f;
      const bool block_ok = warp_c1(part, kActBlock, &p);
      if (lane == 0) {
        ok = ok && block_ok;
        const float sigma = __fmul_rn(sar[kb], common::e8m0_to_float(swr[kb]));
        acc = __fadd_rn(acc, __fmul_rn(p, sigma));
      }
    }
    if (lane == 0) {
      y[o] = common::round_to_bf16(acc);
      undecided[o] = ok ? 0 : 1;
    }
  }
}

// kFP4 (spec 01 §1.8): a, sa, x_repeat and w_block as for kFP8; packed [N, K/2] e2m1 (element 2j in
// the low nibble of byte j), scales [N, K/32] e8m0, stacked per block. Lane l takes k = 32κ + l.
__global__ void __launch_bounds__(kThreads)
    linear_fp4_kernel(const std::uint8_t* __restrict__ a, const float* __restrict__ sa, std::int64_t rows,
                      std::int64_t x_repeat, std::int64_t k, const std::uint8_t* __restrict__ packed,
                      const std::uint8_t* __restrict__ scales, const std::int64_t* __restrict__ w_block,
                      std::int64_t n_out, float* __restrict__ y, std::uint8_t* __restrict__ undecided) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t total = rows * n_out, blocks = k / kFp4Block;
  for (std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; o < total;
       o += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    const std::int64_t m = o / n_out, n = o % n_out, b = w_block != nullptr ? w_block[m] : 0;
    const std::uint8_t* ar = a + (m / x_repeat) * k;
    const std::uint8_t* wr = packed + (b * n_out + n) * (k / 2);
    const float* sar = sa + (m / x_repeat) * (k / kActBlock);
    const std::uint8_t* swr = scales + (b * n_out + n) * blocks;
    float acc = 0.0f;
    bool ok = true;
    for (std::int64_t kb = 0; kb < blocks; ++kb) {
      const std::int64_t i = kb * kFp4Block + lane;
      const std::uint8_t byte = wr[i / 2];
      const std::uint8_t code =
          (i % 2 == 0) ? static_cast<std::uint8_t>(byte & 0x0Fu) : static_cast<std::uint8_t>(byte >> 4);
      common::SumC1Comp part;
      part.add(__dmul_rn(static_cast<double>(common::e4m3_to_float(ar[i])),
                         static_cast<double>(common::e2m1_to_float(code))));  // exact (see top)
      float p = 0.0f;
      const bool block_ok = warp_c1(part, kFp4Block, &p);
      if (lane == 0) {
        ok = ok && block_ok;
        acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(p, sar[kb * kFp4Block / kActBlock]), common::e8m0_to_float(swr[kb])));
      }
    }
    if (lane == 0) {
      y[o] = common::round_to_bf16(acc);
      undecided[o] = ok ? 0 : 1;
    }
  }
}

bool quantised(LinearKind kind) { return kind == LinearKind::kFP8 || kind == LinearKind::kFP4; }

void check_args(const float* x, std::int64_t rows, const LinearWeightView& w, ScaleFormat fmt, const char* who) {
  const std::string f(who);
  const int kind = static_cast<int>(w.kind);
  if (kind < 0 || kind > 3) throw std::invalid_argument(f + ": unknown weight kind " + std::to_string(kind));
  if (fmt != ScaleFormat::kUE8M0 && fmt != ScaleFormat::kFP32) {
    throw std::invalid_argument(f + ": unknown activation scale format");
  }
  if (rows < 0) throw std::invalid_argument(f + ": rows = " + std::to_string(rows) + " < 0");
  if (w.out_features < 1) throw std::invalid_argument(f + ": out_features must be positive");
  if (w.in_features < 1 || w.in_features > kMaxK) throw std::invalid_argument(f + ": in_features must be in [1, 2^24]");
  if (quantised(w.kind) && w.in_features % kActBlock != 0) {
    throw std::invalid_argument(f + ": in_features K = " + std::to_string(w.in_features) +
                                " is not a multiple of the activation quantisation block 128");
  }
  if (quantised(w.kind) ? (w.codes == nullptr || w.scales == nullptr) : w.values == nullptr) {
    throw std::invalid_argument(f + (quantised(w.kind) ? ": a quantised weight needs codes and scales"
                                                       : ": a bf16 / fp32 weight needs values"));
  }
  if (rows > 0 && x == nullptr) throw std::invalid_argument(f + ": x is null");
}

}  // namespace

LinearWeightSizes linear_weight_sizes(const LinearWeightView& w) {
  const std::size_t n = static_cast<std::size_t>(w.out_features), k = static_cast<std::size_t>(w.in_features);
  LinearWeightSizes s;
  switch (w.kind) {
    case LinearKind::kBF16:
    case LinearKind::kFP32:
      s.values = n * k;
      break;
    case LinearKind::kFP8:
      s.codes = n * k;
      s.scales = ((n + kFp8Tile - 1) / kFp8Tile) * (k / kFp8Tile);
      break;
    case LinearKind::kFP4:
      s.codes = n * k / 2;
      s.scales = n * (k / kFp4Block);
      break;
  }
  return s;
}

void detail::linear_dense_launch(const float* x, std::int64_t rows, std::int64_t x_repeat, std::int64_t groups,
                                 std::int64_t k, const float* w, const std::int64_t* w_block, std::int64_t n_out,
                                 bool bf16_out, float* y, std::uint8_t* undecided, cudaStream_t stream) {
  const std::int64_t total = rows * groups * n_out;
  if (total == 0) return;
  const unsigned grid = static_cast<unsigned>(std::min((total + kWarps - 1) / kWarps, kMaxGrid));
  if (bf16_out) {
    linear_dense_kernel<true>
        <<<grid, kThreads, 0, stream>>>(x, rows, x_repeat, groups, k, w, w_block, n_out, y, undecided);
  } else {
    linear_dense_kernel<false>
        <<<grid, kThreads, 0, stream>>>(x, rows, x_repeat, groups, k, w, w_block, n_out, y, undecided);
  }
  DSV4_CUDA_CHECK_LAUNCH("linear_dense_kernel");
}

void detail::linear_launch(const float* x, std::int64_t rows, std::int64_t x_repeat, const LinearWeightView& w,
                           const std::int64_t* w_block, ScaleFormat act_fmt, float* y, std::uint8_t* undecided,
                           std::uint8_t* act_codes, float* act_scales, cudaStream_t stream) {
  if (rows == 0) return;
  const std::int64_t n = w.out_features, k = w.in_features;
  const unsigned grid = static_cast<unsigned>(std::min((rows * n + kWarps - 1) / kWarps, kMaxGrid));
  const std::int64_t x_rows = (rows + x_repeat - 1) / x_repeat;
  switch (w.kind) {
    case LinearKind::kBF16:
    case LinearKind::kFP32:
      linear_dense_launch(x, rows, x_repeat, 1, k, w.values, w_block, n, w.kind == LinearKind::kBF16, y, undecided,
                          stream);
      break;
    case LinearKind::kFP8:
      act_quant_device(x, x_rows, k, static_cast<int>(kActBlock), act_fmt, act_codes, act_scales, nullptr, stream);
      linear_fp8_kernel<<<grid, kThreads, 0, stream>>>(act_codes, act_scales, rows, x_repeat, k, w.codes, w.scales,
                                                       w_block, n, y, undecided);
      DSV4_CUDA_CHECK_LAUNCH("linear_fp8_kernel");
      break;
    case LinearKind::kFP4:
      act_quant_device(x, x_rows, k, static_cast<int>(kActBlock), act_fmt, act_codes, act_scales, nullptr, stream);
      linear_fp4_kernel<<<grid, kThreads, 0, stream>>>(act_codes, act_scales, rows, x_repeat, k, w.codes, w.scales,
                                                       w_block, n, y, undecided);
      DSV4_CUDA_CHECK_LAUNCH("linear_fp4_kernel");
      break;
  }
}

void linear_device(const float* x, std::int64_t rows, const LinearWeightView& w, ScaleFormat act_fmt, float* y,
                   std::uint8_t* undecided, std::uint8_t* act_codes, float* act_scales, void* stream) {
  check_args(x, rows, w, act_fmt, "linear_device");
  if (rows > 0 && (y == nullptr || undecided == nullptr)) {
    throw std::invalid_argument("linear_device: y and undecided must be given");
  }
  if (quantised(w.kind) && rows > 0 && (act_codes == nullptr || act_scales == nullptr)) {
    throw std::invalid_argument("linear_device: fp8 / fp4 weights need the act_codes and act_scales workspace");
  }
  if (rows == 0) return;
  detail::linear_launch(x, rows, 1, w, nullptr, act_fmt, y, undecided, act_codes, act_scales,
                        static_cast<cudaStream_t>(stream));
}

LinearBatch linear_resident(const float* x, std::int64_t rows, const LinearWeightView& w, const LinearWeightView& dw,
                            ScaleFormat act_fmt) {
  check_args(x, rows, w, act_fmt, "linear");
  if (dw.kind != w.kind || dw.out_features != w.out_features || dw.in_features != w.in_features) {
    throw std::invalid_argument("linear: the device weight's kind or shape differs from the host weight's");
  }
  const std::size_t R = static_cast<std::size_t>(rows), N = static_cast<std::size_t>(w.out_features),
                    K = static_cast<std::size_t>(w.in_features);
  LinearBatch out;
  out.y.resize(R * N);
  if (rows == 0) return out;
  const bool q = quantised(w.kind);
  detail::DeviceBuffer<float> d_x(R * K), d_y(R * N), d_act_scales(q ? R * (K / kActBlock) : 0);
  detail::DeviceBuffer<std::uint8_t> d_undecided(R * N), d_act_codes(q ? R * K : 0);
  d_x.upload(x);
  linear_device(d_x.get(), rows, dw, act_fmt, d_y.get(), d_undecided.get(), d_act_codes.get(), d_act_scales.get(),
                nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  std::vector<std::uint8_t> undecided(R * N);
  d_undecided.download(undecided.data());
  for (std::size_t o = 0; o < R * N; ++o) {
    if (undecided[o] == 0) continue;
    out.y[o] = detail::linear_reference_element(x + (o / N) * K, w, static_cast<std::int64_t>(o % N), act_fmt);
    ++out.recomputed;
  }
  return out;
}

// The weight uploaded for this call, then linear_resident.
LinearBatch linear(const float* x, std::int64_t rows, const LinearWeightView& w, ScaleFormat act_fmt) {
  check_args(x, rows, w, act_fmt, "linear");
  if (rows == 0) return LinearBatch{};
  const LinearWeightSizes ws = linear_weight_sizes(w);
  detail::DeviceBuffer<float> d_values(ws.values);
  detail::DeviceBuffer<std::uint8_t> d_codes(ws.codes), d_scales(ws.scales);
  if (ws.values > 0) d_values.upload(w.values);
  if (ws.codes > 0) d_codes.upload(w.codes);
  if (ws.scales > 0) d_scales.upload(w.scales);
  LinearWeightView dw = w;
  dw.values = d_values.get();
  dw.codes = d_codes.get();
  dw.scales = d_scales.get();
  return linear_resident(x, rows, w, dw, act_fmt);
}

}  // namespace dsv4::gpu
