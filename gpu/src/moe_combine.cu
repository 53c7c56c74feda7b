// MoE combine for given routing (spec 03 §3.3), bit-exact with the official-mode reference
// (ref/model/src/moe.cpp Moe::combine) — see dsv4/gpu/moe_combine.hpp for the arithmetic.
//
// The experts run through the expert chain (expert.cu: the linear kernel by weight kind and the
// swiglu kernel): the routed experts over the tokens × k (token, slot) pairs — pair p = t·k + j reads x row
// ⌊p / k⌋ = t and the weight block indices[p] — and the shared expert over the tokens. Then:
// - slot_order_kernel, one thread per token: rank of slot j = #{j' : (e_j', j') < (e_j, j)} (an exact
//   count; the (id, slot) keys are distinct, so the ranks are a permutation), order[t, rank] = j;
// - combine_kernel, one thread per output element (t, i): acc = +0, acc = fl32(acc + y_pair) over
//   the ranks in increasing order, acc = fl32(acc + y_shared), bf16. The additions are sequential
//   in a fixed order that depends on the token's ids alone — never on the batch or the launch.
// All launches are in order on one stream (each reads what the previous ones wrote). No shared
// memory, no atomics.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/moe_combine.hpp"
#include "dsv4/gpu/resident.hpp"
#include "expert_chain.hpp"
#include "moe_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;
constexpr std::int64_t kMaxDim = std::int64_t{1} << 24;

__global__ void __launch_bounds__(kThreads)
    slot_order_kernel(const std::int64_t* __restrict__ indices, std::int64_t tokens, std::int64_t k,
                      std::int32_t* __restrict__ order) {
  for (std::int64_t t = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; t < tokens;
       t += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    const std::int64_t* ids = indices + t * k;
    for (std::int64_t j = 0; j < k; ++j) {
      std::int64_t rank = 0;
      for (std::int64_t i = 0; i < k; ++i) rank += (ids[i] < ids[j] || (ids[i] == ids[j] && i < j)) ? 1 : 0;
      order[t * k + rank] = static_cast<std::int32_t>(j);
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    combine_kernel(const float* __restrict__ y_pairs, const float* __restrict__ y_shared,
                   const std::int32_t* __restrict__ order, std::int64_t tokens, std::int64_t k, std::int64_t d,
                   float* __restrict__ y) {
  const std::int64_t total = tokens * d;
  for (std::int64_t o = blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x; o < total;
       o += static_cast<std::int64_t>(gridDim.x) * kThreads) {
    const std::int64_t t = o / d, i = o % d;
    float acc = 0.0f;
    for (std::int64_t r = 0; r < k; ++r) acc = __fadd_rn(acc, y_pairs[(t * k + order[t * k + r]) * d + i]);
    acc = __fadd_rn(acc, y_shared[o]);
    y[o] = common::round_to_bf16(acc);
  }
}

// The workspace: the routed pairs' chain and outputs, the shared expert's, the slot order.
struct Workspace {
  detail::Carve carve;
  detail::ExpertChainBuffers routed;
  float* y_pairs;
  detail::ExpertChainBuffers shared;
  float* y_shared;
  std::int32_t* order;
  Workspace(void* base, std::int64_t tokens, std::int64_t k, std::int64_t d, std::int64_t de)
      : carve(base),
        routed(carve, tokens * k, tokens, d, de),
        y_pairs(carve.take<float>(static_cast<std::size_t>(tokens * k * d))),
        shared(carve, tokens, tokens, d, de),
        y_shared(carve.take<float>(static_cast<std::size_t>(tokens * d))),
        order(carve.take<std::int32_t>(static_cast<std::size_t>(tokens * k))) {}
};

void check_args(const float* x, std::int64_t tokens, const float* weights, const std::int64_t* indices, std::int64_t k,
                const MoeExpertsView& w, const char* who) {
  const std::string f(who);
  if (tokens < 0) throw std::invalid_argument(f + ": tokens = " + std::to_string(tokens) + " < 0");
  if (k < 1 || k > kMoeMaxTopk) throw std::invalid_argument(f + ": k must be in [1, 32]");
  if (w.experts < 1) throw std::invalid_argument(f + ": experts must be positive");
  if (w.dim < 1 || w.dim > kMaxDim || w.inter < 1 || w.inter > kMaxDim) {
    throw std::invalid_argument(f + ": dim and inter must be in [1, 2^24]");
  }
  if (w.act_fmt != ScaleFormat::kUE8M0 && w.act_fmt != ScaleFormat::kFP32) {
    throw std::invalid_argument(f + ": unknown activation scale format");
  }
  detail::check_expert_weight(w.w1, w.inter, w.dim, who, "w1");
  detail::check_expert_weight(w.w3, w.inter, w.dim, who, "w3");
  detail::check_expert_weight(w.w2, w.dim, w.inter, who, "w2");
  detail::check_expert_weight(w.shared_w1, w.inter, w.dim, who, "shared_w1");
  detail::check_expert_weight(w.shared_w3, w.inter, w.dim, who, "shared_w3");
  detail::check_expert_weight(w.shared_w2, w.dim, w.inter, who, "shared_w2");
  if (tokens > 0 && (x == nullptr || weights == nullptr || indices == nullptr)) {
    throw std::invalid_argument(f + ": x, weights and indices must be given");
  }
}

}  // namespace

std::size_t moe_combine_workspace_bytes(std::int64_t tokens, std::int64_t k, std::int64_t dim, std::int64_t inter) {
  return Workspace(nullptr, tokens, k, dim, inter).carve.used();
}

void moe_combine_device(const float* x, std::int64_t tokens, const float* weights, const std::int64_t* indices,
                        std::int64_t k, const MoeExpertsView& w, float limit, float* y, std::uint8_t* undecided,
                        void* workspace, void* stream) {
  check_args(x, tokens, weights, indices, k, w, "moe_combine_device");
  if (tokens > 0 && (y == nullptr || undecided == nullptr || workspace == nullptr)) {
    throw std::invalid_argument("moe_combine_device: y, undecided and the workspace must be given");
  }
  if (tokens == 0) return;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const std::int64_t d = w.dim, de = w.inter;
  Workspace ws(workspace, tokens, k, d, de);
  // Routed: pair p = t·k + j reads x row t (x_repeat = k), expert indices[p], routing weight weights[p].
  detail::expert_chain(x, tokens * k, k, indices, de, w.w1, w.w3, w.w2, w.act_fmt, weights, limit, ws.y_pairs,
                       ws.routed, s);
  detail::expert_chain(x, tokens, 1, nullptr, de, w.shared_w1, w.shared_w3, w.shared_w2, w.act_fmt, nullptr, limit,
                       ws.y_shared, ws.shared, s);
  detail::or_chain_flags(ws.routed, tokens, k, d, de, undecided, false, s);
  detail::or_chain_flags(ws.shared, tokens, 1, d, de, undecided, true, s);
  const unsigned token_grid = static_cast<unsigned>(std::min((tokens + kThreads - 1) / kThreads, kMaxGrid));
  slot_order_kernel<<<token_grid, kThreads, 0, s>>>(indices, tokens, k, ws.order);
  DSV4_CUDA_CHECK_LAUNCH("slot_order_kernel");
  const unsigned grid = static_cast<unsigned>(std::min((tokens * d + kThreads - 1) / kThreads, kMaxGrid));
  combine_kernel<<<grid, kThreads, 0, s>>>(ws.y_pairs, ws.y_shared, ws.order, tokens, k, d, y);
  DSV4_CUDA_CHECK_LAUNCH("combine_kernel");
}

namespace {

// The host forms' check of the routing: every expert id in [0, experts).
void check_ids(const std::int64_t* indices, std::int64_t tokens, std::int64_t k, std::int64_t experts) {
  for (std::int64_t i = 0; i < tokens * k; ++i) {
    if (indices[i] < 0 || indices[i] >= experts) {
      throw std::invalid_argument("moe_combine: expert id " + std::to_string(indices[i]) + " outside [0, " +
                                  std::to_string(experts) + ")");
    }
  }
}

}  // namespace

MoeCombineBatch moe_combine_resident(const float* x, std::int64_t tokens, const float* weights,
                                     const std::int64_t* indices, std::int64_t k, const MoeExpertsView& w,
                                     const MoeExpertsView& dw, double limit) {
  check_args(x, tokens, weights, indices, k, w, "moe_combine");
  const auto same = [](const LinearWeightView& a, const LinearWeightView& b) {
    return a.kind == b.kind && a.out_features == b.out_features && a.in_features == b.in_features;
  };
  if (dw.experts != w.experts || dw.dim != w.dim || dw.inter != w.inter || dw.act_fmt != w.act_fmt ||
      !same(dw.w1, w.w1) || !same(dw.w3, w.w3) || !same(dw.w2, w.w2) || !same(dw.shared_w1, w.shared_w1) ||
      !same(dw.shared_w3, w.shared_w3) || !same(dw.shared_w2, w.shared_w2)) {
    throw std::invalid_argument("moe_combine: the device experts' kinds or shapes differ from the host experts'");
  }
  check_ids(indices, tokens, k, w.experts);
  const std::size_t T = static_cast<std::size_t>(tokens), K = static_cast<std::size_t>(k),
                    D = static_cast<std::size_t>(w.dim);
  MoeCombineBatch out;
  out.y.resize(T * D);
  if (tokens == 0) return out;
  detail::DeviceBuffer<float> d_x(T * D), d_weights(T * K), d_y(T * D);
  detail::DeviceBuffer<std::int64_t> d_indices(T * K);
  detail::DeviceBuffer<std::uint8_t> d_undecided(T), d_ws(moe_combine_workspace_bytes(tokens, k, w.dim, w.inter));
  d_x.upload(x);
  d_weights.upload(weights);
  d_indices.upload(indices);
  moe_combine_device(d_x.get(), tokens, d_weights.get(), d_indices.get(), k, dw, static_cast<float>(limit), d_y.get(),
                     d_undecided.get(), d_ws.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  std::vector<std::int64_t> flagged;
  out.recomputed =
      detail::recompute_undecided(d_undecided, [&](std::size_t t) { flagged.push_back(static_cast<std::int64_t>(t)); });
  detail::moe_combine_reference_tokens(x, weights, indices, k, flagged, w, limit, out.y.data());
  return out;
}

// The experts uploaded for this call, then moe_combine_resident.
MoeCombineBatch moe_combine(const float* x, std::int64_t tokens, const float* weights, const std::int64_t* indices,
                            std::int64_t k, const MoeExpertsView& w, double limit) {
  check_args(x, tokens, weights, indices, k, w, "moe_combine");
  check_ids(indices, tokens, k, w.experts);  // before any CUDA call
  if (tokens == 0) return moe_combine_resident(x, tokens, weights, indices, k, w, w, limit);
  const detail::DeviceWeight d_w1(w.w1, w.experts), d_w3(w.w3, w.experts), d_w2(w.w2, w.experts), d_s1(w.shared_w1, 1),
      d_s3(w.shared_w3, 1), d_s2(w.shared_w2, 1);
  MoeExpertsView dw = w;
  dw.w1 = d_w1.view();
  dw.w3 = d_w3.view();
  dw.w2 = d_w2.view();
  dw.shared_w1 = d_s1.view();
  dw.shared_w3 = d_s3.view();
  dw.shared_w2 = d_s2.view();
  return moe_combine_resident(x, tokens, weights, indices, k, w, dw, limit);
}

}  // namespace dsv4::gpu
