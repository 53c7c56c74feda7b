// GPU RoPE (gpu/src/rope.cu) and embedding (gpu/src/embedding.cu) beyond the op registry's harness
// (tests/ops_test.cpp checks both bit for bit against the official-mode reference on every case of
// the registry, with batch invariance and reruns): RoPE's device-pointer form in place (y = x) on
// every case, positions and ids outside their tables refused like the reference, argument checks.
//
// Without a CUDA device the GPU test skips (CI has none); the argument checks run anyway.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/embedding.hpp"
#include "dsv4/gpu/rope.hpp"
#include "dsv4/ops/harness.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4 {
namespace {

template <class T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  if (cudaMalloc(&d, v.size() * sizeof(T)) != cudaSuccess) return nullptr;
  if (cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess) return nullptr;
  return d;
}

TEST(GpuRope, InPlaceDeviceFormEqualsTheReference) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  const ops::Op* op = ops::find_op("rope");
  ASSERT_NE(op, nullptr);
  for (const ops::Case& c : op->cases(1)) {
    const ops::Array& x = c.call.inputs[0];
    const std::int64_t head_dim = c.call.ints[0], rd = c.call.ints[1];
    const bool inverse = c.call.ints[2] != 0;
    std::vector<std::int64_t> pos(static_cast<std::size_t>(x.rows));
    for (std::size_t r = 0; r < pos.size(); ++r) pos[r] = static_cast<std::int64_t>(c.call.inputs[1].f32[r]);
    const std::int64_t P = c.call.inputs[2].elements() / (rd / 2);
    float* dx = to_device(x.f32.vec());
    float* dcos = to_device(c.call.inputs[2].f32.vec());
    float* dsin = to_device(c.call.inputs[3].f32.vec());
    std::int64_t* dpos = to_device(pos);
    ASSERT_TRUE(dx != nullptr && dcos != nullptr && dsin != nullptr && dpos != nullptr);
    gpu::rope_device(dx, x.rows, x.cols, head_dim, dpos, dcos, dsin, P, rd, inverse, dx);
    std::vector<float> y(x.f32.size());
    ASSERT_EQ(cudaMemcpy(y.data(), dx, y.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    for (void* p :
         {static_cast<void*>(dx), static_cast<void*>(dcos), static_cast<void*>(dsin), static_cast<void*>(dpos)}) {
      ASSERT_EQ(cudaFree(p), cudaSuccess);
    }
    const ops::Outputs got = {ops::Array::floats("y", x.rows, x.cols, std::move(y))};
    const auto m = ops::first_mismatch(got, op->reference(c.call));
    EXPECT_FALSE(m.has_value()) << c.label << ": " << (m ? m->text() : "");
  }
}

TEST(GpuRope, BadArgumentsNamed) {
  const std::vector<float> v(64, 0.5f);
  const std::vector<std::int64_t> pos = {0, 1}, far = {0, 4};
  // x [2, 16], head_dim 8, r_d 4, a table of 4 positions × 2 pairs.
  EXPECT_THROW(gpu::rope(v.data(), 2, 16, 8, far.data(), v.data(), v.data(), 4, 4, false), std::out_of_range);
  EXPECT_THROW(gpu::rope(v.data(), 2, 16, 8, pos.data(), v.data(), v.data(), 4, 3, false), std::invalid_argument);
  EXPECT_THROW(gpu::rope(v.data(), 2, 16, 2, pos.data(), v.data(), v.data(), 4, 4, false), std::invalid_argument);
  EXPECT_THROW(gpu::rope(v.data(), 2, 12, 8, pos.data(), v.data(), v.data(), 4, 4, false), std::invalid_argument);
  EXPECT_THROW(gpu::rope(v.data(), -1, 16, 8, pos.data(), v.data(), v.data(), 4, 4, false), std::invalid_argument);
  EXPECT_NO_THROW(gpu::rope(v.data(), 0, 16, 8, pos.data(), v.data(), v.data(), 4, 4, true));  // no rows: no device
}

TEST(GpuEmbedding, BadArgumentsNamed) {
  const std::vector<float> table(32, 1.0f);
  const std::vector<std::int64_t> ok = {0, 3}, negative = {0, -1}, past = {4, 0};
  EXPECT_THROW(gpu::embedding(negative.data(), 2, table.data(), 4, 8), std::invalid_argument);
  EXPECT_THROW(gpu::embedding(past.data(), 2, table.data(), 4, 8), std::invalid_argument);
  EXPECT_THROW(gpu::embedding(ok.data(), 2, table.data(), 0, 8), std::invalid_argument);
  EXPECT_THROW(gpu::embedding(ok.data(), -1, table.data(), 4, 8), std::invalid_argument);
  EXPECT_NO_THROW(gpu::embedding(ok.data(), 0, table.data(), 4, 8));  // no rows: no device needed
}

}  // namespace
}  // namespace dsv4
