// GPU hc_pre (gpu/src/hc_pre.cu) beyond the op registry's harness (tests/ops_test.cpp checks y,
// post, comb and mixes bit for bit against the official-mode reference on every case of the
// registry, with batch invariance and reruns): the kernels may flag a token whose C1 sum, rsqrt or
// Sinkhorn step they cannot decide (the host then recomputes it with the reference), so this test
// requires that this is rare — the device path itself is what the harness compares; and the
// argument checks.
//
// Without a CUDA device the GPU test skips (CI has none); the argument checks run anyway.
#include <gtest/gtest.h>

#include <stdexcept>
#include <utility>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/hc_pre.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

TEST(GpuHcPre, DeviceDecidesNearlyEveryToken) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  test::expect_device_decides("hc_pre", "tokens", 300, 100, [](const ops::Case& c) {
    const ops::Array& x = c.call.inputs[0];
    const std::int64_t n = c.call.ints[0];
    const gpu::HcPreBatch out =
        gpu::hc_pre(x.f32.data(), x.rows, n, x.cols / n, c.call.inputs[1].f32.data(), c.call.inputs[2].f32.data(),
                    c.call.inputs[3].f32.data(), static_cast<int>(c.call.ints[1]), c.call.reals[0], c.call.reals[1]);
    return std::pair{out.recomputed, x.rows};
  });
}

TEST(GpuHcPre, BadArgumentsNamed) {
  const std::vector<float> v(4096, 1.0f);
  const auto call = [&](std::int64_t tokens, std::int64_t n, std::int64_t d, int iters) {
    return gpu::hc_pre(v.data(), tokens, n, d, v.data(), v.data(), v.data(), iters, 1e-6, 1e-6);
  };
  EXPECT_THROW(call(-1, 4, 4, 20), std::invalid_argument);
  EXPECT_THROW(call(1, 0, 4, 20), std::invalid_argument);
  EXPECT_THROW(call(1, 9, 4, 20), std::invalid_argument);
  EXPECT_THROW(call(1, 4, 0, 20), std::invalid_argument);
  EXPECT_THROW(call(1, 4, 4, 0), std::invalid_argument);
  EXPECT_NO_THROW(call(0, 4, 4, 20));  // no tokens: no device needed
}

}  // namespace
}  // namespace dsv4
