// GPU sparse attention with the sink (gpu/src/sparse_attention.cu) beyond the op registry's harness
// (tests/ops_test.cpp checks o bit for bit against the official-mode reference on every case of the
// registry, with batch invariance and reruns):
// - on the CPU (no GPU needed): the kernel's fixed-order fp32 steps (dsv4/gpu/sparse_attention_steps.hpp,
//   the very functions the kernel runs) with host primitives — IEEE fp32 operations, the reference's
//   C1 sums (exact_sum_to_fp32) and C2 exp (cr_exp) standing in for the device's compensated sums and
//   exp_c2_dev, which equal them wherever they decide — equal the reference on every output of the
//   op's cases, which meet the edges (ties in the max, dead chunks, duplicates, α and p underflow,
//   sinks −∞ and beyond the fp32 range, a single-entry list); a fused ℓ update left unfused or fp32
//   sequential sums instead of C1 are caught;
// - on a GPU: the host-recompute rate, a forced undecided token recomputed by the reference, the
//   device-pointer form on a stream as a decode step against a cache;
// - the argument checks (no GPU needed: they come before any CUDA call).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/sparse_attention.hpp"
#include "dsv4/gpu/sparse_attention_steps.hpp"
#include "dsv4/model/sparse_attention.hpp"
#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/device_decides.hpp"

namespace dsv4 {
namespace {

namespace steps = gpu::sparse_attention_steps;

static_assert(steps::kChunk == kSparseAttnChunk, "the kernel's chunk is the reference's");

// The host primitives: single IEEE fp32 operations (this file is built with -ffp-contract=off: a·b
// and a + b round once each, as __fmul_rn and __fadd_rn do), std::fma on floats (fmaf, one rounding:
// __fmaf_rn), the reference's C1 sum and C2 exp, bf16 RNE.
struct HostArith {
  struct Sum {
    std::vector<double> terms;
    void add(double v) { terms.push_back(v); }
    bool round(int /*count*/, float* out) const {
      *out = exact_sum_to_fp32(terms);
      return true;
    }
  };
  float add(float a, float b) const { return a + b; }
  float sub(float a, float b) const { return a - b; }
  float mul(float a, float b) const { return a * b; }
  float div(float a, float b) const { return a / b; }
  float fma(float a, float b, float c) const { return std::fma(a, b, c); }
  bool exp(float x, float* out) const {
    *out = cr_exp(x);
    return true;
  }
  float bf16(float x) const { return round_bf16(x); }
};

// Wrong arithmetic the check must catch: ℓ·α + Σp rounded twice; the C1 sums as sequential fp32
// accumulations (each term rounded to fp32, then added).
struct UnfusedFma : HostArith {
  float fma(float a, float b, float c) const { return a * b + c; }
};
struct Fp32SequentialSums : HostArith {
  struct Sum {
    float s = 0.0f;
    void add(double v) { s = s + static_cast<float>(v); }
    bool round(int /*count*/, float* out) const {
      *out = s;
      return true;
    }
  };
};

// What the cases meet (counted on the correct arithmetic only).
struct EdgeCounts {
  std::int64_t outputs = 0, max_ties = 0, dead_chunks = 0, duplicates = 0, rescaled = 0, alpha_zero_later = 0,
               p_zero = 0, p_subnormal = 0, single_entry = 0, sink_neg_inf = 0, den_inf = 0, out_zero = 0,
               out_subnormal = 0, out_bf16_ties = 0;
};

std::vector<std::int32_t> int_lists(const ops::Array& l) {
  std::vector<std::int32_t> v(l.f32.size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::int32_t>(l.f32[i]);
  return v;
}

bool subnormal(float v) { return std::fpclassify(v) == FP_SUBNORMAL; }

// The kernel's recurrence on the CPU, token by token, chunk by chunk, in the kernel's order (the
// C1 sums of the logits and of P·V through A::Sum, double products — exact, as on the device).
template <class A>
std::vector<float> steps_on_cpu(const ops::Call& call, EdgeCounts* n) {
  const A a;
  const std::int64_t H = call.ints.at(0);
  const ops::Array &qa = call.inputs.at(0), &la = call.inputs.at(1), &kva = call.inputs.at(2), &za = call.inputs.at(3);
  const std::int64_t T = qa.rows, c = kva.cols, K = la.cols, row = H * c;
  const float tau = static_cast<float>(call.reals.at(0));
  const std::vector<std::int32_t> lists = int_lists(la);
  std::vector<float> out(static_cast<std::size_t>(T * row));
  std::vector<float> s(static_cast<std::size_t>(H * steps::kChunk)), alpha(static_cast<std::size_t>(H));
  std::int32_t idx[steps::kChunk];
  for (std::int64_t t = 0; t < T; ++t) {
    const float* q = qa.f32.data() + t * row;
    float* o = out.data() + t * row;
    std::vector<float> mu(static_cast<std::size_t>(H), -std::numeric_limits<float>::infinity()),
        ell(static_cast<std::size_t>(H), 0.0f);
    std::int64_t valid = 0;
    for (std::int64_t g0 = 0; g0 < K; g0 += steps::kChunk) {
      bool bad = false;
      const int m = steps::chunk_entries(lists.data() + t * K, K, g0, kva.rows, idx, &bad);
      EXPECT_FALSE(bad);
      valid += m;
      if (m == 0) {
        if (n != nullptr) ++n->dead_chunks;
        continue;
      }
      for (std::int64_t h = 0; h < H; ++h) {
        for (int j = 0; j < m; ++j) {
          typename A::Sum dot;
          for (std::int64_t d = 0; d < c; ++d) {
            dot.add(static_cast<double>(q[h * c + d]) * kva.f32[static_cast<std::size_t>(idx[j] * c + d)]);
          }
          float v = 0.0f;
          dot.round(static_cast<int>(c), &v);
          s[static_cast<std::size_t>(h * steps::kChunk + j)] = steps::logit(a, v, tau);
        }
      }
      for (std::int64_t h = 0; h < H; ++h) {
        float* sh = s.data() + h * steps::kChunk;
        const auto hh = static_cast<std::size_t>(h);
        if (n != nullptr) {
          float top = mu[hh];
          for (int j = 0; j < m; ++j) top = top < sh[j] ? sh[j] : top;
          int at_top = mu[hh] == top ? 1 : 0;
          for (int j = 0; j < m; ++j) at_top += sh[j] == top ? 1 : 0;
          n->max_ties += at_top > 1 ? 1 : 0;
          for (int j = 0; j < m && h == 0; ++j) {
            for (int i = 0; i < j; ++i) n->duplicates += idx[i] == idx[j] ? 1 : 0;
          }
        }
        const bool was_finite = std::isfinite(mu[hh]);
        steps::head_step(a, sh, m, &mu[hh], &ell[hh], &alpha[hh]);
        if (n != nullptr) {
          n->rescaled += was_finite && alpha[hh] > 0.0f && alpha[hh] < 1.0f ? 1 : 0;
          n->alpha_zero_later += was_finite && alpha[hh] == 0.0f ? 1 : 0;
          for (int j = 0; j < m; ++j) {
            n->p_zero += sh[j] == 0.0f ? 1 : 0;
            n->p_subnormal += subnormal(sh[j]) ? 1 : 0;
          }
        }
      }
      for (std::int64_t e = 0; e < row; ++e) {
        const std::int64_t h = e / c, d = e % c;
        typename A::Sum pv;
        for (int j = 0; j < m; ++j) {
          pv.add(static_cast<double>(s[static_cast<std::size_t>(h * steps::kChunk + j)]) *
                 kva.f32[static_cast<std::size_t>(idx[j] * c + d)]);
        }
        float sum = 0.0f;
        pv.round(m, &sum);
        o[e] = steps::rescale_add(a, o[e], alpha[static_cast<std::size_t>(h)], sum);
      }
    }
    std::vector<float> den(static_cast<std::size_t>(H));
    for (std::int64_t h = 0; h < H; ++h) {
      const auto hh = static_cast<std::size_t>(h);
      steps::denominator(a, ell[hh], mu[hh], za.f32[hh], &den[hh]);
    }
    for (std::int64_t e = 0; e < row; ++e) {
      const float dn = den[static_cast<std::size_t>(e / c)];
      if (n != nullptr) {
        const float quotient = o[e] / dn;
        n->out_bf16_ties += (std::bit_cast<std::uint32_t>(quotient) & 0xFFFFu) == 0x8000u ? 1 : 0;
      }
      o[e] = steps::output(a, o[e], dn);
      if (n != nullptr) {
        ++n->outputs;
        n->out_zero += o[e] == 0.0f ? 1 : 0;
        n->out_subnormal += subnormal(o[e]) ? 1 : 0;
      }
    }
    if (n != nullptr) {
      n->single_entry += valid == 1 ? 1 : 0;
      for (std::int64_t h = 0; h < H; ++h) {
        const auto hh = static_cast<std::size_t>(h);
        n->sink_neg_inf += std::isinf(za.f32[hh]) && za.f32[hh] < 0 ? 1 : 0;
        n->den_inf += std::isinf(den[hh]) ? 1 : 0;
      }
    }
  }
  return out;
}

std::int64_t mismatches(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
    bad += std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(want[i]) ? 1 : 0;
  }
  return bad;
}

TEST(GpuSparseAttention, KernelStepsOnTheCpuEqualTheReferenceOnEveryCase) {
  const std::uint64_t kSeeds = 20;
  const ops::Op& op = *ops::find_op("sparse_attention");
  EdgeCounts n;
  std::int64_t wrong = 0, unfused_wrong = 0, sequential_wrong = 0;
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    for (const ops::Case& c : op.cases(seed)) {
      const std::vector<float> want = op.reference(c.call)[0].f32;
      const std::int64_t bad = mismatches(steps_on_cpu<HostArith>(c.call, &n), want);
      EXPECT_EQ(bad, 0) << "seed " << seed << ", " << c.label;
      wrong += bad;
      unfused_wrong += mismatches(steps_on_cpu<UnfusedFma>(c.call, nullptr), want);
      sequential_wrong += mismatches(steps_on_cpu<Fp32SequentialSums>(c.call, nullptr), want);
    }
  }
  std::printf(
      "sparse_attention steps on the CPU, seeds 1-20: %lld outputs, %lld differ from the reference; unfused "
      "l update: %lld differ; fp32 sequential sums: %lld differ\n"
      "edges met: %lld ties in the max, %lld dead chunks, %lld repeated entries, %lld rescales 0 < a < 1, %lld "
      "a = 0 after a finite max, %lld p = 0, %lld subnormal p, %lld single-entry lists, %lld -inf sinks, %lld "
      "infinite denominators, %lld zero outputs, %lld subnormal outputs, %lld bf16 ties of the output\n",
      static_cast<long long>(n.outputs), static_cast<long long>(wrong), static_cast<long long>(unfused_wrong),
      static_cast<long long>(sequential_wrong), static_cast<long long>(n.max_ties),
      static_cast<long long>(n.dead_chunks), static_cast<long long>(n.duplicates), static_cast<long long>(n.rescaled),
      static_cast<long long>(n.alpha_zero_later), static_cast<long long>(n.p_zero),
      static_cast<long long>(n.p_subnormal), static_cast<long long>(n.single_entry),
      static_cast<long long>(n.sink_neg_inf), static_cast<long long>(n.den_inf), static_cast<long long>(n.out_zero),
      static_cast<long long>(n.out_subnormal), static_cast<long long>(n.out_bf16_ties));
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(unfused_wrong, 0);
  EXPECT_GT(sequential_wrong, 0);
  EXPECT_GT(n.max_ties, 0);
  EXPECT_GT(n.dead_chunks, 0);
  EXPECT_GT(n.duplicates, 0);
  EXPECT_GT(n.rescaled, 0);
  EXPECT_GT(n.alpha_zero_later, 0);
  EXPECT_GT(n.p_zero, 0);
  EXPECT_GT(n.p_subnormal, 0);
  EXPECT_GT(n.single_entry, 0);
  EXPECT_GT(n.sink_neg_inf, 0);
  EXPECT_GT(n.den_inf, 0);
  EXPECT_GT(n.out_zero, 0);
  EXPECT_GT(n.out_subnormal, 0);
  EXPECT_GT(n.out_bf16_ties, 0);
}

// The softmax kernel's running max (softmax_kernel: each lane's entries j = lane, lane + 32 folded
// with steps::max_first, then xor butterflies over the 32 lanes, then steps::max_step(μ, ·)), emulated
// lane by lane on the CPU, against the reference's left-to-right std::max (steps::max_step over μ,
// s_0, …, s_{n−1}): the same bits on chunks drawn from a few values with many ties, both zeros, ±∞ and
// NaNs. A reduction that keeps the later of equal values is caught (it picks the other zero).
template <class Combine>
float warp_max_emulated(float mu, const std::vector<float>& s, Combine combine) {
  const int n = static_cast<int>(s.size());
  std::vector<steps::MaxAt> lane(32, steps::MaxAt{-std::numeric_limits<float>::infinity(), steps::kAbsent});
  for (int l = 0; l < 32; ++l) {
    for (int r = 0; r < 2; ++r) {
      const int j = l + 32 * r;
      if (j < n && !std::isnan(s[static_cast<std::size_t>(j)])) {
        lane[static_cast<std::size_t>(l)] =
            combine(lane[static_cast<std::size_t>(l)], steps::MaxAt{s[static_cast<std::size_t>(j)], j});
      }
    }
  }
  for (int x = 16; x > 0; x >>= 1) {
    std::vector<steps::MaxAt> next(32);
    for (int l = 0; l < 32; ++l) {
      next[static_cast<std::size_t>(l)] =
          combine(lane[static_cast<std::size_t>(l)], lane[static_cast<std::size_t>(l ^ x)]);
    }
    lane = next;
  }
  return steps::max_step(mu, lane[0].v);
}

TEST(GpuSparseAttention, WarpMaxEqualsTheLeftToRightMax) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float pool[] = {-0.0f, 0.0f, 1.0f, -1.0f, 2.0f, inf, -inf, nan, 0.5f};
  const auto later_of_equals = [](steps::MaxAt a, steps::MaxAt b) {
    if (a.v < b.v) return b;
    if (b.v < a.v) return a;
    return a.at > b.at ? a : b;
  };
  std::uint64_t state = 12345;
  const auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(state >> 33);
  };
  std::int64_t wrong = 0, caught = 0, zero_max = 0;
  for (int trial = 0; trial < 200000; ++trial) {
    const int n = 1 + static_cast<int>(next() % 64);
    const int kinds = 2 + static_cast<int>(next() % 8);  // a few distinct values: many ties
    std::vector<float> s(static_cast<std::size_t>(n));
    for (float& v : s) v = pool[next() % static_cast<std::uint32_t>(kinds)];
    const float mu = trial % 3 == 0 ? -inf : pool[next() % 7];  // μ: the first chunk's −∞, or a finite max
    float want = mu;
    for (const float v : s) want = steps::max_step(want, v);
    const float got = warp_max_emulated(mu, s, steps::max_first);
    wrong += std::bit_cast<std::uint32_t>(got) != std::bit_cast<std::uint32_t>(want) ? 1 : 0;
    caught +=
        std::bit_cast<std::uint32_t>(warp_max_emulated(mu, s, later_of_equals)) != std::bit_cast<std::uint32_t>(want)
            ? 1
            : 0;
    zero_max += want == 0.0f ? 1 : 0;
  }
  std::printf("warp max: 200000 chunks (%lld with a zero maximum), %lld differ; later-of-equals: %lld differ\n",
              static_cast<long long>(zero_max), static_cast<long long>(wrong), static_cast<long long>(caught));
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(caught, 0);
  EXPECT_GT(zero_max, 0);
}

// The exact case of the kernels' decision (decide_dot): where steps::sum_exact_in_double holds for
// the rows' least trailing exponents and a bound ≥ Σ|a·b| (here ‖a‖₂‖b‖₂ rounded upward, as on the
// device), a double sum in any order is the exact sum, so fl32 of it is the C1 rounding — checked
// against the reference's exact_sum_to_fp32 over sequential, reversed and pairwise double sums of
// rows of bf16 values from N(0, σ²) with a few tiny or huge elements, of fp32 values, and of bf16
// probabilities down to subnormal. A criterion three bits too generous (2^(56+E)) is caught.
double pairwise_sum(const std::vector<double>& v, std::size_t lo, std::size_t hi) {
  if (hi - lo == 1) return v[lo];
  const std::size_t mid = lo + (hi - lo) / 2;
  return pairwise_sum(v, lo, mid) + pairwise_sum(v, mid, hi);
}

TEST(GpuSparseAttention, ExactInDoubleCriterionIsSound) {
  std::int64_t exact = 0, wrong = 0, lax_wrong = 0, rows = 0;
  const auto check_row = [&](const std::vector<float>& a, const std::vector<float>& b) {
    double sqa = 0.0, sqb = 0.0;
    int ta = steps::kNoTrail, tb = steps::kNoTrail;
    std::vector<double> terms(a.size());
    for (std::size_t k = 0; k < terms.size(); ++k) {
      sqa += static_cast<double>(a[k]) * a[k];
      sqb += static_cast<double>(b[k]) * b[k];
      ta = std::min(ta, steps::trailing_exponent(a[k]));
      tb = std::min(tb, steps::trailing_exponent(b[k]));
      terms[k] = static_cast<double>(a[k]) * b[k];  // exact: ≤ 48 bits
    }
    // ‖a‖‖b‖ with a relative margin 2^-40 covering the roundings of these host sums (upward on the device)
    const double bound = std::sqrt(sqa) * std::sqrt(sqb) * (1.0 + 0x1p-40);
    const float want = exact_sum_to_fp32(terms);
    double seq = 0.0, rev = 0.0;
    for (std::size_t k = 0; k < terms.size(); ++k) seq += terms[k];
    for (std::size_t k = terms.size(); k-- > 0;) rev += terms[k];
    const double sums[3] = {seq, rev, pairwise_sum(terms, 0, terms.size())};
    const auto rounds = [](double v) { return v == 0.0 ? 0.0f : static_cast<float>(v); };
    const bool holds = steps::sum_exact_in_double(bound, ta, tb);
    const bool lax = ta + tb > -300 && ta + tb < 300 && bound < std::ldexp(1.0, 56 + ta + tb);
    ++rows;
    exact += holds ? 1 : 0;
    for (const double v : sums) {
      const bool same = std::bit_cast<std::uint32_t>(rounds(v)) == std::bit_cast<std::uint32_t>(want);
      wrong += holds && !same ? 1 : 0;
      lax_wrong += lax && !same ? 1 : 0;
    }
  };
  // The adversarial row: products 2^54, 1, −2^54 (E = 0, Σ|ab| ≈ 2^55): 2^54 + 1 rounds in double.
  check_row({0x1p27f, 1.0f, -0x1p27f}, {0x1p27f, 1.0f, 0x1p27f});
  std::mt19937_64 g(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> pick(0, 99);
  for (int trial = 0; trial < 20000; ++trial) {
    const int kind = trial % 4, n = kind == 3 ? 64 : 512;
    std::vector<float> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
    for (std::size_t k = 0; k < a.size(); ++k) {
      const double x = normal(g), y = normal(g);
      switch (kind) {
        case 0:  // bf16 N(0, 1)
          a[k] = round_bf16(x);
          b[k] = round_bf16(y);
          break;
        case 1:  // bf16 with a few elements scaled by 2^±(10..40): wide exponent ranges
          a[k] = round_bf16(pick(g) < 3 ? std::ldexp(x, (pick(g) % 2 ? 1 : -1) * (10 + pick(g) % 31)) : x);
          b[k] = round_bf16(pick(g) < 3 ? std::ldexp(y, -(10 + pick(g) % 31)) : y);
          break;
        case 2:  // fp32 values
          a[k] = static_cast<float>(x);
          b[k] = static_cast<float>(y);
          break;
        default:  // bf16 probabilities exp(−Δ), Δ up to ~150 (subnormal bf16), against bf16 N(0, 1)
          a[k] = round_bf16(std::exp(-std::fabs(x) * (pick(g) < 10 ? 40.0 : 3.0)));
          b[k] = round_bf16(y);
          break;
      }
    }
    check_row(a, b);
  }
  std::printf("exact-in-double criterion: %lld rows, %lld exact by it, %lld wrong roundings; 2^(56+E): %lld wrong\n",
              static_cast<long long>(rows), static_cast<long long>(exact), static_cast<long long>(wrong),
              static_cast<long long>(lax_wrong));
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(exact, rows / 4);
  EXPECT_GT(lax_wrong, 0);
}

// trailing_exponent: x = odd · 2^T on powers of two, normal and subnormal values; the zero and
// non-finite sentinels.
TEST(GpuSparseAttention, TrailingExponent) {
  EXPECT_EQ(steps::trailing_exponent(1.0f), 0);
  EXPECT_EQ(steps::trailing_exponent(-6.0f), 1);
  EXPECT_EQ(steps::trailing_exponent(0.75f), -2);
  EXPECT_EQ(steps::trailing_exponent(1.0f + 0x1p-23f), -23);
  EXPECT_EQ(steps::trailing_exponent(0x1p-149f), -149);
  EXPECT_EQ(steps::trailing_exponent(0x1p-130f), -130);
  EXPECT_EQ(steps::trailing_exponent(3.0f * 0x1p-149f), -149);
  EXPECT_EQ(steps::trailing_exponent(0x1p127f), 127);
  EXPECT_EQ(steps::trailing_exponent(0.0f), steps::kNoTrail);
  EXPECT_EQ(steps::trailing_exponent(-0.0f), steps::kNoTrail);
  EXPECT_EQ(steps::trailing_exponent(std::numeric_limits<float>::infinity()), -steps::kNoTrail);
  EXPECT_EQ(steps::trailing_exponent(std::numeric_limits<float>::quiet_NaN()), -steps::kNoTrail);
}

// The host form over the op's cases: ≤ 1 token in 19 recomputed (measured on an H100 at db8e70a: 0 of
// 46 tokens — the logits' and P·V's double sums are mostly exact, the rest decided by the
// compensated rounding).
TEST(GpuSparseAttention, DeviceDecidesNearlyEveryToken) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  std::int64_t warp_recomputed = 0;
  test::expect_device_decides("sparse_attention", "tokens", 30, 19, [&](const ops::Case& c) {
    const ops::Array &q = c.call.inputs[0], &l = c.call.inputs[1], &kv = c.call.inputs[2];
    const std::vector<std::int32_t> lists = int_lists(l);
    const gpu::SparseAttentionBatch out =
        gpu::sparse_attention(q.f32.data(), q.rows, c.call.ints[0], kv.cols, lists.data(), l.cols, kv.f32.data(),
                              kv.rows, c.call.inputs[3].f32.data(), c.call.reals[0]);
    warp_recomputed += out.warp_recomputed;
    return std::pair{out.recomputed, q.rows};
  });
  std::printf("dots the bound left undecided, recomputed by a warp on the device: %lld\n",
              static_cast<long long>(warp_recomputed));
}

// A logit the device cannot decide: q_h · v = 1 + 2^-60 − 2^-60 − 1 (lanes 0..3, v all ones) is
// exactly 0, but the butterflies' double sums are inexact (1 + 2^-60 rounds), so round_c1_comp cannot
// tell the zero's sign. The host recomputes the token: the reference's bits.
TEST(GpuSparseAttention, UndecidedTokenIsRecomputedByTheReference) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  const std::vector<float> q = {1.0f, 0x1p-60f, -0x1p-60f, -1.0f, 0.5f, 0.25f, -1.0f, 2.0f};
  const std::vector<float> kv = {1.0f, 1.0f, 1.0f, 1.0f, 0.5f, -2.0f, 1.0f, 0.75f};
  const std::vector<std::int32_t> lists = {0, 1};
  const std::vector<float> sink = {0.5f};
  const gpu::SparseAttentionBatch out =
      gpu::sparse_attention(q.data(), 2, 1, 4, lists.data(), 1, kv.data(), 2, sink.data(), 0.5);
  EXPECT_EQ(out.recomputed, 1);
  ops::Call c;
  c.ints = {1};
  c.reals = {0.5};
  ops::Array kva = ops::Array::floats("kv", 2, 4, kv);
  kva.per_row = false;
  c.inputs = {ops::Array::floats("q", 2, 4, q), ops::Array::floats("lists", 2, 1, {0.0f, 1.0f}), std::move(kva),
              ops::Array::shared("sink", sink)};
  const std::vector<float> want = ops::find_op("sparse_attention")->reference(c)[0].f32;
  EXPECT_EQ(mismatches(out.o, want), 0);
}

template <class T>
T* upload(const std::vector<T>& host) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

// Decode: one query row per step against the cache's rows (the op's second case, seed 4: 2 heads,
// c 512, 160 kv rows, lists of 136 over 3 chunks with a dead one), each step alone through the
// device-pointer form on a stream: every decided step equals the reference; at most one undecided.
TEST(GpuSparseAttention, DevicePointerFormDecodesAgainstACacheOnAStream) {
  if (!gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
  const ops::Op& op = *ops::find_op("sparse_attention");
  const ops::Case base = op.cases(4)[1];  // 2 heads, c 512, 160 kv rows, lists of 136 with a dead chunk
  const ops::Array &q = base.call.inputs[0], &l = base.call.inputs[1], &kv = base.call.inputs[2];
  const std::int64_t H = base.call.ints[0], c = kv.cols, T = q.rows, K = l.cols;
  const std::vector<std::int32_t> lists = int_lists(l);
  std::int64_t undecided_steps = 0;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  float* d_kv = upload(kv.f32.vec());
  float* d_sink = upload(base.call.inputs[3].f32.vec());
  for (std::int64_t t = 0; t < T; ++t) {  // each decode step alone
    const std::vector<float> qt(q.f32.begin() + t * H * c, q.f32.begin() + (t + 1) * H * c);
    const std::vector<std::int32_t> lt(lists.begin() + t * K, lists.begin() + (t + 1) * K);
    float* d_q = upload(qt);
    std::int32_t* d_l = upload(lt);
    float* d_o = nullptr;
    std::uint8_t* d_u = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_o), qt.size() * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_u), 1), cudaSuccess);
    gpu::sparse_attention_device(d_q, 1, H, c, d_l, K, d_kv, kv.rows, d_sink, static_cast<float>(base.call.reals[0]),
                                 d_o, d_u, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    std::vector<float> got(qt.size());
    std::uint8_t undecided = 1;
    ASSERT_EQ(cudaMemcpy(got.data(), d_o, got.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(&undecided, d_u, 1, cudaMemcpyDeviceToHost), cudaSuccess);
    undecided_steps += undecided != 0 ? 1 : 0;
    const std::vector<float> want = op.reference(base.call.slice(t, 1))[0].f32;
    if (undecided == 0) {
      EXPECT_EQ(mismatches(got, want), 0) << "step " << t;
    }
    cudaFree(d_q);
    cudaFree(d_l);
    cudaFree(d_o);
    cudaFree(d_u);
  }
  cudaFree(d_kv);
  cudaFree(d_sink);
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  std::printf("decode: %lld of %lld steps undecided\n", static_cast<long long>(undecided_steps),
              static_cast<long long>(T));
  EXPECT_LE(undecided_steps, 1);
}

// Refused before any CUDA call (so they run without a GPU): shapes, null pointers, and the lists
// the reference refuses (an entry outside [−1, n_kv), a first chunk of 64 entries all −1).
TEST(GpuSparseAttention, BadArgumentsAreRefusedBeforeAnyCudaCall) {
  const std::vector<float> q(2 * 4, 1.0f), kv(3 * 4, 1.0f), sink(2, 0.0f);
  const std::vector<std::int32_t> ok = {0, -1, 2};
  const auto call = [&](std::int64_t tokens, std::int64_t heads, std::int64_t c, const std::vector<std::int32_t>& l,
                        std::int64_t width, std::int64_t n_kv) {
    return gpu::sparse_attention(q.data(), tokens, heads, c, l.data(), width, kv.data(), n_kv, sink.data(), 0.5);
  };
  EXPECT_THROW(call(-1, 2, 4, ok, 3, 3), std::invalid_argument);
  EXPECT_THROW(call(1, 0, 4, ok, 3, 3), std::invalid_argument);
  EXPECT_THROW(call(1, gpu::kSparseAttentionMaxHeads + 1, 4, ok, 3, 3), std::invalid_argument);
  EXPECT_THROW(call(1, 2, 0, ok, 3, 3), std::invalid_argument);
  EXPECT_THROW(call(1, 2, 4, ok, 0, 3), std::invalid_argument);
  EXPECT_THROW(call(1, 2, 4, ok, 3, 0), std::invalid_argument);
  EXPECT_THROW(call(1, 2, 4, {0, 3, -1}, 3, 3), std::invalid_argument);    // 3 ≥ n_kv
  EXPECT_THROW(call(1, 2, 4, {0, -2, -1}, 3, 3), std::invalid_argument);   // below −1
  EXPECT_THROW(call(1, 2, 4, {-1, -1, -1}, 3, 3), std::invalid_argument);  // first chunk all −1
  std::vector<std::int32_t> late(70, -1);
  late[65] = 1;  // the only entry past the first chunk: still refused
  EXPECT_THROW(call(1, 2, 4, late, 70, 3), std::invalid_argument);
  EXPECT_THROW(gpu::sparse_attention(nullptr, 1, 2, 4, ok.data(), 3, kv.data(), 3, sink.data(), 0.5),
               std::invalid_argument);
  EXPECT_THROW(gpu::sparse_attention(q.data(), 1, 2, 4, ok.data(), 3, kv.data(), 3, nullptr, 0.5),
               std::invalid_argument);
  EXPECT_THROW(
      gpu::sparse_attention_device(q.data(), 1, 2, 4, ok.data(), 3, kv.data(), 3, sink.data(), 0.5f, nullptr, nullptr),
      std::invalid_argument);
  EXPECT_NO_THROW(call(0, 2, 4, ok, 3, 3));  // no tokens: no device needed
  // The reference refuses the same lists (the host form's checks are its own).
  Mat qm(1, 4), kvm(3, 4);
  qm.setOnes();
  kvm.setOnes();
  IndexLists all_masked(1, 3, -1);
  EXPECT_THROW(sparse_attention(Precision(Mode::kOfficial), qm, 1, kvm, std::vector<double>{0.0}, all_masked, 0.5),
               std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
