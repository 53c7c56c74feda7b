// GPU SwiGLU with the clamp (gpu/src/swiglu.cu) beyond the op registry's harness (tests/ops_test.cpp
// checks h bit for bit against the official-mode reference on every case of the registry, with
// batch invariance and reruns): the kernel may flag an element whose C2 exp it cannot decide (the
// host then recomputes it with the reference), so this test requires that this is rare; and the
// argument checks.
//
// Without a CUDA device the GPU test skips (CI has none); the argument checks run anyway.
#include <gtest/gtest.h>

#include <stdexcept>
#include <utility>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/swiglu.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

TEST(GpuSwiglu, DeviceDecidesNearlyEveryElement) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  test::expect_device_decides("swiglu", "elements", 100000, 10000, [](const ops::Case& c) {
    const ops::Array& g = c.call.inputs[0];
    const gpu::SwigluBatch out =
        gpu::clamped_swiglu(g.f32.data(), c.call.inputs[1].f32.data(), g.rows, g.cols, c.call.reals[0],
                            c.call.ints[0] != 0 ? c.call.inputs[2].f32.data() : nullptr);
    return std::pair{out.recomputed, g.elements()};
  });
}

TEST(GpuSwiglu, BadArgumentsNamed) {
  const std::vector<float> v(64, 1.0f);
  EXPECT_THROW(gpu::clamped_swiglu(v.data(), v.data(), -1, 4, 10.0, nullptr), std::invalid_argument);
  EXPECT_THROW(gpu::clamped_swiglu(v.data(), v.data(), 1, 0, 10.0, nullptr), std::invalid_argument);
  EXPECT_NO_THROW(gpu::clamped_swiglu(v.data(), v.data(), 0, 4, 10.0, v.data()));  // no tokens: no device needed
}

}  // namespace
}  // namespace dsv4
