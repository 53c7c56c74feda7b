// ref/README.md §Precision design; spec 01 §1.11 (C1, C2, C5, C6).
#include "dsv4/model/precision.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/parallel_rows.hpp"

namespace dsv4 {

std::string mode_name(Mode m) { return m == Mode::kExact ? "exact" : "official"; }

Mode mode_from_name(const std::string& name) {
  if (name == "exact") return Mode::kExact;
  if (name == "official") return Mode::kOfficial;
  throw std::invalid_argument("unknown precision mode '" + name + "' (expected exact or official)");
}

Precision::Precision(Mode mode, Deviation deviation) : mode_(mode), deviation_(deviation) {
  if (deviation != Deviation::kNone && mode != Mode::kOfficial)
    throw std::invalid_argument("precision: a deviation (" + deviation_name(deviation) + ") needs official mode");
}

std::string deviation_name(Deviation d) {
  switch (d) {
    case Deviation::kNone:
      return "none";
    case Deviation::kRopeHalfSplit:
      return "rope-half-split";
    case Deviation::kRopeFirstDims:
      return "rope-first-dims";
    case Deviation::kNoInverseRope:
      return "no-inverse-rope";
    case Deviation::kSinkInNumerator:
      return "sink-in-numerator";
    case Deviation::kCompressNoOverlap:
      return "compress-no-overlap";
    case Deviation::kWindowOffByOne:
      return "window-off-by-one";
    case Deviation::kKvScaleNotPow2:
      return "kv-scale-not-pow2";
    case Deviation::kIndexerNoHadamard:
      return "indexer-no-hadamard";
    case Deviation::kIndexerMaskOffByOne:
      return "indexer-mask-off-by-one";
    case Deviation::kBf16Truncation:
      return "bf16-truncation";
    case Deviation::kSinkhornColumnFirst:
      return "sinkhorn-column-first";
    case Deviation::kSinkhornEpsOutside:
      return "sinkhorn-eps-outside";
    case Deviation::kHcCombTransposed:
      return "hc-comb-transposed";
    case Deviation::kGateBiasInWeights:
      return "gate-bias-in-weights";
    case Deviation::kClampGateBothSides:
      return "clamp-gate-both-sides";
    case Deviation::kHashByPosition:
      return "hash-by-position";
    case Deviation::kSoftmaxScaleOff:
      return "softmax-scale-off";
    case Deviation::kRmsNormEpsOutside:
      return "rmsnorm-eps-outside";
    case Deviation::kGateScoresBf16:
      return "gate-scores-bf16";
    case Deviation::kIndexerScaleOmitted:
      return "indexer-scale-omitted";
    case Deviation::kRouteScaleTwice:
      return "route-scale-twice";
    case Deviation::kKvFp8Truncation:
      return "kv-fp8-truncation";
    case Deviation::kKvFp8RoundHalfAway:
      return "kv-fp8-round-half-away";
    case Deviation::kBf16Jitter:
      return "bf16-jitter";
    case Deviation::kSumSequential:
      return "sum-sequential";
    case Deviation::kSumPairwise:
      return "sum-pairwise";
    case Deviation::kSumSplitK4:
      return "sum-split-k4";
    case Deviation::kFaithfulFnJitter2Ulp:
      return "faithful-fn-jitter-2ulp";
    case Deviation::kFaithfulFnUp2Ulp:
      return "faithful-fn-up-2ulp";
    case Deviation::kSwigluNoClampGrad:
      return "swiglu-no-clamp-grad";
    case Deviation::kMuonTransposeNotUndone:
      return "muon-transpose-not-undone";
    case Deviation::kAdamWOnRouter:
      return "adamw-on-router";
    case Deviation::kNsFastCoefficientsOnly:
      return "ns-fast-coefficients-only";
    case Deviation::kBalanceOnBiasedScores:
      return "balance-on-biased-scores";
    case Deviation::kReductionShuffled:
      return "reduction-shuffled";
  }
  return "?";
}

const std::vector<Deviation>& all_deviations() {
  static const std::vector<Deviation> v{
      Deviation::kRopeHalfSplit,    Deviation::kRopeFirstDims,       Deviation::kNoInverseRope,
      Deviation::kSinkInNumerator,  Deviation::kCompressNoOverlap,   Deviation::kWindowOffByOne,
      Deviation::kKvScaleNotPow2,   Deviation::kIndexerNoHadamard,   Deviation::kIndexerMaskOffByOne,
      Deviation::kBf16Truncation,   Deviation::kSinkhornColumnFirst, Deviation::kSinkhornEpsOutside,
      Deviation::kHcCombTransposed, Deviation::kGateBiasInWeights,   Deviation::kClampGateBothSides,
      Deviation::kHashByPosition,   Deviation::kSoftmaxScaleOff,     Deviation::kRmsNormEpsOutside,
      Deviation::kGateScoresBf16,   Deviation::kIndexerScaleOmitted, Deviation::kRouteScaleTwice,
      Deviation::kKvFp8Truncation,  Deviation::kKvFp8RoundHalfAway};
  return v;
}

const std::vector<Deviation>& all_training_deviations() {
  static const std::vector<Deviation> v{Deviation::kSwigluNoClampGrad, Deviation::kMuonTransposeNotUndone,
                                        Deviation::kAdamWOnRouter, Deviation::kNsFastCoefficientsOnly,
                                        Deviation::kBalanceOnBiasedScores};
  return v;
}

const std::vector<Deviation>& all_training_legitimate_variants() {
  static const std::vector<Deviation> v{Deviation::kReductionShuffled};
  return v;
}

const std::vector<Deviation>& all_legitimate_variants() {
  static const std::vector<Deviation> v{Deviation::kBf16Jitter,           Deviation::kSumSequential,
                                        Deviation::kSumPairwise,          Deviation::kSumSplitK4,
                                        Deviation::kFaithfulFnJitter2Ulp, Deviation::kFaithfulFnUp2Ulp};
  return v;
}

// bf16 by truncation of the fp32 value (Deviation::kBf16Truncation): keep the top 16 bits.
static double truncate_bf16(double x) {
  const std::uint32_t b = float_bits(static_cast<float>(x)) & 0xFFFF0000u;
  return static_cast<double>(float_from_bits(b));
}

// bf16 of x on the other side for one value in eight (Deviation::kBf16Jitter): the value's bits
// pick deterministically; exactly representable values stay.
static double jitter_bf16(double x) {
  const double rne = round_bf16(x);
  if (rne == x) return x;
  std::uint64_t bits = 0;
  std::memcpy(&bits, &x, sizeof bits);
  if (((bits * 0x9E3779B97F4A7C15ULL) >> 61) != 0) return rne;
  const double toward_zero = truncate_bf16(x);
  const std::uint32_t tz = float_bits(static_cast<float>(toward_zero));
  const double away = static_cast<double>(float_from_bits(tz + 0x10000u));
  return rne == toward_zero ? away : toward_zero;
}

double Precision::bf16(double x) const {
  if (!official()) return x;
  if (deviation_ == Deviation::kBf16Truncation && std::isfinite(x)) return truncate_bf16(x);
  if (deviation_ == Deviation::kBf16Jitter && std::isfinite(x)) return jitter_bf16(x);
  return static_cast<double>(round_bf16(x));
}
double Precision::fp32(double x) const { return official() ? static_cast<double>(static_cast<float>(x)) : x; }

void Precision::bf16_inplace(Mat& m) const {
  if (!official()) return;
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = bf16(m.data()[i]);
}

void Precision::fp32_inplace(Mat& m) const {
  if (!official()) return;
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(m.data()[i]);
}

namespace {

// Legitimate variants of C1 (Deviation kSumSequential, kSumPairwise, kSumSplitK4): an fp32 engine
// that accumulates Σ a_i b_i in fp32 in another order than the canonical exact sum rounded once.
// b == nullptr: Σ a_i. The operands are fp32 values (the caller's C1 guarantee).
float fp32_term(const double* a, const double* b, std::int64_t i) {
  return b == nullptr ? static_cast<float>(a[i]) : static_cast<float>(a[i] * b[i]);
}

// s ← fmaf(a_i, b_i, s) over [i0, i1) (spec 01 C1's fp32 variant). fmaf is correctly rounded, so
// every implementation gives the same bits: the CPU's fused multiply-add instruction where it has
// one (compiled for it here, chosen at run time: the build targets plain x86-64, where std::fma on
// floats is a library call per term, which dominated this loop), the C library's otherwise.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("fma"))) float fma_chain_hw(const double* a, const double* b, std::int64_t i0, std::int64_t i1) {
  float s = 0.0f;
  for (std::int64_t i = i0; i < i1; ++i) s = __builtin_fmaf(static_cast<float>(a[i]), static_cast<float>(b[i]), s);
  return s;
}
bool cpu_has_fma() {
  static const bool has = __builtin_cpu_supports("fma");
  return has;
}
#endif
float fma_chain(const double* a, const double* b, std::int64_t i0, std::int64_t i1) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (cpu_has_fma()) return fma_chain_hw(a, b, i0, i1);
#endif
  float s = 0.0f;
  for (std::int64_t i = i0; i < i1; ++i) s = std::fma(static_cast<float>(a[i]), static_cast<float>(b[i]), s);
  return s;
}

// Sequential over [i0, i1): s ← fmaf(a_i, b_i, s) (s ← s + a_i for a sum), as a CUDA-core loop.
float sequential_fp32(const double* a, const double* b, std::int64_t i0, std::int64_t i1) {
  if (b != nullptr) return fma_chain(a, b, i0, i1);
  float s = 0.0f;
  for (std::int64_t i = i0; i < i1; ++i) s = s + static_cast<float>(a[i]);
  return s;
}

// The kSumSequential GEMM y = x wᵀ, every element the chain of fma_chain (s ← fmaf(x_ik, w_jk, s), k
// ascending), computed for eight columns at once in the lanes of one AVX register and four rows at
// once (independent chains hide the instruction's latency): each lane runs one element's chain in
// fma_chain's order with its own accumulator, so every element has the bits of fma_chain — the
// order of the sum is the element's, not the machine's. The operands are converted to float once
// (the same conversion fma_chain applies to each term). Rows [r0, r1) of y.
#if defined(__x86_64__) && defined(__GNUC__)
bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

// wt: the columns j0 … j0+7 of wᵀ as K rows of 8 floats (w converted to float, zero lanes past N).
__attribute__((target("avx2,fma"))) void sequential_gemm_rows_hw(const std::vector<float>& xf,
                                                                 const std::vector<float>& wt, std::int64_t M,
                                                                 std::int64_t N, std::int64_t K, double* y,
                                                                 std::int64_t r0, std::int64_t r1) {
  (void)M;
  const std::int64_t blocks = (N + 7) / 8;
  for (std::int64_t jb = 0; jb < blocks; ++jb) {
    const float* w8 = wt.data() + jb * K * 8;
    const std::int64_t lanes = std::min<std::int64_t>(8, N - jb * 8);
    std::int64_t i = r0;
    for (; i + 4 <= r1; i += 4) {
      const float* x0 = xf.data() + i * K;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
      for (std::int64_t k = 0; k < K; ++k) {
        const __m256 wk = _mm256_loadu_ps(w8 + k * 8);
        a0 = _mm256_fmadd_ps(_mm256_set1_ps(x0[k]), wk, a0);
        a1 = _mm256_fmadd_ps(_mm256_set1_ps(x0[K + k]), wk, a1);
        a2 = _mm256_fmadd_ps(_mm256_set1_ps(x0[2 * K + k]), wk, a2);
        a3 = _mm256_fmadd_ps(_mm256_set1_ps(x0[3 * K + k]), wk, a3);
      }
      alignas(32) float out[4][8];
      _mm256_store_ps(out[0], a0);
      _mm256_store_ps(out[1], a1);
      _mm256_store_ps(out[2], a2);
      _mm256_store_ps(out[3], a3);
      for (std::int64_t r = 0; r < 4; ++r)
        for (std::int64_t l = 0; l < lanes; ++l) y[(i + r) * N + jb * 8 + l] = out[r][l];
    }
    for (; i < r1; ++i) {
      const float* x0 = xf.data() + i * K;
      __m256 a0 = _mm256_setzero_ps();
      for (std::int64_t k = 0; k < K; ++k) a0 = _mm256_fmadd_ps(_mm256_set1_ps(x0[k]), _mm256_loadu_ps(w8 + k * 8), a0);
      alignas(32) float out[8];
      _mm256_store_ps(out, a0);
      for (std::int64_t l = 0; l < lanes; ++l) y[i * N + jb * 8 + l] = out[l];
    }
  }
}

// y [M, N] (row-major) = the kSumSequential x wᵀ; false (y untouched) where the CPU lacks AVX2/FMA.
bool sequential_gemm_nt(const Mat& x, const Mat& w, Mat& y, int threads) {
  if (!cpu_has_avx2_fma()) return false;
  const std::int64_t M = x.rows(), N = w.rows(), K = x.cols();
  std::vector<float> xf(static_cast<std::size_t>(M * K));
  for (std::int64_t i = 0; i < M * K; ++i) xf[static_cast<std::size_t>(i)] = static_cast<float>(x.data()[i]);
  const std::int64_t blocks = (N + 7) / 8;
  std::vector<float> wt(static_cast<std::size_t>(blocks * K * 8), 0.0f);
  for (std::int64_t j = 0; j < N; ++j)
    for (std::int64_t k = 0; k < K; ++k)
      wt[static_cast<std::size_t>(((j / 8) * K + k) * 8 + j % 8)] = static_cast<float>(w(j, k));
  const auto rows = [&](std::int64_t r0, std::int64_t r1) {
    sequential_gemm_rows_hw(xf, wt, M, N, K, y.data(), r0, r1);
  };
  if (threads == 1) {
    rows(0, M);
  } else {
    parallel_rows(M, 16, rows);
  }
  return true;
}
#else
bool sequential_gemm_nt(const Mat&, const Mat&, Mat&, int) { return false; }
#endif

// Pairwise over [i0, i1): the fp32 products (exact for bf16 operands) added in a balanced tree.
float pairwise_fp32(const double* a, const double* b, std::int64_t i0, std::int64_t i1) {
  if (i1 - i0 == 1) return fp32_term(a, b, i0);
  const std::int64_t mid = i0 + (i1 - i0) / 2;
  return pairwise_fp32(a, b, i0, mid) + pairwise_fp32(a, b, mid, i1);
}

double variant_sum(Deviation d, const double* a, const double* b, std::int64_t n) {
  if (n == 0) return 0.0;
  if (d == Deviation::kSumSequential) return sequential_fp32(a, b, 0, n);
  if (d == Deviation::kSumPairwise) return pairwise_fp32(a, b, 0, n);
  constexpr std::int64_t kSplits = 4;  // kSumSplitK4: contiguous slices, partials added in order
  const std::int64_t slice = (n + kSplits - 1) / kSplits;
  float s = 0.0f;
  for (std::int64_t i0 = 0; i0 < n; i0 += slice) s += sequential_fp32(a, b, i0, std::min(n, i0 + slice));
  return s;
}

bool sum_variant(Deviation d) {
  return d == Deviation::kSumSequential || d == Deviation::kSumPairwise || d == Deviation::kSumSplitK4;
}

// Legitimate variants of C2 (Deviation kFaithfulFnJitter2Ulp, kFaithfulFnUp2Ulp): the correctly
// rounded fp32 result r of f(x) moved by k fp32 ulp, k ∈ {−2, …, 2} picked by the argument's bits
// (jitter) or k = +2; zero, infinite and NaN results (and a step that would overflow) stay.
double faithful_fn(Deviation d, float x, float r) {
  const bool jitter = d == Deviation::kFaithfulFnJitter2Ulp;
  if ((!jitter && d != Deviation::kFaithfulFnUp2Ulp) || !std::isfinite(r) || r <= 0.0f) return r;
  const std::uint64_t h = static_cast<std::uint64_t>(float_bits(x)) * 0x9E3779B97F4A7C15ULL;
  const int k = jitter ? static_cast<int>((h >> 32) % 5) - 2 : 2;
  const std::uint32_t bits = float_bits(r);
  if (k < 0 && bits < static_cast<std::uint32_t>(-k)) return r;
  const float moved = float_from_bits(bits + static_cast<std::uint32_t>(k));
  return std::isfinite(moved) ? moved : r;
}

}  // namespace

double Precision::dot(const double* a, const double* b, std::int64_t n) const {
  if (official() && sum_variant(deviation_)) return variant_sum(deviation_, a, b, n);
  if (!official()) {
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
  }
  thread_local std::vector<double> terms;  // no allocation per dot product
  terms.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) terms[static_cast<std::size_t>(i)] = a[i] * b[i];
  return exact_sum_to_fp32(terms);
}

double Precision::sum(const double* a, std::int64_t n) const {
  if (official() && sum_variant(deviation_)) return variant_sum(deviation_, a, nullptr, n);
  if (!official()) {
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i) s += a[i];
    return s;
  }
  return exact_sum_to_fp32(std::span<const double>(a, static_cast<std::size_t>(n)));
}

namespace {

// Official mode's rounding pass of a double GEMM y = Σ_k a_ik b_kj (K terms) with bound = the same
// GEMM on |a|, |b|: each element rounded to fp32 where the rigorous bound decides it, else
// recomputed exactly (C1) by exact(i, j). Per element on its own: rows in parallel change no bit
// (parallel_rows.hpp); threads == 1 keeps it on the calling thread.
void round_c1(Mat& y, const Mat& bound, std::int64_t K, int threads,
              const std::function<double(Eigen::Index, Eigen::Index)>& exact) {
  // Rigorous bound of the double GEMM: |ŷ − y| ≤ γ_K |A||B| (it holds for any summation order,
  // so for the sequential one; Higham §3.5), inflated for the rounding of the bound's own
  // computation (the same GEMM on |A|, |B|: nonnegative terms, relative error ≤ γ_K).
  const double g = gamma_n(static_cast<std::size_t>(K) + 2);
  const auto round_rows = [&](std::int64_t r0, std::int64_t r1) {
    for (Eigen::Index i = r0; i < r1; ++i) {
      for (Eigen::Index j = 0; j < y.cols(); ++j) {
        float r = 0.0f;
        const double err = g * bound(i, j) * (1.0 + 4.0 * g) + 0x1.0p-1070;
        if (fp32_rounding_determined(y(i, j), err, &r)) {
          y(i, j) = r;
        } else {
          y(i, j) = exact(i, j);
        }
      }
    }
  };
  if (threads == 1) {
    round_rows(0, y.rows());
  } else {
    parallel_rows(y.rows(), 16, round_rows);
  }
}

}  // namespace

Mat Precision::matmul_nt(const Mat& x, const Mat& w, int threads) const {
  if (x.cols() != w.cols()) {
    throw std::invalid_argument("matmul_nt: inner dimensions differ (" + std::to_string(x.cols()) + " vs " +
                                std::to_string(w.cols()) + ")");
  }
  // The double GEMM of numerics/gemm.hpp: every element is the sequential sum over k of
  // fl(x·w) (multiply, round, add, round), so the bits do not depend on the machine, the vector
  // width, the blocking or the thread count. Exact mode returns it as is.
  const std::int64_t M = x.rows(), N = w.rows(), K = x.cols();
  Mat y(M, N);
  if (official() && sum_variant(deviation_)) {  // the variant's fp32 order, element by element
    if (deviation_ == Deviation::kSumSequential && sequential_gemm_nt(x, w, y, threads)) return y;
    const auto rows = [&](std::int64_t r0, std::int64_t r1) {
      for (Eigen::Index i = r0; i < r1; ++i)
        for (Eigen::Index j = 0; j < N; ++j) y(i, j) = dot(x.row(i).data(), w.row(j).data(), K);
    };
    if (threads == 1) {
      rows(0, M);
    } else {
      parallel_rows(M, 16, rows);
    }
    return y;
  }
  gemm_nt(M, N, K, x.data(), K, w.data(), K, y.data(), N, threads);
  if (!official()) return y;
  Mat bound(M, N);
  gemm_nt(M, N, K, x.data(), K, w.data(), K, bound.data(), N, threads, /*abs_operands=*/true);
  round_c1(y, bound, K, threads,
           [&](Eigen::Index i, Eigen::Index j) { return dot(x.row(i).data(), w.row(j).data(), K); });
  return y;
}

Mat Precision::matmul_nn(const Mat& x, const Mat& w, int threads) const {
  if (x.cols() != w.rows()) {
    throw std::invalid_argument("matmul_nn: inner dimensions differ (" + std::to_string(x.cols()) + " vs " +
                                std::to_string(w.rows()) + ")");
  }
  const std::int64_t M = x.rows(), N = w.cols(), K = x.cols();
  if (official() && sum_variant(deviation_)) return matmul_nt(x, w.transpose(), threads);
  Mat y(M, N);
  gemm_nn(M, N, K, x.data(), K, w.data(), N, y.data(), N, threads);
  if (!official()) return y;
  Mat bound(M, N);
  gemm_nn(M, N, K, x.data(), K, w.data(), N, bound.data(), N, threads, /*abs_operands=*/true);
  round_c1(y, bound, K, threads, [&](Eigen::Index i, Eigen::Index j) {
    thread_local std::vector<double> col;  // column j of w
    col.resize(static_cast<std::size_t>(K));
    for (std::int64_t k = 0; k < K; ++k) col[static_cast<std::size_t>(k)] = w(k, j);
    return dot(x.row(i).data(), col.data(), K);
  });
  return y;
}

double Precision::fma(double a, double b, double c) const {
  if (!official()) return std::fma(a, b, c);
  return static_cast<double>(std::fma(static_cast<float>(a), static_cast<float>(b), static_cast<float>(c)));
}

double Precision::exp(double x) const {
  if (!official()) return std::exp(x);
  const float xf = static_cast<float>(x);
  return faithful_fn(deviation_, xf, cr_exp(xf));
}
double Precision::log1p(double x) const { return official() ? cr_log1p(static_cast<float>(x)) : std::log1p(x); }
double Precision::sin(double x) const { return official() ? cr_sin(static_cast<float>(x)) : std::sin(x); }
double Precision::cos(double x) const { return official() ? cr_cos(static_cast<float>(x)) : std::cos(x); }
double Precision::pow(double x, double y) const {
  return official() ? cr_pow(static_cast<float>(x), static_cast<float>(y)) : std::pow(x, y);
}
double Precision::rsqrt(double x) const {
  if (!official()) return 1.0 / std::sqrt(x);
  const float xf = static_cast<float>(x);
  return faithful_fn(deviation_, xf, cr_rsqrt(xf));
}
double Precision::sigmoid(double x) const {
  return official() ? sigmoid_c2(static_cast<float>(x)) : 1.0 / (1.0 + std::exp(-x));
}
double Precision::silu(double x) const {
  return official() ? silu_c2(static_cast<float>(x)) : x / (1.0 + std::exp(-x));
}
double Precision::softplus(double x) const {
  // exact: the true log(1 + e^x), without PyTorch's x > 20 shortcut (that is an official-mode rule)
  if (official()) return softplus_c2(static_cast<float>(x));
  return x > 0.0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

}  // namespace dsv4
