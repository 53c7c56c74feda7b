// GPU hc_post (gpu/src/hc_post.cu) beyond the op registry's harness (tests/ops_test.cpp checks y
// bit for bit against the official-mode reference on every case of the registry, with batch
// invariance and reruns): the kernel may flag a token whose C1 comb sum it cannot decide (the host
// then recomputes it with the reference), so this test requires that this is rare — the device
// path itself is what the harness compares; and the argument checks.
//
// Without a CUDA device the GPU test skips (CI has none); the argument checks run anyway.
#include <gtest/gtest.h>

#include <stdexcept>
#include <utility>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/hc_post.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

TEST(GpuHcPost, DeviceDecidesNearlyEveryToken) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  test::expect_device_decides("hc_post", "tokens", 400, 100, [](const ops::Case& c) {
    const ops::Array& f = c.call.inputs[0];
    const gpu::HcPostBatch out = gpu::hc_post(f.f32.data(), c.call.inputs[1].f32.data(), c.call.inputs[2].f32.data(),
                                              c.call.inputs[3].f32.data(), f.rows, c.call.ints[0], f.cols);
    return std::pair{out.recomputed, f.rows};
  });
}

TEST(GpuHcPost, BadArgumentsNamed) {
  const std::vector<float> v(64, 1.0f);
  EXPECT_THROW(gpu::hc_post(v.data(), v.data(), v.data(), v.data(), -1, 4, 4), std::invalid_argument);
  EXPECT_THROW(gpu::hc_post(v.data(), v.data(), v.data(), v.data(), 1, 0, 4), std::invalid_argument);
  EXPECT_THROW(gpu::hc_post(v.data(), v.data(), v.data(), v.data(), 1, 65, 4), std::invalid_argument);
  EXPECT_THROW(gpu::hc_post(v.data(), v.data(), v.data(), v.data(), 1, 4, 0), std::invalid_argument);
  EXPECT_NO_THROW(gpu::hc_post(v.data(), v.data(), v.data(), v.data(), 0, 4, 4));  // no tokens: no device needed
}

}  // namespace
}  // namespace dsv4
