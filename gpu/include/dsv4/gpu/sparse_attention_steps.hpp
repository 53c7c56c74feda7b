// The fixed-order fp32 steps of sparse attention with the sink (spec 02 §2.9), written once for the
// kernel (gpu/src/sparse_attention.cu, with the device's primitives) and for its check on the CPU
// (tests/gpu_sparse_attention_test.cpp runs these same functions with the host's primitives and
// compares every output bit with the official-mode reference on the op's cases).
//
// The reference's official mode (ref/model/src/sparse_attention.cpp) is a recurrence over the chunks
// of 64 list positions, per head h of a query token:
//   compaction  the chunk's entries ≠ −1, in list order (duplicates kept: counted twice); a chunk
//               without any is skipped (μ, ℓ, o unchanged — the official kernel's dead chunk);
//   logits      s_j = fl(C1(q_h · v_j) · τ), τ = fl32(scale);
//   head_step   μ' = max(μ, s_0, …, s_{n−1}) left to right with std::max's rule (the first of equal
//               values is kept: only the sign of a zero maximum can differ, and it never reaches a
//               result); α = exp(fl(μ − μ')) (exp(−∞) = 0 for the first chunk);
//               p_j = exp(fl(s_j − μ')); ℓ ← fma(ℓ, α, C1 Σ_j p_j) (one fp32 FMA, C3);
//               s_j ← bf16(p_j) (the probabilities are rounded for P·V only); μ ← μ';
//   rescale_add o ← fl(fl(o·α) + C1 Σ_j bf16(p_j)·v_jd), per output element d;
//   finish      den = fl(ℓ + exp(fl(z_h − μ))) (the sink in the denominator only, never in the max);
//               out = bf16(fl(o / den)).
// exp is C2 (correctly rounded fp32), C1 sums are exact sums rounded once — order-free, so the
// kernel may split them over lanes; everything else is one IEEE fp32 operation in the order above.
//
// A primitives type A supplies add, sub, mul, div, fma (each one correctly rounded fp32 operation),
// exp(x, &out) and a C1 accumulator A::Sum (add(double term), round(count, &out)) — each of exp and
// round returning whether it decided the correctly rounded result — and bf16(x) (RNE).
//
// Plain C++17 (no CUDA types); under nvcc the functions are device functions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DSV4_SPARSE_ATTN_FN __device__ __forceinline__
#else
#define DSV4_SPARSE_ATTN_FN inline
#endif

namespace dsv4::gpu::sparse_attention_steps {

// List positions per chunk of the official kernel's online softmax (dsv4::kSparseAttnChunk).
inline constexpr int kChunk = 64;

// The valid entries of the chunk at list positions [g0, min(g0 + 64, width)) of `list`, in list
// order, into idx; returns their count n (0: a dead chunk). Sets *bad when an entry lies outside
// [−1, n_kv) (it is not stored: nothing reads outside the kv rows).
DSV4_SPARSE_ATTN_FN int chunk_entries(const std::int32_t* list, std::int64_t width, std::int64_t g0, std::int64_t n_kv,
                                      std::int32_t* idx, bool* bad) {
  int n = 0;
  const std::int64_t end = g0 + kChunk < width ? g0 + kChunk : width;
  for (std::int64_t j = g0; j < end; ++j) {
    const std::int32_t e = list[j];
    if (e == -1) continue;
    if (e < -1 || e >= n_kv) {
      *bad = true;
      continue;
    }
    idx[n++] = e;
  }
  return n;
}

// The exponent T of the lowest set bit of a float: x = odd · 2^T (finite nonzero x); kNoTrail for ±0
// (no bit: a zero term is exact), −kNoTrail for ±inf and NaN (never exact).
inline constexpr int kNoTrail = 1 << 20;
DSV4_SPARSE_ATTN_FN int trailing_exponent(float x) {
  std::uint32_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  u &= 0x7fffffffu;
  if (u == 0) return kNoTrail;
  const int biased = static_cast<int>(u >> 23);
  if (biased == 0xff) return -kNoTrail;
  const std::uint32_t m = biased == 0 ? u : ((u & 0x7fffffu) | 0x800000u);  // x = m · 2^(max(biased, 1) − 150)
#if defined(__CUDA_ARCH__)
  const int tz = __ffs(static_cast<int>(m)) - 1;
#else
  const int tz = __builtin_ctz(m);
#endif
  return (biased == 0 ? -149 : biased - 150) + tz;
}

// Whether a double sum of the products a_k·b_k is exact in any order and grouping (each step an IEEE
// double add or FMA, or fewer roundings), given ta ≤ T(a_k) and tb ≤ T(b_k) for every nonzero term
// and bound ≥ Σ_k |a_k b_k| (e.g. ‖a‖₂‖b‖₂ rounded upward): every product and every partial sum is a
// multiple of 2^(ta + tb) no larger than the bound, and a multiple of 2^E smaller than 2^(53 + E) is
// a double (E ≥ −298 for floats: never below double's subnormals). Then the double sum is the
// exact sum V, and its C1 rounding is fl32(V) (+0 for V = 0).
DSV4_SPARSE_ATTN_FN bool sum_exact_in_double(double bound, int ta, int tb) {
  const int e = ta + tb;
  if (e < -300 || e > 300) return false;  // a sentinel: a zero row is decided by its zero bound first
#if defined(__CUDA_ARCH__)
  return bound < ldexp(1.0, 53 + e);
#else
  return bound < std::ldexp(1.0, 53 + e);
#endif
}

// s_j = fl(dot · τ) of the C1 dot product q_h · v_j.
template <class A>
DSV4_SPARSE_ATTN_FN float logit(const A& a, float dot, float tau) {
  return a.mul(dot, tau);
}

// The running max's step, std::max(m, s)'s rule: the first of equal values is kept, a NaN never
// taken. Over a list in order this gives the first maximal non-NaN value; so does any grouping that
// keeps, of two equal values, the earlier one (the kernel's warp reduction, max_first).
DSV4_SPARSE_ATTN_FN float max_step(float m, float s) { return m < s ? s : m; }

// A value and its list position, for the max in any grouping: of two values, the larger; of two equal
// ones (±0 included), the earlier position — associative and commutative, so any reduction tree over
// a chunk's (s_j, j) with NaNs left out (or passed as {−∞, kAbsent}) gives the first maximal non-NaN
// value, and max_step(μ, that value) is the left-to-right max_step over μ, s_0, …, s_{n−1}, bits and
// all (the sign of a zero maximum included).
struct MaxAt {
  float v;
  int at;
};
inline constexpr int kAbsent = 0x7fffffff;
DSV4_SPARSE_ATTN_FN MaxAt max_first(MaxAt a, MaxAt b) {
  if (a.v < b.v) return b;
  if (b.v < a.v) return a;
  return a.at < b.at ? a : b;
}

// The rescale factor α = exp(fl(μ − μ')) and one probability p = exp(fl(s − μ')). Return whether exp
// was decided.
template <class A>
DSV4_SPARSE_ATTN_FN bool rescale_factor(const A& a, float mu, float mu_new, float* alpha) {
  return a.exp(a.sub(mu, mu_new), alpha);
}
template <class A>
DSV4_SPARSE_ATTN_FN bool probability(const A& a, float s, float mu_new, float* p) {
  return a.exp(a.sub(s, mu_new), p);
}

// ℓ ← fma(ℓ, α, Σp) (one fp32 FMA, C3), Σp the chunk's C1 sum of the p_j.
template <class A>
DSV4_SPARSE_ATTN_FN float ell_update(const A& a, float ell, float alpha, float sum_p) {
  return a.fma(ell, alpha, sum_p);
}

// One head's softmax step over the chunk's n logits s[0, n): updates *mu and *ell, writes α to
// *alpha and bf16(p_j) over s[j]. Returns whether every exp and the C1 sum were decided.
template <class A>
DSV4_SPARSE_ATTN_FN bool head_step(const A& a, float* s, int n, float* mu, float* ell, float* alpha) {
  float mu_new = *mu;
  for (int j = 0; j < n; ++j) mu_new = max_step(mu_new, s[j]);
  float al = 0.0f;
  bool ok = rescale_factor(a, *mu, mu_new, &al);
  typename A::Sum sum;
  for (int j = 0; j < n; ++j) {
    float p = 0.0f;
    ok = probability(a, s[j], mu_new, &p) && ok;
    sum.add(p);
    s[j] = a.bf16(p);
  }
  float total = 0.0f;
  ok = sum.round(n, &total) && ok;
  *ell = ell_update(a, *ell, al, total);
  *mu = mu_new;
  *alpha = al;
  return ok;
}

// One output element after a chunk: fl(fl(o·α) + pv), pv the C1 sum Σ_j bf16(p_j)·v_jd.
template <class A>
DSV4_SPARSE_ATTN_FN float rescale_add(const A& a, float o, float alpha, float pv) {
  return a.add(a.mul(o, alpha), pv);
}

// The head's denominator with the sink z: fl(ℓ + exp(fl(z − μ))). Returns whether exp was decided.
template <class A>
DSV4_SPARSE_ATTN_FN bool denominator(const A& a, float ell, float mu, float sink, float* den) {
  float e = 0.0f;
  const bool ok = a.exp(a.sub(sink, mu), &e);
  *den = a.add(ell, e);
  return ok;
}

// One output element: bf16(fl(o / den)).
template <class A>
DSV4_SPARSE_ATTN_FN float output(const A& a, float o, float den) {
  return a.bf16(a.div(o, den));
}

}  // namespace dsv4::gpu::sparse_attention_steps

#undef DSV4_SPARSE_ATTN_FN
