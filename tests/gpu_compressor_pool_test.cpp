// GPU compressor pooling (gpu/src/compressor_pool.cu) beyond the op registry's harness
// (tests/ops_test.cpp checks c bit for bit against the official-mode reference on every case of the
// registry, with batch invariance and reruns):
// - a host port of the kernel's operation sequence (tests/support/canonical_port.hpp for the
//   canonical helpers) against the reference on the registry's cases of seeds 1–3, bit for bit on
//   every element it decides, and how many it leaves to the host — the kernel's arithmetic checked
//   without a GPU;
// - on a device: the rate of host-recomputed elements, the device-pointer form on a stream, an
//   all-padding channel (the host recomputation throws as the reference does);
// - the argument checks.
//
// Without a CUDA device the GPU tests skip (CI has none); the port and the argument checks run anyway.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "dsv4/gpu/compressor_pool.hpp"
#include "dsv4/gpu/device.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/canonical_port.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

struct PortElement {
  float c = 0.0f;
  bool decided = true;
};

// compressor_pool_kernel for one (entry, channel), line by line: ue, ze point at the channel's slot
// 0, slots `channels` apart.
PortElement pool_port(const float* ue, const float* ze, int S, std::int64_t channels) {
  const float inf = INFINITY;
  const auto slot_exp = [&](float z, float m, float* e) {
    if (z == -inf) {
      *e = 0.0f;
      return true;
    }
    return test::port::exp_c2(z - m, e);
  };
  bool ok = true;
  float m = -inf;
  for (int j = 0; j < S; ++j) {
    const float zj = ze[j * channels], uj = ue[j * channels];
    if (std::isnan(zj) || zj == inf || !std::isfinite(uj)) ok = false;
    m = m < zj ? zj : m;
  }
  if (m == -inf) ok = false;
  test::port::SumC1Comp se;
  for (int j = 0; j < S; ++j) {
    float e = 0.0f;
    ok = slot_exp(ze[j * channels], m, &e) && ok;
    se.add(static_cast<double>(e));
  }
  float sum_e = 0.0f;
  ok = test::port::round_c1_comp(se, S, &sum_e) && ok;
  test::port::SumC1Comp sc;
  for (int j = 0; j < S; ++j) {
    float e = 0.0f;
    (void)slot_exp(ze[j * channels], m, &e);
    const float w = e / sum_e;
    sc.add(static_cast<double>(ue[j * channels] * w));
  }
  PortElement r;
  ok = test::port::round_c1_comp(sc, S, &r.c) && ok;
  r.decided = ok;
  return r;
}

TEST(GpuCompressorPool, HostPortOfTheKernelMatchesTheReference) {
  const ops::Op& op = *ops::find_op("compressor_pool");
  std::int64_t elements = 0, undecided = 0, cases = 0;
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    for (const ops::Case& c : op.cases(seed)) {
      const std::vector<float> want = op.reference(c.call).at(0).f32;
      const std::int64_t S = c.call.ints[0];
      const ops::Array& u = c.call.inputs[0];
      const std::int64_t D = u.cols / S;
      const float* z = c.call.inputs[1].f32.data();
      std::int64_t case_undecided = 0;
      for (std::int64_t e = 0; e < u.rows; ++e) {
        for (std::int64_t d = 0; d < D; ++d) {
          const std::int64_t off = e * S * D + d;
          const PortElement p = pool_port(u.f32.data() + off, z + off, static_cast<int>(S), D);
          const std::size_t i = static_cast<std::size_t>(e * D + d);
          if (!p.decided) {
            ++case_undecided;
            continue;
          }
          ASSERT_EQ(std::bit_cast<std::uint32_t>(p.c), std::bit_cast<std::uint32_t>(want[i]))
              << c.label << " (seed " << seed << "): entry " << e << " channel " << d << ": port " << p.c
              << ", reference " << want[i];
        }
      }
      std::printf("seed %llu, %s: %lld of %lld undecided\n", static_cast<unsigned long long>(seed), c.label.c_str(),
                  static_cast<long long>(case_undecided), static_cast<long long>(u.rows * D));
      elements += u.rows * D;
      undecided += case_undecided;
      ++cases;
    }
  }
  std::printf("%lld cases, %lld elements: %lld undecided (recomputed on the host)\n", static_cast<long long>(cases),
              static_cast<long long>(elements), static_cast<long long>(undecided));
  EXPECT_GT(elements, 20000);
  EXPECT_LE(undecided * 1000, elements);
}

// The port and the reference on hand-made channels (S = 4, D = 1): a tied maximum (two slots of
// weight 1/2), cancelling products (exactly +0), a subnormal exp reaching the output, one valid
// slot among padding.
TEST(GpuCompressorPool, HostPortSpecialValues) {
  const ops::Op& op = *ops::find_op("compressor_pool");
  const float ninf = -INFINITY;
  struct Channel {
    std::vector<float> u, z;
  };
  const std::vector<Channel> channels = {{{1.0f, 3.0f, 5.0f, 7.0f}, {2.0f, 2.0f, ninf, ninf}},
                                         {{2.0f, -2.0f, 0.0f, 0.0f}, {0.0f, 0.0f, -95.0f, ninf}},
                                         {{0.0f, 0.0f, 1.0f, 0.0f}, {0.0f, 0.0f, -95.0f, ninf}},
                                         {{1.0f, 0.5f, 0.25f, 0.125f}, {ninf, 1.0f, ninf, ninf}}};
  std::vector<float> got;
  for (const Channel& ch : channels) {
    ops::Call call;
    call.ints = {4};
    call.inputs = {ops::Array::floats("u", 1, 4, ch.u), ops::Array::floats("z", 1, 4, ch.z)};
    const float want = op.reference(call).at(0).f32.at(0);
    const PortElement p = pool_port(ch.u.data(), ch.z.data(), 4, 1);
    ASSERT_TRUE(p.decided) << got.size();
    EXPECT_EQ(std::bit_cast<std::uint32_t>(p.c), std::bit_cast<std::uint32_t>(want)) << got.size();
    got.push_back(want);
  }
  EXPECT_EQ(got[0], 2.0f);                              // (1 + 3) / 2
  EXPECT_EQ(std::bit_cast<std::uint32_t>(got[1]), 0u);  // +0
  EXPECT_TRUE(got[2] > 0.0f && got[2] < 0x1p-126f);     // fl(fl(exp(−95)) / 2), subnormal
  EXPECT_EQ(got[3], 0.5f);
}

TEST(GpuCompressorPool, DeviceDecidesNearlyEveryElement) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  test::expect_device_decides("compressor_pool", "elements", 5000, 1000, [](const ops::Case& c) {
    const ops::Array& u = c.call.inputs[0];
    const std::int64_t S = c.call.ints[0];
    const gpu::CompressorPoolBatch out =
        gpu::compressor_pool(u.f32.data(), c.call.inputs[1].f32.data(), u.rows, S, u.cols / S);
    return std::pair{out.recomputed, static_cast<std::int64_t>(out.c.size())};
  });
}

// compressor_pool_device on device pointers and a stream: every element it decides equals the host
// form's (which is the reference's, ops_test).
TEST(GpuCompressorPool, DevicePointerFormOnAStream) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const ops::Case& c : ops::find_op("compressor_pool")->cases(2)) {
    const ops::Array& u = c.call.inputs[0];
    const std::int64_t S = c.call.ints[0], D = u.cols / S;
    const gpu::CompressorPoolBatch want = gpu::compressor_pool(u.f32.data(), c.call.inputs[1].f32.data(), u.rows, S, D);
    const std::size_t in = u.f32.size(), n = static_cast<std::size_t>(u.rows * D);
    float *d_u = nullptr, *d_z = nullptr, *d_c = nullptr;
    std::uint8_t* d_flags = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_u), in * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_z), in * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_c), n * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_flags), n), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_u, u.f32.data(), in * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_z, c.call.inputs[1].f32.data(), in * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    gpu::compressor_pool_device(d_u, d_z, u.rows, S, D, d_c, d_flags, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<float> got(n);
    std::vector<std::uint8_t> flags(n);
    ASSERT_EQ(cudaMemcpy(got.data(), d_c, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(flags.data(), d_flags, n, cudaMemcpyDeviceToHost), cudaSuccess);
    for (std::size_t i = 0; i < n; ++i) {
      if (flags[i] != 0) continue;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want.c[i])) << c.label << " " << i;
    }
    for (void* p :
         {static_cast<void*>(d_u), static_cast<void*>(d_z), static_cast<void*>(d_c), static_cast<void*>(d_flags)}) {
      ASSERT_EQ(cudaFree(p), cudaSuccess);
    }
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// A channel whose every slot is padding: the device flags it and the host's reference throws, as
// the CPU reference does.
TEST(GpuCompressorPool, AllPaddingChannelThrowsAsTheReference) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  const std::vector<float> u = {0.0f, 1.0f, 0.0f, 2.0f}, z = {-INFINITY, 0.5f, -INFINITY, 0.25f};  // S 2, D 2
  EXPECT_THROW(gpu::compressor_pool(u.data(), z.data(), 1, 2, 2), std::logic_error);
}

TEST(GpuCompressorPool, BadArgumentsNamed) {
  const std::vector<float> v(64, 1.0f);
  EXPECT_THROW(gpu::compressor_pool(v.data(), v.data(), -1, 8, 4), std::invalid_argument);
  EXPECT_THROW(gpu::compressor_pool(v.data(), v.data(), 1, 0, 4), std::invalid_argument);
  EXPECT_THROW(gpu::compressor_pool(v.data(), v.data(), 1, 8, 0), std::invalid_argument);
  EXPECT_NO_THROW(gpu::compressor_pool(v.data(), v.data(), 0, 8, 4));  // no entries: no device needed
}

}  // namespace
}  // namespace dsv4
