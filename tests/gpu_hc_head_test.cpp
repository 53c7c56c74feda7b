// GPU hc_head (gpu/src/hc_head.cu) beyond the op registry's harness (tests/ops_test.cpp checks y bit
// for bit against the official-mode reference on every case of the registry, with batch invariance
// and reruns): the kernel may flag a token whose C1 sum or C2 function it cannot decide (the host
// then recomputes it with the reference), so this test requires that this is rare; and the
// argument checks.
//
// Without a CUDA device the GPU test skips (CI has none); the argument checks run anyway.
#include <gtest/gtest.h>

#include <stdexcept>
#include <utility>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/hc_head.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

TEST(GpuHcHead, DeviceDecidesNearlyEveryToken) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  test::expect_device_decides("hc_head", "tokens", 300, 100, [](const ops::Case& c) {
    const ops::Array& x = c.call.inputs[0];
    const std::int64_t n = c.call.ints[0];
    const gpu::HcHeadBatch out =
        gpu::hc_head(x.f32.data(), x.rows, n, x.cols / n, c.call.inputs[1].f32.data(), c.call.inputs[2].f32.data(),
                     c.call.inputs[3].f32[0], c.call.reals[0], c.call.reals[1]);
    return std::pair{out.recomputed, x.rows};
  });
}

TEST(GpuHcHead, BadArgumentsNamed) {
  const std::vector<float> v(4096, 1.0f);
  const auto call = [&](std::int64_t tokens, std::int64_t n, std::int64_t d) {
    return gpu::hc_head(v.data(), tokens, n, d, v.data(), v.data(), 0.5f, 1e-6, 1e-6);
  };
  EXPECT_THROW(call(-1, 4, 4), std::invalid_argument);
  EXPECT_THROW(call(1, 0, 4), std::invalid_argument);
  EXPECT_THROW(call(1, 65, 4), std::invalid_argument);
  EXPECT_THROW(call(1, 4, 0), std::invalid_argument);
  EXPECT_NO_THROW(call(0, 4, 4));  // no tokens: no device needed
}

}  // namespace
}  // namespace dsv4
