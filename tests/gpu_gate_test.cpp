// GPU MoE gate (gpu/src/gate.cu) beyond the op registry's harness (tests/ops_test.cpp checks the
// weights, indices and scores bit for bit against the official-mode reference on every case of the
// registry, with batch invariance and reruns): the kernel may flag a token whose C1 sum or C2
// function it cannot decide (the host then recomputes it with the reference), so this test requires
// that this is rare; and the argument checks (expert count, k, score function, token ids, tid2eid).
//
// Without a CUDA device the GPU test skips (CI has none); the argument checks run anyway.
#include <gtest/gtest.h>

#include <stdexcept>
#include <utility>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/gate.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

std::vector<std::int64_t> integers(const ops::Array& a) {
  std::vector<std::int64_t> v(a.f32.size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int64_t>(a.f32[i]);
  return v;
}

TEST(GpuGate, DeviceDecidesNearlyEveryToken) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  test::expect_device_decides("gate", "tokens", 400, 100, [](const ops::Case& c) {
    const ops::Array& x = c.call.inputs[0];
    const std::vector<std::int64_t> ids = integers(c.call.inputs[1]), table = integers(c.call.inputs[4]);
    const bool hash = !table.empty();
    const gpu::GateBatch out =
        gpu::gate(x.f32.data(), x.rows, x.cols, ids.data(), c.call.inputs[2].f32.data(), c.call.inputs[2].cols / x.cols,
                  hash ? nullptr : c.call.inputs[3].f32.data(), hash ? table.data() : nullptr, c.call.ints[2],
                  static_cast<gpu::GateScore>(c.call.ints[1]), c.call.ints[0], c.call.reals[0]);
    return std::pair{out.recomputed, x.rows};
  });
}

TEST(GpuGate, BadArgumentsNamed) {
  const std::vector<float> v(8 * 2048, 0.5f);
  const std::vector<std::int64_t> ids = {0, 1, 2, 3}, bad_ids = {0, 7};
  const std::vector<std::int64_t> table = {0, 1, 1, 2, 2, 3, 3, 4}, bad_table = {0, 1, 1, 9};
  const auto score = gpu::GateScore::kSqrtSoftplus;
  // tokens, experts, k, score function
  EXPECT_THROW(gpu::gate(v.data(), -1, 8, ids.data(), v.data(), 8, v.data(), nullptr, 4, score, 2, 1.5),
               std::invalid_argument);
  EXPECT_THROW(gpu::gate(v.data(), 1, 8, ids.data(), v.data(), 1025, v.data(), nullptr, 4, score, 2, 1.5),
               std::invalid_argument);
  EXPECT_THROW(gpu::gate(v.data(), 1, 8, ids.data(), v.data(), 8, v.data(), nullptr, 4, score, 9, 1.5),
               std::invalid_argument);
  EXPECT_THROW(gpu::gate(v.data(), 1, 8, ids.data(), v.data(), 8, v.data(), nullptr, 4, score, 0, 1.5),
               std::invalid_argument);
  EXPECT_THROW(
      gpu::gate(v.data(), 1, 8, ids.data(), v.data(), 8, v.data(), nullptr, 4, static_cast<gpu::GateScore>(3), 2, 1.5),
      std::invalid_argument);
  // token id outside the vocabulary, tid2eid entry outside [0, E), neither or both of bias / tid2eid
  EXPECT_THROW(gpu::gate(v.data(), 2, 8, bad_ids.data(), v.data(), 8, v.data(), nullptr, 4, score, 2, 1.5),
               std::invalid_argument);
  EXPECT_THROW(gpu::gate(v.data(), 1, 8, ids.data(), v.data(), 8, nullptr, bad_table.data(), 2, score, 2, 1.5),
               std::invalid_argument);
  EXPECT_THROW(gpu::gate(v.data(), 1, 8, ids.data(), v.data(), 8, nullptr, nullptr, 4, score, 2, 1.5),
               std::invalid_argument);
  EXPECT_THROW(gpu::gate(v.data(), 1, 8, ids.data(), v.data(), 8, v.data(), table.data(), 4, score, 2, 1.5),
               std::invalid_argument);
  EXPECT_NO_THROW(gpu::gate(v.data(), 0, 8, ids.data(), v.data(), 8, v.data(), nullptr, 4, score, 2, 1.5));
}

}  // namespace
}  // namespace dsv4
