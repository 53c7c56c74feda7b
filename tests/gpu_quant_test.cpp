// The device-pointer API of act_quant / fp4_act_quant (gpu/src/quant.cu) — the e8m0 scale output,
// a row processed at an offset pointer of a resident batch — and the argument checks. The host API
// (codes, scales, in-place outputs on every case, batch invariance, reruns) is checked by the op
// registry's harness (tests/ops_test.cpp, ops act_quant and fp4_act_quant).
//
// Without a CUDA device every GPU test skips (CI has none); the argument checks run anyway (they
// never reach CUDA).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/quant.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/harness.hpp"

namespace {

std::vector<float> make_input(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  return dsv4::ops::edge_activations(rows, cols, seed);
}

// The registry's bit comparison (first mismatching coordinate and both values) on byte arrays.
::testing::AssertionResult same_bytes(const char* name, std::int64_t rows, const std::vector<std::uint8_t>& gpu,
                                      const std::vector<std::uint8_t>& ref) {
  using dsv4::ops::Array;
  const std::int64_t cols = rows > 0 ? static_cast<std::int64_t>(ref.size()) / rows : 0;
  if (gpu.size() != ref.size())
    return ::testing::AssertionFailure() << name << ": size " << gpu.size() << " vs " << ref.size();
  const auto m =
      dsv4::ops::first_mismatch({Array::bytes(name, rows, cols, gpu)}, {Array::bytes(name, rows, cols, ref)});
  if (!m) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << m->text();
}

class GpuQuant : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!dsv4::gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
    static bool printed = false;
    if (!printed) {
      std::printf("GPU: %s\n", dsv4::gpu::device_description().c_str());
      printed = true;
    }
  }
};

// ---- spec 01 §1.4 ----

// The e8m0 scale output of the device API: byte = biased exponent of the power-of-two scale.
TEST_F(GpuQuant, ActQuantDeviceE8m0ScalesMatchReference) {
  const std::int64_t rows = 37, cols = 7168;
  const std::vector<float> x = make_input(rows, cols, 77);
  const dsv4::Fp8Blocks ref = dsv4::act_quant(x, cols, 128, dsv4::ScaleFormat::kUE8M0);
  const std::size_t n = x.size(), nb = n / 128;
  float* dx = nullptr;
  std::uint8_t* dq = nullptr;
  std::uint8_t* ds = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dq, n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, nb), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  dsv4::gpu::act_quant_device(dx, rows, cols, 128, dsv4::gpu::ScaleFormat::kUE8M0, dq, nullptr, ds);
  std::vector<std::uint8_t> q(n), s(nb);
  ASSERT_EQ(cudaMemcpy(q.data(), dq, n, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(s.data(), ds, nb, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dx);
  cudaFree(dq);
  cudaFree(ds);
  std::vector<std::uint8_t> ref_e8m0(nb);
  for (std::size_t b = 0; b < nb; ++b) ref_e8m0[b] = static_cast<std::uint8_t>(dsv4::float_bits(ref.scales[b]) >> 23);
  EXPECT_TRUE(same_bytes("codes", rows, q, ref.values));
  EXPECT_TRUE(same_bytes("e8m0 scales", rows, s, ref_e8m0));
}

// Device API at an offset pointer (row r of a resident batch, processed as a batch of one).
TEST_F(GpuQuant, DeviceApiAtRowOffsetMatchesBatch) {
  const std::int64_t rows = 1000, cols = 512;
  const std::vector<float> x = make_input(rows, cols, 41);
  const std::size_t n = x.size();
  float* dx = nullptr;
  std::uint8_t* dq = nullptr;
  std::uint8_t* ds = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dq, n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, n / 32), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  const auto fp8 = dsv4::gpu::act_quant(x, cols, 128, dsv4::gpu::ScaleFormat::kUE8M0);
  const auto fp4 = dsv4::gpu::fp4_act_quant(x, cols);
  for (const std::int64_t r : {std::int64_t{0}, std::int64_t{123}, std::int64_t{999}}) {
    const float* xr = dx + r * cols;
    std::vector<std::uint8_t> q(static_cast<std::size_t>(cols)), s(static_cast<std::size_t>(cols / 128));
    dsv4::gpu::act_quant_device(xr, 1, cols, 128, dsv4::gpu::ScaleFormat::kUE8M0, dq, nullptr, ds);
    ASSERT_EQ(cudaMemcpy(q.data(), dq, q.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(s.data(), ds, s.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(std::memcmp(q.data(), fp8.values.data() + r * cols, q.size()), 0) << "fp8 row " << r;
    for (std::size_t b = 0; b < s.size(); ++b)
      EXPECT_EQ(s[b], dsv4::float_bits(fp8.scales[r * (cols / 128) + b]) >> 23) << "row " << r << " block " << b;

    std::vector<std::uint8_t> p(static_cast<std::size_t>(cols / 2)), s4(static_cast<std::size_t>(cols / 32));
    dsv4::gpu::fp4_act_quant_device(xr, 1, cols, dq, ds);
    ASSERT_EQ(cudaMemcpy(p.data(), dq, p.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(s4.data(), ds, s4.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(std::memcmp(p.data(), fp4.packed.data() + r * cols / 2, p.size()), 0) << "fp4 row " << r;
    EXPECT_EQ(std::memcmp(s4.data(), fp4.scales.data() + r * cols / 32, s4.size()), 0) << "fp4 scales row " << r;
  }
  cudaFree(dx);
  cudaFree(dq);
  cudaFree(ds);
}

// ---- argument checks (no CUDA call is reached: these run without a GPU too) ----

TEST(GpuQuantArgs, BadShapesThrowInvalidArgument) {
  std::vector<float> x(256, 1.0f);
  EXPECT_THROW(dsv4::gpu::act_quant(x, 96, 64, dsv4::gpu::ScaleFormat::kUE8M0), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::act_quant(x, 0, 128, dsv4::gpu::ScaleFormat::kUE8M0), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::act_quant(x, 128, 48, dsv4::gpu::ScaleFormat::kUE8M0), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::act_quant_inplace(x, 384, 128, dsv4::gpu::ScaleFormat::kFP32), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::fp4_act_quant(x, 48), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::fp4_act_quant_inplace(x, 96), std::invalid_argument);
  EXPECT_THROW(
      dsv4::gpu::act_quant_device(nullptr, 1, 128, 128, dsv4::gpu::ScaleFormat::kUE8M0, nullptr, nullptr, nullptr),
      std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::act_quant_device(nullptr, 1, 128, 128, dsv4::gpu::ScaleFormat::kFP32, nullptr, nullptr,
                                           reinterpret_cast<std::uint8_t*>(16)),
               std::invalid_argument);
}

TEST(GpuQuantArgs, EmptyInputNeedsNoDevice) {
  const std::vector<float> none;
  const auto r = dsv4::gpu::act_quant(none, 128, 128, dsv4::gpu::ScaleFormat::kUE8M0);
  EXPECT_EQ(r.rows, 0);
  EXPECT_TRUE(r.values.empty());
  EXPECT_TRUE(r.scales.empty());
  const auto r4 = dsv4::gpu::fp4_act_quant(none, 64);
  EXPECT_EQ(r4.rows, 0);
  std::vector<float> y;
  dsv4::gpu::act_quant_inplace(y, 64, 64, dsv4::gpu::ScaleFormat::kFP32);
  dsv4::gpu::fp4_act_quant_inplace(y, 32);
}

}  // namespace
