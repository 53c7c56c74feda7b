// GPU MoE gate (spec 03 §3.1; official code class Gate), bit-exact with the official-mode reference
// (dsv4/model/gate.hpp Gate::forward / gate_rows with Precision(Mode::kOfficial)) and
// batch-invariant: one thread block per token computes its scores, choice and weights from that
// token's activations and id and the shared weights alone.
//
// Per token: the E logits ℓ_e = C1 Σ_i x_i·W_ei (bf16 × bf16 products, exact in double; one warp
// per expert, a double sum with its TwoSum errors kept, rounded once when decided — gpu/common
// round_c1_comp); the scores s_e (sqrtsoftplus: fl(sqrt(softplus(ℓ))) with C2 softplus (x > 20:
// x, else fl(log1p(fl(exp(x))))); sigmoid: C2 σ; softmax: exp(fl(ℓ_e − max)) / the C1 sum); the
// choice — score-routed: the top-k of fl(s_e + b_e) in C4 order (descending value, equal values by
// ascending index: each expert's rank is the count of experts before it in that order), hash-
// routed: the row tid2eid[id]; the weights w_j = s_{idx_j}, divided by the C1 sum of the k
// gathered scores unless softmax, × fl32(route_scale). A token whose C1 sum or C2 function is
// undecided is flagged and the host entry point recomputes it with the CPU reference.
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

// The largest expert count and top-k the kernel supports.
inline constexpr std::int64_t kGateMaxExperts = 1024;
inline constexpr std::int64_t kGateMaxTopk = 32;

// Score functions, as dsv4::ScoreFunc (config/model_config.hpp).
enum class GateScore : int { kSoftmax = 0, kSigmoid = 1, kSqrtSoftplus = 2 };

struct GateBatch {
  std::vector<float> weights;         // [tokens, k]
  std::vector<std::int64_t> indices;  // [tokens, k] expert ids in choice order
  std::vector<float> scores;          // [tokens, E] the original (unbiased) scores
  std::int64_t recomputed = 0;        // tokens the device left undecided, recomputed by the CPU reference
};

// x [tokens, d] (bf16 values), token_ids [tokens] (each in [0, vocab)), weight [E, d] (bf16 values);
// score-routed when tid2eid is null (bias [E], fp32 values), hash-routed otherwise (tid2eid
// [vocab, k], bias null). 1 ≤ k ≤ min(E, 32), E ≤ 1024.
GateBatch gate(const float* x, std::int64_t tokens, std::int64_t d, const std::int64_t* token_ids, const float* weight,
               std::int64_t experts, const float* bias, const std::int64_t* tid2eid, std::int64_t vocab,
               GateScore score, std::int64_t k, double route_scale);

// Device-pointer form: writes weights, indices, scores and undecided[t] (1 when token t must be
// recomputed on the host). Token ids and tid2eid entries are not range-checked here.
void gate_device(const float* x, std::int64_t tokens, std::int64_t d, const std::int64_t* token_ids,
                 const float* weight, std::int64_t experts, const float* bias, const std::int64_t* tid2eid,
                 GateScore score, std::int64_t k, float route_scale, float* weights, std::int64_t* indices,
                 float* scores, std::uint8_t* undecided, void* stream = nullptr);

}  // namespace dsv4::gpu
