// Sparse attention with the attention sink (spec 02 §2.9; official kernel sparse_attn_kernel and
// wrapper sparse_attn in inference/kernel_tilelang.py).
//
// Layout: q [M·H, c] — row r·H + h is head h of query token r (the official [M, H, c] flattened);
// kv [N, c] — one shared KV head (MQA), used as key and value; sink [H]; lists [M, K] (index
// lists, −1 = no entry; spec 02 §2.8). Output [M·H, c]. A batch is handled by calling once per
// batch row (the kernel runs one thread block per (token, batch row); rows never interact).
#pragma once

#include <cstdint>
#include <span>

#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4 {

// Entries per online-softmax chunk of the official kernel (`block = 64`).
inline constexpr std::int64_t kSparseAttnChunk = 64;

// spec 02 §2.9.
// Official mode — the kernel's arithmetic under C1–C5 (q, kv must hold bf16 values, sink fp32):
//   per head, μ = −∞, ℓ = 0, o = 0; per chunk of 64 list positions, in list order:
//   s_j = C1(q·v_j) (−∞ for −1 entries), s_j ← fl(s_j·fp32(scale)); μ' = max(μ, max_j s_j);
//   α = exp(fl(μ − μ')); p_j = exp(fl(s_j − μ')); ℓ ← fl(fma(ℓ, α, C1 Σ_j p_j)) (C3);
//   o ← fl(o·α); o ← fl(o + C1 Σ_j bf16(p_j)·v_j) (P rounded to bf16 for P·V only); μ ← μ'.
//   Finish: ℓ ← fl(ℓ + exp(fl(z_h − μ))) (sink in the denominator only, not in the running max);
//   o ← fl(o / ℓ) (IEEE division), output bf16(o).
//   The wrapper's padding of h < 16 heads with zero queries and zero sinks is a no-op for the real
//   heads (every head is an independent recurrence), so it is not simulated.
// Exact mode — the exact math in double, max-subtracted:
//   o_h = Σ_j e^{s_j − m} v_j / (Σ_j e^{s_j − m} + e^{z_h − m}), s_j = scale·(q_h·v_j), m = max_j s_j,
//   over the valid entries in list order (−1 entries skipped).
// A sink of −∞ gives the plain softmax. Throws std::invalid_argument naming the argument on a
// shape mismatch, an entry outside [−1, N), or a list whose first chunk of 64 is all −1 (the
// official kernel would return NaN there: exp(−∞ − (−∞))).
Mat sparse_attention(const Precision& p, const Mat& q, std::int64_t n_heads, const Mat& kv,
                     std::span<const double> sink, const IndexLists& lists, double scale);

// A rigorous element-wise bound on |official − exact| for the same inputs (derivation in
// sparse_attention.cpp): B = 1.01·(2u_b + 3E)·A + K·2^−120·max|v|, where A_{h,d} = Σ_j w_j |v_jd|
// with the exact weights w_j, u_b = 2^−8 (bf16 unit roundoff: P for P·V and the output), and
// E = 2^−24·(5.01·S + 2R + 6·n_chunks + 10) covers every fp32 rounding of the kernel (S = max|s_j|,
// R = max|s_j − m| including the sink's |z − m|). Two official evaluations of the same attention
// with different list layouts (spec 02 §2.11.4) therefore differ by at most 2B.
Mat sparse_attention_official_bound(const Mat& q, std::int64_t n_heads, const Mat& kv, std::span<const double> sink,
                                    const IndexLists& lists, double scale);

}  // namespace dsv4
