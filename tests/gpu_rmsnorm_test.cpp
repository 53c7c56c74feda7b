// GPU RMSNorm (gpu/src/rmsnorm.cu) beyond the op registry's harness (tests/ops_test.cpp checks y
// bit for bit against the official-mode reference on every case of the registry, with batch
// invariance and reruns): the kernel may flag a row whose C1 sum or C2 rsqrt it cannot decide (the
// host then recomputes it with the reference), so this test requires that this is rare — the
// device path itself is what the harness compares; and the argument checks.
//
// Without a CUDA device the GPU test skips (CI has none); the argument checks run anyway.
#include <gtest/gtest.h>

#include <stdexcept>
#include <utility>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/rmsnorm.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

TEST(GpuRmsNorm, DeviceDecidesNearlyEveryRow) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  test::expect_device_decides("rmsnorm", "rows", 400, 100, [](const ops::Case& c) {
    const ops::Array& x = c.call.inputs[0];
    const gpu::RmsNormBatch out =
        gpu::rmsnorm(x.f32.data(), x.rows, x.cols, c.call.inputs[1].f32.data(), c.call.reals[0]);
    return std::pair{out.recomputed, x.rows};
  });
}

TEST(GpuRmsNorm, BadArgumentsNamed) {
  const std::vector<float> v(16, 1.0f);
  EXPECT_THROW(gpu::rmsnorm(v.data(), -1, 4, v.data(), 1e-6), std::invalid_argument);
  EXPECT_THROW(gpu::rmsnorm(v.data(), 1, 0, v.data(), 1e-6), std::invalid_argument);
  EXPECT_NO_THROW(gpu::rmsnorm(v.data(), 0, 4, v.data(), 1e-6));  // no rows: no device needed
}

}  // namespace
}  // namespace dsv4
