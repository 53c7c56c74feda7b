// GPU element-wise add and scale (gpu/src/elementwise.cu) beyond the op registry's harness
// (tests/ops_test.cpp checks them bit for bit against the official-mode reference on every case of
// the registry, with batch invariance and reruns):
// - a host port of the kernels' operation (one fp32 operation, __fadd_rn / __fmul_rn → the plain
//   float operators, then the bf16 rounding) against the reference on the registry's cases of seeds
//   1–3: the reference rounds the double a + b or a × b to fp32, the kernels compute in fp32 — equal
//   because the double rounding is innocuous for fp32 operands (53 ≥ 2·24 + 2); the cases hold fp32
//   and bf16 ties, cancellations to ±0, subnormals and overflow;
// - on a device: the device-pointer forms on a stream, in place.
//
// Without a CUDA device the GPU tests skip (CI has none); the port runs anyway.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/elementwise.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4 {
namespace {

// add_kernel / scale_kernel for one element.
float add_port(float a, float b, bool bf16_out) {
  const float v = a + b;
  return bf16_out ? round_bf16(v) : v;
}
float scale_port(float x, float c, bool bf16_out) {
  const float v = x * c;
  return bf16_out ? round_bf16(v) : v;
}

TEST(GpuElementwise, HostPortMatchesTheReferenceOnTheRegistryCases) {
  std::int64_t elements = 0;
  for (const char* stem : {"add", "scale"}) {
    const ops::Op& op = *ops::find_op(stem);
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
      for (const ops::Case& c : op.cases(seed)) {
        const std::vector<float> want = op.reference(c.call).at(0).f32;
        const std::vector<float>& a = c.call.inputs[0].f32;
        const bool bf16_out = c.call.ints[0] != 0;
        for (std::size_t i = 0; i < want.size(); ++i) {
          const float got = std::string(stem) == "add"
                                ? add_port(a[i], c.call.inputs[1].f32[i], bf16_out)
                                : scale_port(a[i], static_cast<float>(c.call.reals[0]), bf16_out);
          ASSERT_EQ(std::bit_cast<std::uint32_t>(got), std::bit_cast<std::uint32_t>(want[i]))
              << stem << " " << c.label << " (seed " << seed << "): element " << i << ": port " << got << ", reference "
              << want[i];
        }
        elements += static_cast<std::int64_t>(want.size());
      }
    }
  }
  EXPECT_GT(elements, 100000);
}

// add_device / scale_device on device pointers, a stream and in place (y = the first operand):
// the host forms' bits (which are the reference's, ops_test).
TEST(GpuElementwise, DevicePointerFormsInPlaceOnAStream) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const char* stem : {"add", "scale"}) {
    for (const ops::Case& c : ops::find_op(stem)->cases(2)) {
      const std::vector<float>& a = c.call.inputs[0].f32;
      const auto n = static_cast<std::int64_t>(a.size());
      const bool bf16_out = c.call.ints[0] != 0, add = std::string(stem) == "add";
      const std::vector<float> want = add ? gpu::add(a.data(), c.call.inputs[1].f32.data(), n, bf16_out)
                                          : gpu::scale(a.data(), n, c.call.reals[0], bf16_out);
      float *d_a = nullptr, *d_b = nullptr;
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_a), a.size() * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_b), a.size() * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(d_a, a.data(), a.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
      if (add) {
        ASSERT_EQ(cudaMemcpy(d_b, c.call.inputs[1].f32.data(), a.size() * sizeof(float), cudaMemcpyHostToDevice),
                  cudaSuccess);
        gpu::add_device(d_a, d_b, n, bf16_out, d_a, stream);
      } else {
        gpu::scale_device(d_a, n, static_cast<float>(c.call.reals[0]), bf16_out, d_a, stream);
      }
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      std::vector<float> got(a.size());
      ASSERT_EQ(cudaMemcpy(got.data(), d_a, a.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want[i])) << stem << " " << i;
      ASSERT_EQ(cudaFree(d_a), cudaSuccess);
      ASSERT_EQ(cudaFree(d_b), cudaSuccess);
    }
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

}  // namespace
}  // namespace dsv4
