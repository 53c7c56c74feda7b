// GPU model head (gpu/src/head.cu) beyond the op registry's harness (tests/ops_test.cpp checks
// hc_head, norm and the logits bit for bit against the official-mode reference on every case of the
// registry, with batch invariance and reruns): the kernels may flag a row with an undecided C1 sum
// or C2 function (the host then recomputes it with the reference), so this test requires that this
// is rare; and the argument checks.
//
// Without a CUDA device the GPU test skips (CI has none); the argument checks run anyway.
#include <gtest/gtest.h>

#include <cstdio>
#include <stdexcept>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/head.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4 {
namespace {

TEST(GpuHead, DeviceDecidesNearlyEveryRow) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  std::int64_t recomputed = 0, rows = 0;
  for (const ops::Case& c : ops::find_op("head")->cases(1)) {
    const ops::Array& x = c.call.inputs[0];
    const std::int64_t n = c.call.ints[0];
    const auto in = [&](std::size_t i) { return c.call.inputs[i].f32.data(); };
    const gpu::HeadBatch out = gpu::head(x.f32.data(), x.rows, n, x.cols / n, in(1), in(2), c.call.inputs[3].f32[0],
                                         in(4), in(5), c.call.ints[1], c.call.reals[0], c.call.reals[1]);
    recomputed += out.recomputed;
    rows += x.rows;
    std::printf("%s: %lld rows recomputed (flagged: hc_head %lld rows, norm %lld rows, %lld of %lld logits)\n",
                c.label.c_str(), static_cast<long long>(out.recomputed), static_cast<long long>(out.undecided_hc_head),
                static_cast<long long>(out.undecided_norm), static_cast<long long>(out.undecided_logits),
                static_cast<long long>(x.rows * c.call.ints[1]));
  }
  std::printf("rows %lld, recomputed on the host %lld\n", static_cast<long long>(rows),
              static_cast<long long>(recomputed));
  EXPECT_GT(rows, 70);
  EXPECT_LE(recomputed * 50, rows);
}

TEST(GpuHead, BadArgumentsNamed) {
  const std::vector<float> v(4096, 1.0f);
  const auto call = [&](std::int64_t rows, std::int64_t n, std::int64_t d, std::int64_t vocab) {
    return gpu::head(v.data(), rows, n, d, v.data(), v.data(), 0.5f, v.data(), v.data(), vocab, 1e-6, 1e-6);
  };
  EXPECT_THROW(call(-1, 4, 4, 8), std::invalid_argument);
  EXPECT_THROW(call(1, 0, 4, 8), std::invalid_argument);
  EXPECT_THROW(call(1, 65, 4, 8), std::invalid_argument);
  EXPECT_THROW(call(1, 4, 0, 8), std::invalid_argument);
  EXPECT_THROW(call(1, 4, 4, 0), std::invalid_argument);
  EXPECT_NO_THROW(call(0, 4, 4, 8));  // no rows: no device needed
}

}  // namespace
}  // namespace dsv4
