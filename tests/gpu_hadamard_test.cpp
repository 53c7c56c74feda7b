// GPU Hadamard rotation (gpu/src/hadamard.cu) beyond the op registry's harness (tests/ops_test.cpp
// checks y bit for bit against the official-mode reference on every case of the registry, with
// batch invariance and reruns): the device-pointer form in place (y = x) on every case (shared-
// and global-memory paths), the host scale fl32(N^-1/2), and the argument checks.
//
// Without a CUDA device the GPU tests skip (CI has none); the argument checks run anyway.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/hadamard.hpp"
#include "dsv4/ops/harness.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4 {
namespace {

TEST(GpuHadamard, ScaleIsTheReferencesFp32) {
  EXPECT_EQ(gpu::hadamard_scale(1), 1.0f);
  EXPECT_EQ(gpu::hadamard_scale(4), 0.5f);
  EXPECT_EQ(gpu::hadamard_scale(256), 0.0625f);
  EXPECT_EQ(gpu::hadamard_scale(128), static_cast<float>(std::pow(128.0, -0.5)));
}

TEST(GpuHadamard, InPlaceDeviceFormEqualsTheReference) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  const ops::Op* op = ops::find_op("hadamard");
  ASSERT_NE(op, nullptr);
  for (const ops::Case& c : op->cases(1)) {
    const ops::Array& x = c.call.inputs[0];
    const std::int64_t size = c.call.ints[0] <= 0 ? x.cols : c.call.ints[0];
    const ops::Outputs want = op->reference(c.call);
    // In place through the device-pointer form on a copy of x.
    std::vector<float> inplace = x.f32;
    float* d = nullptr;
    ASSERT_EQ(cudaMalloc(&d, inplace.size() * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d, inplace.data(), inplace.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    gpu::hadamard_device(d, x.rows, x.cols, size, d);
    ASSERT_EQ(cudaMemcpy(inplace.data(), d, inplace.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaFree(d), cudaSuccess);
    const ops::Outputs got = {ops::Array::floats("y", x.rows, x.cols, std::move(inplace))};
    const auto m = ops::first_mismatch(got, want);
    EXPECT_FALSE(m.has_value()) << c.label << ": " << (m ? m->text() : "");
  }
}

TEST(GpuHadamard, BadArgumentsNamed) {
  const std::vector<float> v(16, 1.0f);
  EXPECT_THROW(gpu::hadamard(v.data(), -1, 4, 4), std::invalid_argument);
  EXPECT_THROW(gpu::hadamard(v.data(), 1, 12, 0), std::invalid_argument);  // 12 is not a power of two
  EXPECT_THROW(gpu::hadamard(v.data(), 1, 12, 8), std::invalid_argument);  // 8 does not divide 12
  EXPECT_THROW(gpu::hadamard(v.data(), 1, 16, 3), std::invalid_argument);
  EXPECT_NO_THROW(gpu::hadamard(v.data(), 0, 16, 4));  // no rows: no device needed
}

}  // namespace
}  // namespace dsv4
