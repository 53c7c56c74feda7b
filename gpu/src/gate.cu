// MoE gate kernel (spec 03 §3.1), bit-exact with the official-mode reference (ref/model/src/gate.cpp
// Gate::forward) — see dsv4/gpu/gate.hpp for the arithmetic.
//
// One thread block of 256 threads per token (grid-stride over tokens): warp w computes the logits
// of experts w, w + 8, … (lanes split the d products, their compensated parts merged by butterflies,
// lane 0 rounds); thread e computes score e (softmax: thread 0 takes the max and the C1 sum); thread
// e computes its own rank in the C4 order of the biased scores and, when it is below k, writes
// itself into slot rank (ranks are distinct: an exact, order-free choice); thread 0 gathers and
// normalises the k weights. A token's bits depend only on that token: no atomics, nothing across
// tokens.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/gate.hpp"
#include "gate_reference.hpp"

namespace dsv4::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

// The score of one logit by an element-wise score function (spec 03 §3.1 step 2).
__device__ __forceinline__ bool elementwise_score(GateScore f, float l, float* s) {
  if (f == GateScore::kSigmoid) return common::sigmoid_c2_dev(l, s);
  float sp = 0.0f;
  const bool ok = common::softplus_c2_dev(l, &sp);
  *s = __fsqrt_rn(sp);  // C5: the IEEE square root
  return ok;
}

__global__ void __launch_bounds__(kThreads)
    gate_kernel(const float* __restrict__ x, std::int64_t tokens, std::int64_t d,
                const std::int64_t* __restrict__ token_ids, const float* __restrict__ weight, int experts,
                const float* __restrict__ bias, const std::int64_t* __restrict__ tid2eid, GateScore score, int k,
                float route_scale, float* __restrict__ weights, std::int64_t* __restrict__ indices,
                float* __restrict__ scores, std::uint8_t* __restrict__ undecided) {
  __shared__ float logit[kGateMaxExperts];
  __shared__ float s[kGateMaxExperts];
  __shared__ float biased[kGateMaxExperts];
  __shared__ int chosen[kGateMaxTopk];
  __shared__ float shared_max, shared_total;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const float* xt = x + t * d;
    bool ok = true;
    // step 1: logits, one warp per expert
    for (int e = warp; e < experts; e += kWarps) {
      const float* w = weight + static_cast<std::int64_t>(e) * d;
      common::SumC1Comp part;
      for (std::int64_t i = lane; i < d; i += 32) {
        part.add(__dmul_rn(static_cast<double>(xt[i]), static_cast<double>(w[i])));  // exact
      }
      part = common::warp_merge_comp(part);
      if (lane == 0) ok = common::round_c1_comp(part, static_cast<int>(d + 32), &logit[e]) && ok;
    }
    __syncthreads();
    // step 2: the original scores
    if (score == GateScore::kSoftmax) {
      if (tid == 0) {
        float mx = logit[0];
        for (int e = 1; e < experts; ++e) mx = fmaxf(mx, logit[e]);
        shared_max = mx;
      }
      __syncthreads();
      for (int e = tid; e < experts; e += kThreads)
        ok = common::exp_c2_dev(__fsub_rn(logit[e], shared_max), &s[e]) && ok;
      __syncthreads();
      if (tid == 0) {
        common::SumC1Comp total;
        for (int e = 0; e < experts; ++e) total.add(static_cast<double>(s[e]));
        ok = common::round_c1_comp(total, experts, &shared_total) && ok;
      }
      __syncthreads();
      for (int e = tid; e < experts; e += kThreads) s[e] = __fdiv_rn(s[e], shared_total);
    } else {
      for (int e = tid; e < experts; e += kThreads) ok = elementwise_score(score, logit[e], &s[e]) && ok;
    }
    __syncthreads();
    // step 3: the choice — hash: the token id's row of tid2eid; score: the top-k of ŝ = fl(s + b)
    if (tid2eid != nullptr) {
      if (tid < k) chosen[tid] = static_cast<int>(tid2eid[token_ids[t] * k + tid]);
    } else {
      for (int e = tid; e < experts; e += kThreads) biased[e] = __fadd_rn(s[e], bias[e]);
      __syncthreads();
      for (int e = tid; e < experts; e += kThreads) {
        const float v = biased[e];
        int rank = 0;  // experts before e in the C4 order: larger value, or equal value and lower index
        for (int j = 0; j < experts; ++j) rank += (biased[j] > v || (biased[j] == v && j < e)) ? 1 : 0;
        if (rank < k) chosen[rank] = e;
      }
    }
    for (int e = tid; e < experts; e += kThreads) scores[t * experts + e] = s[e];
    __syncthreads();
    // step 4: weights from the original scores, normalised unless softmax, × route_scale
    if (tid == 0) {
      float total = 1.0f;
      if (score != GateScore::kSoftmax) {
        common::SumC1Comp sum;
        for (int j = 0; j < k; ++j) sum.add(static_cast<double>(s[chosen[j]]));
        ok = common::round_c1_comp(sum, k, &total) && ok;
      }
      for (int j = 0; j < k; ++j) {
        const float w = score != GateScore::kSoftmax ? __fdiv_rn(s[chosen[j]], total) : s[chosen[j]];
        weights[t * k + j] = __fmul_rn(w, route_scale);
        indices[t * k + j] = chosen[j];
      }
    }
    const int all = __syncthreads_and(ok ? 1 : 0);  // also orders this token's shared use before the next's
    if (tid == 0) undecided[t] = all != 0 ? 0 : 1;
  }
}

void check_args(std::int64_t tokens, std::int64_t d, std::int64_t experts, std::int64_t k, GateScore score,
                const char* who) {
  const std::string w(who);
  if (tokens < 0) throw std::invalid_argument(w + ": tokens must be non-negative");
  if (d < 1 || d > (std::int64_t{1} << 24)) throw std::invalid_argument(w + ": dim must be in [1, 2^24]");
  if (experts < 1 || experts > kGateMaxExperts) {
    throw std::invalid_argument(w + ": experts must be in [1, " + std::to_string(kGateMaxExperts) + "], got " +
                                std::to_string(experts));
  }
  if (k < 1 || k > experts || k > kGateMaxTopk) {
    throw std::invalid_argument(w + ": k must be in [1, min(experts, " + std::to_string(kGateMaxTopk) + ")], got " +
                                std::to_string(k));
  }
  if (score != GateScore::kSoftmax && score != GateScore::kSigmoid && score != GateScore::kSqrtSoftplus) {
    throw std::invalid_argument(w + ": unknown score function");
  }
}

}  // namespace

void gate_device(const float* x, std::int64_t tokens, std::int64_t d, const std::int64_t* token_ids,
                 const float* weight, std::int64_t experts, const float* bias, const std::int64_t* tid2eid,
                 GateScore score, std::int64_t k, float route_scale, float* weights, std::int64_t* indices,
                 float* scores, std::uint8_t* undecided, void* stream) {
  check_args(tokens, d, experts, k, score, "gate_device");
  if ((tid2eid == nullptr) == (bias == nullptr)) {
    throw std::invalid_argument("gate_device: give exactly one of bias and tid2eid");
  }
  if (tokens == 0) return;
  const unsigned grid = static_cast<unsigned>(std::min(tokens, kMaxGrid));
  gate_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, tokens, d, token_ids, weight, static_cast<int>(experts), bias, tid2eid, score, static_cast<int>(k),
      route_scale, weights, indices, scores, undecided);
  DSV4_CUDA_CHECK_LAUNCH("gate_kernel");
}

GateBatch gate(const float* x, std::int64_t tokens, std::int64_t d, const std::int64_t* token_ids, const float* weight,
               std::int64_t experts, const float* bias, const std::int64_t* tid2eid, std::int64_t vocab,
               GateScore score, std::int64_t k, double route_scale) {
  check_args(tokens, d, experts, k, score, "gate");
  if ((tid2eid == nullptr) == (bias == nullptr)) {
    throw std::invalid_argument("gate: give exactly one of bias and tid2eid");
  }
  for (std::int64_t t = 0; t < tokens; ++t) {
    if (token_ids[t] < 0 || token_ids[t] >= vocab) {
      throw std::invalid_argument("gate: token id " + std::to_string(token_ids[t]) +
                                  " outside [0, vocab = " + std::to_string(vocab) + ")");
    }
  }
  if (tid2eid != nullptr) {
    for (std::int64_t i = 0; i < vocab * k; ++i) {
      if (tid2eid[i] < 0 || tid2eid[i] >= experts) {
        throw std::invalid_argument("gate: tid2eid entry " + std::to_string(i) + " outside [0, experts)");
      }
    }
  }
  const std::size_t T = static_cast<std::size_t>(tokens), D = static_cast<std::size_t>(d),
                    E = static_cast<std::size_t>(experts), K = static_cast<std::size_t>(k);
  GateBatch out;
  out.weights.resize(T * K);
  out.indices.resize(T * K);
  out.scores.resize(T * E);
  if (tokens == 0) return out;
  const std::size_t table = tid2eid != nullptr ? static_cast<std::size_t>(vocab) * K : 0;
  detail::DeviceBuffer<float> d_x(T * D), d_w(E * D), d_bias(bias != nullptr ? E : 0), d_weights(T * K),
      d_scores(T * E);
  detail::DeviceBuffer<std::int64_t> d_ids(T), d_table(table), d_indices(T * K);
  detail::DeviceBuffer<std::uint8_t> d_u(T);
  d_x.upload(x);
  d_w.upload(weight);
  d_ids.upload(token_ids);
  if (bias != nullptr) d_bias.upload(bias);
  if (tid2eid != nullptr) d_table.upload(tid2eid);
  gate_device(d_x.get(), tokens, d, d_ids.get(), d_w.get(), experts, bias != nullptr ? d_bias.get() : nullptr,
              tid2eid != nullptr ? d_table.get() : nullptr, score, k, static_cast<float>(route_scale), d_weights.get(),
              d_indices.get(), d_scores.get(), d_u.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_weights.download(out.weights.data());
  d_indices.download(out.indices.data());
  d_scores.download(out.scores.data());
  out.recomputed = detail::recompute_undecided(d_u, [&](std::size_t t) {
    detail::gate_reference(x + t * D, d, token_ids[t], weight, experts, bias, tid2eid, vocab, score, k, route_scale,
                           &out.weights[t * K], &out.indices[t * K], &out.scores[t * E]);
  });
  return out;
}

}  // namespace dsv4::gpu
