// Sparse attention with the attention sink (spec 02 §2.9), bit-exact with the official-mode
// reference (ref/model/src/sparse_attention.cpp) — see dsv4/gpu/sparse_attention.hpp, and
// dsv4/gpu/sparse_attention_steps.hpp for the fixed-order fp32 steps this kernel runs with the
// device primitives below.
//
// One thread block of 256 threads per token (grid-stride over the tokens; the loop is block-uniform).
// Per chunk of 64 list positions, in list order, separated by barriers:
//   1. thread 0 compacts the chunk's valid entries into shared memory (chunk_entries); a dead chunk
//      (none) is skipped, as the reference does;
//   2. logits: one warp per (head h, entry j), lane l takes the dims d ≡ l (mod 32) of q_h · v_j,
//      products exact in double (bf16 × bf16: a 16-bit product; any two floats: ≤ 48 bits, within
//      double's normal range), each lane's compensated part (SumC1Comp), merged by butterflies and
//      rounded once (round_c1_comp over c terms plus the 31 merges); lane 0 stores fl(dot·τ);
//   3. thread h < H runs head_step for head h (its μ and ℓ live in that thread's registers): the
//      sequential max, α, the p_j with their C1 sum (sequential compensated sum, n terms), the FMA;
//   4. thread i owns the output elements e ≡ i (mod 256) of the token for the whole recurrence (kept
//      in o itself, in fp32): o_e ← rescale_add(o_e, α_h, C1 Σ_j bf16(p_j)·v_{j,d}) with the sum a
//      sequential compensated double sum over the n entries (exact products: bf16 × bf16).
// Finish: thread h computes the head's denominator with the sink, then each thread writes its
// elements bf16(fl(o / den)). Every value's bits depend on the token's inputs alone (no shared
// accumulators across tokens, no atomics, no dependence on the grid or the batch).
//
// Undecided: any C1 rounding or exp a thread could not decide makes the block's OR (the final
// __syncthreads_or) flag the token; so does an invalid list (an entry outside [−1, n_kv), or a first
// chunk without a valid entry, where the official kernel returns NaN and the reference refuses);
// the host entry point recomputes flagged tokens with the reference.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/common/canonical.cuh"
#include "dsv4/gpu/common/formats.cuh"
#include "dsv4/gpu/sparse_attention.hpp"
#include "dsv4/gpu/sparse_attention_steps.hpp"
#include "sparse_attention_reference.hpp"

namespace dsv4::gpu {
namespace {

namespace steps = sparse_attention_steps;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeads = static_cast<int>(kSparseAttentionMaxHeads);
constexpr std::int64_t kMaxDim = std::int64_t{1} << 16;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;
static_assert(kMaxHeads <= kThreads, "one thread per head");

// The primitives of sparse_attention_steps on the device: single IEEE fp32 operations (intrinsics:
// never contracted, never approximated), C2 exp, compensated C1 sums, bf16 RNE.
struct DeviceArith {
  struct Sum {
    common::SumC1Comp part;
    __device__ __forceinline__ void add(double v) { part.add(v); }
    __device__ __forceinline__ bool round(int count, float* out) const {
      return common::round_c1_comp(part, count, out);
    }
  };
  __device__ __forceinline__ float add(float a, float b) const { return __fadd_rn(a, b); }
  __device__ __forceinline__ float sub(float a, float b) const { return __fsub_rn(a, b); }
  __device__ __forceinline__ float mul(float a, float b) const { return __fmul_rn(a, b); }
  __device__ __forceinline__ float div(float a, float b) const { return __fdiv_rn(a, b); }
  __device__ __forceinline__ float fma(float a, float b, float c) const { return __fmaf_rn(a, b, c); }
  __device__ __forceinline__ bool exp(float x, float* out) const { return common::exp_c2_dev(x, out); }
  __device__ __forceinline__ float bf16(float x) const { return common::round_to_bf16(x); }
};

__global__ void __launch_bounds__(kThreads)
    sparse_attention_kernel(const float* __restrict__ q, std::int64_t tokens, int heads, int c,
                            const std::int32_t* __restrict__ lists, std::int64_t width, const float* __restrict__ kv,
                            std::int64_t n_kv, const float* __restrict__ sink, float tau, float* __restrict__ o,
                            std::uint8_t* __restrict__ undecided) {
  __shared__ float s[kMaxHeads * steps::kChunk];  // logits, then bf16(p), of the chunk: [h][j]
  __shared__ float head_value[kMaxHeads];         // α of the chunk, then the denominator
  __shared__ std::int32_t idx[steps::kChunk];
  __shared__ int n_sh, bad_sh;
  const DeviceArith a;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const std::int64_t row = static_cast<std::int64_t>(heads) * c;
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const float* qt = q + t * row;
    float* ot = o + t * row;
    for (std::int64_t e = tid; e < row; e += kThreads) ot[e] = 0.0f;
    float mu = -__int_as_float(0x7f800000), ell = 0.0f;  // thread h's head h
    bool ok = true;
    bool refused = false;
    for (std::int64_t g0 = 0; g0 < width; g0 += steps::kChunk) {
      if (tid == 0) {
        bool bad = false;
        n_sh = steps::chunk_entries(lists + t * width, width, g0, n_kv, idx, &bad);
        bad_sh = bad ? 1 : 0;
      }
      __syncthreads();
      const int n = n_sh;
      if (bad_sh != 0 || (g0 == 0 && n == 0)) {  // refused by the reference: flag, compute nothing
        refused = true;
        __syncthreads();  // everyone has read n_sh, bad_sh
        break;
      }
      if (n == 0) {  // a dead chunk: μ, ℓ, o unchanged
        __syncthreads();
        continue;
      }
      // 2. logits
      for (int w = warp; w < heads * n; w += kWarps) {
        const int h = w / n, j = w % n;
        const float* qh = qt + static_cast<std::int64_t>(h) * c;
        const float* v = kv + static_cast<std::int64_t>(idx[j]) * c;
        common::SumC1Comp part;
        for (int d = lane; d < c; d += 32) {
          part.add(__dmul_rn(static_cast<double>(qh[d]), static_cast<double>(v[d])));  // exact
        }
        const common::SumC1Comp all = common::warp_merge_comp(part);
        float dot = 0.0f;
        const bool decided = common::round_c1_comp(all, c + 32, &dot);
        if (lane == 0) {
          ok = ok && decided;
          s[h * steps::kChunk + j] = steps::logit(a, dot, tau);
        }
      }
      __syncthreads();
      // 3. the heads' softmax steps
      if (tid < heads) ok = steps::head_step(a, s + tid * steps::kChunk, n, &mu, &ell, &head_value[tid]) && ok;
      __syncthreads();
      // 4. the output elements
      for (std::int64_t e = tid; e < row; e += kThreads) {
        const int h = static_cast<int>(e / c), d = static_cast<int>(e % c);
        const float* p = s + h * steps::kChunk;
        common::SumC1Comp pv;
        for (int j = 0; j < n; ++j) {
          pv.add(
              __dmul_rn(static_cast<double>(p[j]), static_cast<double>(kv[static_cast<std::int64_t>(idx[j]) * c + d])));
        }
        float sum = 0.0f;
        ok = common::round_c1_comp(pv, n, &sum) && ok;
        ot[e] = steps::rescale_add(a, ot[e], head_value[h], sum);
      }
      __syncthreads();  // idx, s and head_value are rewritten by the next chunk
    }
    if (!refused) {
      if (tid < heads) ok = steps::denominator(a, ell, mu, sink[tid], &head_value[tid]) && ok;
      __syncthreads();
      for (std::int64_t e = tid; e < row; e += kThreads) {
        ot[e] = steps::output(a, ot[e], head_value[e / c]);
      }
    }
    const int flagged = __syncthreads_or((ok && !refused) ? 0 : 1);
    if (tid == 0) undecided[t] = flagged != 0 ? 1 : 0;
  }
}

void check_args(const float* q, std::int64_t tokens, std::int64_t heads, std::int64_t c, const std::int32_t* lists,
                std::int64_t width, const float* kv, std::int64_t n_kv, const float* sink, const char* who) {
  const std::string f(who);
  if (tokens < 0) throw std::invalid_argument(f + ": tokens = " + std::to_string(tokens) + " < 0");
  if (heads < 1 || heads > kSparseAttentionMaxHeads) {
    throw std::invalid_argument(f + ": heads = " + std::to_string(heads) + " outside [1, " +
                                std::to_string(kSparseAttentionMaxHeads) + "]");
  }
  if (c < 1 || c > kMaxDim) throw std::invalid_argument(f + ": c = " + std::to_string(c) + " outside [1, 2^16]");
  if (width < 1) throw std::invalid_argument(f + ": list width = " + std::to_string(width) + " < 1");
  if (n_kv < 1 || n_kv > INT32_MAX)
    throw std::invalid_argument(f + ": n_kv = " + std::to_string(n_kv) + " outside [1, 2^31)");
  if (kv == nullptr || sink == nullptr) throw std::invalid_argument(f + ": kv and sink must be given");
  if (tokens > 0 && (q == nullptr || lists == nullptr)) throw std::invalid_argument(f + ": q and lists must be given");
}

}  // namespace

void sparse_attention_device(const float* q, std::int64_t tokens, std::int64_t heads, std::int64_t c,
                             const std::int32_t* lists, std::int64_t width, const float* kv, std::int64_t n_kv,
                             const float* sink, float tau, float* o, std::uint8_t* undecided, void* stream) {
  check_args(q, tokens, heads, c, lists, width, kv, n_kv, sink, "sparse_attention_device");
  if (tokens > 0 && (o == nullptr || undecided == nullptr)) {
    throw std::invalid_argument("sparse_attention_device: o and undecided must be given");
  }
  if (tokens == 0) return;
  const unsigned grid = static_cast<unsigned>(std::min(tokens, kMaxGrid));
  sparse_attention_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      q, tokens, static_cast<int>(heads), static_cast<int>(c), lists, width, kv, n_kv, sink, tau, o, undecided);
  DSV4_CUDA_CHECK_LAUNCH("sparse_attention_kernel");
}

SparseAttentionBatch sparse_attention(const float* q, std::int64_t tokens, std::int64_t heads, std::int64_t c,
                                      const std::int32_t* lists, std::int64_t width, const float* kv, std::int64_t n_kv,
                                      const float* sink, double scale) {
  check_args(q, tokens, heads, c, lists, width, kv, n_kv, sink, "sparse_attention");
  // The reference's refusals, before any CUDA call (the device would only flag these tokens).
  for (std::int64_t t = 0; t < tokens; ++t) {
    bool first_valid = false;
    for (std::int64_t j = 0; j < width; ++j) {
      const std::int32_t e = lists[t * width + j];
      if (e < -1 || e >= n_kv) {
        throw std::invalid_argument("sparse_attention: lists: row " + std::to_string(t) + " entry " +
                                    std::to_string(j) + " = " + std::to_string(e) + " outside [-1, " +
                                    std::to_string(n_kv) + ")");
      }
      if (j < steps::kChunk && e != -1) first_valid = true;
    }
    if (!first_valid) {
      throw std::invalid_argument("sparse_attention: lists: row " + std::to_string(t) +
                                  ": the first chunk of 64 entries is all -1");
    }
  }
  const std::size_t T = static_cast<std::size_t>(tokens), H = static_cast<std::size_t>(heads),
                    C = static_cast<std::size_t>(c), W = static_cast<std::size_t>(width),
                    N = static_cast<std::size_t>(n_kv);
  SparseAttentionBatch out;
  out.o.resize(T * H * C);
  if (tokens == 0) return out;
  detail::DeviceBuffer<float> d_q(T * H * C), d_kv(N * C), d_sink(H), d_o(T * H * C);
  detail::DeviceBuffer<std::int32_t> d_lists(T * W);
  detail::DeviceBuffer<std::uint8_t> d_undecided(T);
  d_q.upload(q);
  d_kv.upload(kv);
  d_sink.upload(sink);
  d_lists.upload(lists);
  sparse_attention_device(d_q.get(), tokens, heads, c, d_lists.get(), width, d_kv.get(), n_kv, d_sink.get(),
                          static_cast<float>(scale), d_o.get(), d_undecided.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_o.download(out.o.data());
  std::vector<std::int64_t> flagged;
  out.recomputed =
      detail::recompute_undecided(d_undecided, [&](std::size_t t) { flagged.push_back(static_cast<std::int64_t>(t)); });
  detail::sparse_attention_reference_tokens(q, heads, c, lists, width, kv, n_kv, sink, scale, flagged, out.o.data());
  return out;
}

}  // namespace dsv4::gpu
