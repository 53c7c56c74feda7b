// GPU MoE expert and combine (gpu/src/expert.cu, moe_combine.cu) beyond the op registry's harness
// (tests/ops_test.cpp checks both bit for bit against the official-mode reference on every case —
// bf16, fp8 and fp4 expert weights, both activation scale formats — with batch invariance and reruns,
// when a GPU is present): the expert weights' argument checks (host code, no GPU needed) and the
// device-pointer form of the quantised experts on a stream with its workspace.
//
// Without a CUDA device the device test skips (CI has none); the argument checks run anyway.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/expert.hpp"
#include "dsv4/gpu/moe_combine.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4 {
namespace {

// A [n, k] weight view of `kind` over dummy storage (enough bytes for any kind of that shape).
gpu::LinearWeightView weight(gpu::LinearKind kind, std::int64_t n, std::int64_t k, const std::vector<float>& values,
                             const std::vector<std::uint8_t>& bytes) {
  gpu::LinearWeightView v;
  v.kind = kind;
  v.out_features = n;
  v.in_features = k;
  v.values = values.data();
  v.codes = bytes.data();
  v.scales = bytes.data();
  return v;
}

TEST(GpuExpert, ExpertWeightsAreChecked) {
  const std::int64_t d = 128, de = 128;
  const std::vector<float> values(static_cast<std::size_t>(d * de)), x(static_cast<std::size_t>(2 * d));
  const std::vector<std::uint8_t> bytes(static_cast<std::size_t>(d * de));
  const auto expert_with = [&](gpu::LinearKind kind, std::int64_t dim, bool null_codes) {
    gpu::ExpertWeightsView w;
    w.dim = dim;
    w.inter = de;
    w.w1 = weight(kind, de, dim, values, bytes);
    w.w3 = weight(kind, de, dim, values, bytes);
    w.w2 = weight(kind, dim, de, values, bytes);
    if (null_codes) w.w3.codes = nullptr;
    return gpu::expert(x.data(), 0, w, 10.0, nullptr);  // 0 tokens: the checks only, no CUDA call
  };
  for (const gpu::LinearKind k : {gpu::LinearKind::kBF16, gpu::LinearKind::kFP8, gpu::LinearKind::kFP4}) {
    EXPECT_NO_THROW((void)expert_with(k, d, false));
  }
  EXPECT_THROW((void)expert_with(gpu::LinearKind::kFP32, d, false), std::invalid_argument);  // never an expert's
  EXPECT_THROW((void)expert_with(gpu::LinearKind::kFP8, 96, false), std::invalid_argument);  // K % 128
  EXPECT_THROW((void)expert_with(gpu::LinearKind::kFP4, d, true), std::invalid_argument);    // no storage
  gpu::ExpertWeightsView w;
  w.dim = d;
  w.inter = de;
  w.w1 = weight(gpu::LinearKind::kFP4, de, d, values, bytes);
  w.w3 = weight(gpu::LinearKind::kFP4, de + 1, d, values, bytes);  // a shape that is not [inter, dim]
  w.w2 = weight(gpu::LinearKind::kFP4, d, de, values, bytes);
  EXPECT_THROW((void)gpu::expert(x.data(), 0, w, 10.0, nullptr), std::invalid_argument);

  gpu::MoeExpertsView m;
  m.experts = 4;
  m.dim = d;
  m.inter = de;
  m.w1 = m.w3 = weight(gpu::LinearKind::kFP4, de, d, values, bytes);
  m.w2 = weight(gpu::LinearKind::kFP4, d, de, values, bytes);
  m.shared_w1 = m.shared_w3 = weight(gpu::LinearKind::kFP8, de, d, values, bytes);
  m.shared_w2 = weight(gpu::LinearKind::kFP8, d, de, values, bytes);
  const std::vector<float> rw = {1.0f, 1.0f};
  const std::vector<std::int64_t> ids = {0, 1};
  EXPECT_NO_THROW((void)gpu::moe_combine(x.data(), 0, rw.data(), ids.data(), 2, m, 10.0));
  m.shared_w2.kind = gpu::LinearKind::kFP32;
  EXPECT_THROW((void)gpu::moe_combine(x.data(), 0, rw.data(), ids.data(), 2, m, 10.0), std::invalid_argument);
}

template <class T>
T* upload(const T* host, std::size_t n) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), n * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, host, n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

// expert_device on device pointers, a non-default stream and its workspace, for every fp8 / fp4 case
// of the expert op: every row it decides equals the host form's (which is the reference's, ops_test).
TEST(GpuExpert, QuantisedExpertDevicePointerFormOnAStream) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  std::int64_t cases = 0, rows = 0, recomputed = 0;
  for (const ops::Case& c : ops::find_op("expert")->cases(2)) {
    if (c.call.ints[0] == 0) continue;  // bf16: the ops_test harness covers it
    ++cases;
    const std::vector<ops::Array>& in = c.call.inputs;
    const std::int64_t T = in[0].rows, d = in[0].cols, de = in[2].rows;
    const auto kind = static_cast<gpu::LinearKind>(c.call.ints[0]);
    gpu::ExpertWeightsView hv;
    hv.dim = d;
    hv.inter = de;
    hv.act_fmt = c.call.ints[1] != 0 ? ScaleFormat::kFP32 : ScaleFormat::kUE8M0;
    gpu::LinearWeightView* views[] = {&hv.w1, &hv.w3, &hv.w2};
    for (std::size_t i = 0; i < 3; ++i) {
      *views[i] = weight(kind, i == 2 ? d : de, i == 2 ? de : d, {}, {});
      views[i]->values = nullptr;
      views[i]->codes = in[2 + 2 * i].u8.data();
      views[i]->scales = in[3 + 2 * i].u8.data();
    }
    const gpu::ExpertBatch want = gpu::expert(in[0].f32.data(), T, hv, c.call.reals[0], in[1].f32.data());
    recomputed += want.recomputed;
    rows += T;
    gpu::ExpertWeightsView dv = hv;
    std::vector<std::uint8_t*> owned;
    for (std::size_t i = 0; i < 3; ++i) {
      gpu::LinearWeightView* v = i == 0 ? &dv.w1 : i == 1 ? &dv.w3 : &dv.w2;
      owned.push_back(upload(in[2 + 2 * i].u8.data(), in[2 + 2 * i].u8.size()));
      owned.push_back(upload(in[3 + 2 * i].u8.data(), in[3 + 2 * i].u8.size()));
      v->codes = owned[owned.size() - 2];
      v->scales = owned.back();
    }
    float* d_x = upload(in[0].f32.data(), in[0].f32.size());
    float* d_rw = upload(in[1].f32.data(), in[1].f32.size());
    float* d_y = nullptr;
    std::uint8_t *d_undecided = nullptr, *d_ws = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_y), static_cast<std::size_t>(T * d) * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_undecided), static_cast<std::size_t>(T)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_ws), gpu::expert_workspace_bytes(T, d, de)), cudaSuccess);
    gpu::expert_device(d_x, T, dv, static_cast<float>(c.call.reals[0]), d_rw, d_y, d_undecided, d_ws, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<float> y(static_cast<std::size_t>(T * d));
    std::vector<std::uint8_t> undecided(static_cast<std::size_t>(T));
    ASSERT_EQ(cudaMemcpy(y.data(), d_y, y.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(undecided.data(), d_undecided, undecided.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    for (std::int64_t t = 0; t < T; ++t) {
      if (undecided[static_cast<std::size_t>(t)] != 0) continue;
      for (std::int64_t i = 0; i < d; ++i) {
        const std::size_t at = static_cast<std::size_t>(t * d + i);
        ASSERT_EQ(std::bit_cast<std::uint32_t>(y[at]), std::bit_cast<std::uint32_t>(want.y[at]))
            << c.label << ": row " << t << ", element " << i;
      }
    }
    for (void* p : {static_cast<void*>(d_x), static_cast<void*>(d_rw), static_cast<void*>(d_y),
                    static_cast<void*>(d_undecided), static_cast<void*>(d_ws)})
      EXPECT_EQ(cudaFree(p), cudaSuccess);
    for (std::uint8_t* p : owned) EXPECT_EQ(cudaFree(p), cudaSuccess);
  }
  std::printf("%lld fp8 / fp4 cases, %lld of %lld rows recomputed on the host\n", static_cast<long long>(cases),
              static_cast<long long>(recomputed), static_cast<long long>(rows));
  EXPECT_GE(cases, 6);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

}  // namespace
}  // namespace dsv4
