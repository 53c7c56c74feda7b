// mHC (spec 04 §4.2–§4.5): hc_pre, hc_split_sinkhorn, hc_post, hc_head in both precision modes.
#include "dsv4/model/mhc.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/expect_errors.hpp"
#include "support/mat_bits.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

const Precision kExact(Mode::kExact);
const Precision kOfficial(Mode::kOfficial);

// tiny with a small width (the mHC algebra does not depend on d); n = 4, 20 iterations, ε = 1e-6.
ModelConfig small_config() {
  ModelConfig c = builtin_config("tiny");
  c.dim = 32;
  return c;
}

using test::bit_equal;

// ---- an independent float emulation of the official kernel (spec 04 §4.3 with C1–C3) ----------
// Sums of n ≤ 4 fp32 values whose exponents span < 29 binades are exact in double, so a double
// sum rounded once to float is the C1 sum; exp is cr_exp (C2); the affine maps are fmaf (C3).
float c1_sum(const float* v, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(v[i]);
  return static_cast<float>(s);
}
float sigmoid_float(float x) {
  const float e = cr_exp(-x);
  const float d = 1.0f + e;
  return 1.0f / d;
}

struct FloatSinkhorn {
  float pre[4], post[4], comb[4][4];
};

FloatSinkhorn emulate_kernel(const double* mu, const Vec& scale, const Vec& base, int iters, double eps_d) {
  constexpr int n = 4;
  const float eps = static_cast<float>(eps_d);
  const auto s = [&](int g) { return static_cast<float>(scale(g)); };
  const auto b = [&](int m) { return static_cast<float>(base(m)); };
  const auto mu_f = [&](int m) { return static_cast<float>(mu[m]); };
  FloatSinkhorn r{};
  for (int j = 0; j < n; ++j) {
    r.pre[j] = sigmoid_float(std::fma(mu_f(j), s(0), b(j))) + eps;
    r.post[j] = 2.0f * sigmoid_float(std::fma(mu_f(n + j), s(1), b(n + j)));
  }
  float(&m)[4][4] = r.comb;
  for (int j = 0; j < n; ++j) {
    for (int k = 0; k < n; ++k) m[j][k] = std::fma(mu_f(2 * n + j * n + k), s(2), b(2 * n + j * n + k));
  }
  const auto col_norm = [&] {
    for (int k = 0; k < n; ++k) {
      const float col[4] = {m[0][k], m[1][k], m[2][k], m[3][k]};
      const float den = c1_sum(col, n) + eps;
      for (int j = 0; j < n; ++j) m[j][k] = m[j][k] / den;
    }
  };
  const auto row_norm = [&] {
    for (int j = 0; j < n; ++j) {
      const float den = c1_sum(m[j], n) + eps;
      for (int k = 0; k < n; ++k) m[j][k] = m[j][k] / den;
    }
  };
  for (int j = 0; j < n; ++j) {
    float mx = m[j][0];
    for (int k = 1; k < n; ++k) mx = std::max(mx, m[j][k]);
    float e[4];
    for (int k = 0; k < n; ++k) e[k] = cr_exp(m[j][k] - mx);
    const float sum = c1_sum(e, n);
    for (int k = 0; k < n; ++k) m[j][k] = e[k] / sum + eps;
  }
  col_norm();
  for (int it = 1; it < iters; ++it) {
    row_norm();
    col_norm();
  }
  return r;
}

// Random fp32 mixes μ ~ N(0, 1) for `tokens` tokens of the small config.
Mat random_mixes(std::int64_t tokens, std::int64_t mixes, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("test.mixes"));
  Mat m(tokens, mixes);
  for (std::int64_t i = 0; i < m.size(); ++i)
    m.data()[i] = static_cast<float>(rng.normal(static_cast<std::uint64_t>(i)));
  return m;
}

// ---- Precision::fma (C3) ---------------------------------------------------------------------

// a = b = 1 + 2^-12: a·b = 1 + 2^-11 + 2^-24 is exactly the midpoint between two floats; c = 2^-80
// lifts the exact sum just above it, so the correctly rounded fp32 FMA rounds up. A double fma
// first loses c (the sum needs 81 bits) and then ties to even: down. Official mode must round up.
TEST(MhcFma, OfficialIsOneFp32Rounding) {
  const double a = 1.0 + std::ldexp(1.0, -12);
  const double c = std::ldexp(1.0, -80);
  EXPECT_EQ(kOfficial.fma(a, a, c), 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -23));
  EXPECT_EQ(static_cast<double>(static_cast<float>(std::fma(a, a, c))), 1.0 + std::ldexp(1.0, -11));
  EXPECT_EQ(kExact.fma(a, a, c), std::fma(a, a, c));
}

// ---- hc_split_sinkhorn ---------------------------------------------------------------------

// μ = 0 and base = 0: pre = σ(0) + ε, post = 2σ(0) = 1, and the comb logits are all zero, so every
// entry follows the scalar map x ← x/(n x + ε) from x₀ = 1/n + ε (every row and column sum is
// n x); its fixed point is (1 − ε)/n and the map contracts by ε/(n x + ε)² ≈ 1e-6 per step, so
// after 39 normalisations comb = (1 − ε)/n to double rounding (a few ulp).
TEST(MhcSinkhorn, ZeroInputsGiveHalfGatesAndUniformComb) {
  const ModelConfig c = small_config();
  HcWeights w = HcWeights::synthetic(c, 3);
  w.base.setZero();
  const Vec mu = Vec::Zero(24);
  const double eps = c.hc_eps;
  const SinkhornResult e = hc_split_sinkhorn(kExact, c, mu.data(), w);
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(e.pre(j), 0.5 + eps);
    EXPECT_EQ(e.post(j), 1.0);
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(e.comb(j, k), (1.0 - eps) / 4.0, 1e-16);
  }
  // Official: the same scalar map in fp32, each step one division and one addition rounded.
  const float eps32 = static_cast<float>(eps);
  float x = 0.25f + eps32;
  for (int step = 0; step < 2 * c.hc_sinkhorn_iters - 1; ++step) x = x / (4.0f * x + eps32);
  // (4x is exact, and the C1 sum of four equal floats is exactly 4x.)
  const SinkhornResult o = hc_split_sinkhorn(kOfficial, c, mu.data(), w);
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(o.pre(j), static_cast<double>(0.5f + eps32));
    EXPECT_EQ(o.post(j), 1.0);
    for (int k = 0; k < 4; ++k) EXPECT_EQ(o.comb(j, k), static_cast<double>(x));
  }
}

// Official mode equals the independent float emulation of the kernel bit for bit, on synthetic
// weights and random mixes, and the C3 FMA matters: at least one of the affine maps differs from
// the two-rounding mul+add, so a version without FMA would fail this test.
TEST(MhcSinkhorn, OfficialMatchesFloatKernelEmulationWithFma) {
  const ModelConfig c = small_config();
  int fma_differs = 0;
  for (std::uint64_t seed = 1; seed <= 8; ++seed) {
    const HcWeights w = HcWeights::synthetic(c, seed);
    const Mat mu = random_mixes(16, 24, seed);
    for (Eigen::Index t = 0; t < mu.rows(); ++t) {
      const SinkhornResult o = hc_split_sinkhorn(kOfficial, c, mu.row(t).data(), w);
      const FloatSinkhorn f = emulate_kernel(mu.row(t).data(), w.scale, w.base, 20, c.hc_eps);
      for (int j = 0; j < 4; ++j) {
        ASSERT_EQ(o.pre(j), static_cast<double>(f.pre[j])) << seed << " " << t << " " << j;
        ASSERT_EQ(o.post(j), static_cast<double>(f.post[j])) << seed << " " << t << " " << j;
        for (int k = 0; k < 4; ++k) ASSERT_EQ(o.comb(j, k), static_cast<double>(f.comb[j][k])) << seed << " " << t;
      }
      for (int m = 0; m < 24; ++m) {
        const float a = static_cast<float>(mu(t, m)), s = static_cast<float>(w.scale(m < 4 ? 0 : m < 8 ? 1 : 2));
        const float b = static_cast<float>(w.base(m));
        const float prod = a * s;
        if (std::fma(a, s, b) != prod + b) ++fma_differs;
      }
    }
  }
  EXPECT_GT(fma_differs, 0);
}

// The iteration structure, by induction on the iteration count (official bits):
//   S(1) = Col(softmax_row(A) + ε), S(t) = Col(Row(S(t − 1))),
// with Row/Col written out here (fp32 ops, C1 sums). It pins the count (20 → 20 row and 20
// column normalisations) and that the last operation is a column normalisation.
TEST(MhcSinkhorn, IterationStructureByInduction) {
  const Mat mu = random_mixes(1, 16, 77);
  Mat a(4, 4);
  for (int i = 0; i < 16; ++i) a(i / 4, i % 4) = static_cast<float>(2.5 * mu(0, i));
  const float eps = static_cast<float>(1e-6);
  const auto row = [&](Mat m) {
    for (int j = 0; j < 4; ++j) {
      const float r[4] = {float(m(j, 0)), float(m(j, 1)), float(m(j, 2)), float(m(j, 3))};
      const float den = c1_sum(r, 4) + eps;
      for (int k = 0; k < 4; ++k) m(j, k) = static_cast<float>(m(j, k)) / den;
    }
    return m;
  };
  const auto col = [&](Mat m) {
    for (int k = 0; k < 4; ++k) {
      const float cs[4] = {float(m(0, k)), float(m(1, k)), float(m(2, k)), float(m(3, k))};
      const float den = c1_sum(cs, 4) + eps;
      for (int j = 0; j < 4; ++j) m(j, k) = static_cast<float>(m(j, k)) / den;
    }
    return m;
  };
  Mat soft(4, 4);
  for (int j = 0; j < 4; ++j) {
    const float mx = static_cast<float>(a.row(j).maxCoeff());
    float e[4];
    for (int k = 0; k < 4; ++k) e[k] = cr_exp(static_cast<float>(a(j, k)) - mx);
    const float s = c1_sum(e, 4);
    for (int k = 0; k < 4; ++k) soft(j, k) = e[k] / s + eps;
  }
  Mat expect = col(soft);
  EXPECT_TRUE(bit_equal(hc_sinkhorn(kOfficial, a, 1, 1e-6), expect));
  for (int t = 2; t <= 20; ++t) {
    const Mat prev = hc_sinkhorn(kOfficial, a, t - 1, 1e-6);
    EXPECT_TRUE(bit_equal(hc_sinkhorn(kOfficial, a, t, 1e-6), col(row(prev)))) << "iteration " << t;
  }
}

// spec 04 §4.6/§4.7: the last operation is a column normalisation, so every column of comb (row
// of B = combᵀ) sums to c_k/(c_k + ε) where c_k is the column sum before it. With c_k computed
// from the row-normalised 19-iteration result (exact mode, double), the column sums of the
// 20-iteration comb equal c_k/(c_k + ε) to double rounding: the sum of 4 quotients each within
// 1 ulp, so ≤ 8 u. The row sums of comb (columns of B) are not normalised last: on these spread
// logits (a block pattern 8 apart whose Sinkhorn limit is nearly decomposable, so convergence is
// slow; float64 gives row sums off by 1.1e-2 after 20 iterations) they stay visibly off 1 − ε,
// which a row-last implementation would not.
TEST(MhcSinkhorn, LastOperationIsColumnNormalisation) {
  Mat a(4, 4);
  a << 8, 8, 0, 0,  //
      8, 0, 0, 0,   //
      0, 0, 0, 0,   //
      0, 0, 0, 0;
  const double eps = 1e-6;
  const Mat comb = hc_sinkhorn(kExact, a, 20, eps);
  Mat before = hc_sinkhorn(kExact, a, 19, eps);
  for (int j = 0; j < 4; ++j) before.row(j) /= before.row(j).sum() + eps;
  double worst_row_dev = 0.0;
  for (int k = 0; k < 4; ++k) {
    const double ck = before.col(k).sum();
    EXPECT_NEAR(comb.col(k).sum(), ck / (ck + eps), 8 * 0x1p-53) << k;
    // c/(c + ε) − (1 − ε) = ε(c − 1 + ε)/(c + ε): within ε(|c − 1| + ε)/c of 1 − ε.
    EXPECT_NEAR(comb.col(k).sum(), 1.0 - eps, eps * (std::abs(ck - 1.0) + eps) / ck + 8 * 0x1p-53) << k;
    EXPECT_GE(comb.col(k).minCoeff(), 0.0);
    worst_row_dev = std::max(worst_row_dev, std::abs(comb.row(k).sum() - (1.0 - eps)));
  }
  EXPECT_GT(worst_row_dev, 1e-3);
}

// The gates of the two modes agree within the official mode's rounding. With a = μ·α + b (exact,
// from the same fp32 μ, α, b), official a is fl(a) (one FMA): |Δa| ≤ u|a|, u = 2^-24, and σ is
// 1/4-Lipschitz; σ in fp32 (exp correctly rounded, 1 + e and the division rounded) is within
// 3u(1 + 3u) relative of σ(fl(a)); + ε and its rounding add ≤ u·pre. So
//   |pre_o − pre_e| ≤ u(|a|/4 + 5·pre_e),  |post_o − post_e| ≤ u(|a|/2 + 4·post_e)
// (post = 2σ, the doubling exact). Also the comb of both modes differ (official rounds to fp32).
TEST(MhcSinkhorn, GatesOfBothModesAgree) {
  const ModelConfig c = small_config();
  const HcWeights w = HcWeights::synthetic(c, 5);
  const Mat mu = random_mixes(32, 24, 5);
  const double u = 0x1p-24;
  bool comb_differs = false;
  for (Eigen::Index t = 0; t < mu.rows(); ++t) {
    const SinkhornResult e = hc_split_sinkhorn(kExact, c, mu.row(t).data(), w);
    const SinkhornResult o = hc_split_sinkhorn(kOfficial, c, mu.row(t).data(), w);
    for (int j = 0; j < 4; ++j) {
      const double a_pre = mu(t, j) * w.scale(0) + w.base(j);
      const double a_post = mu(t, 4 + j) * w.scale(1) + w.base(4 + j);
      EXPECT_NEAR(o.pre(j), e.pre(j), u * (std::abs(a_pre) / 4 + 5 * e.pre(j))) << t << " " << j;
      EXPECT_NEAR(o.post(j), e.post(j), u * (std::abs(a_post) / 2 + 4 * e.post(j))) << t << " " << j;
    }
    comb_differs = comb_differs || !bit_equal(e.comb, o.comb);
  }
  EXPECT_TRUE(comb_differs);
}

// ---- hc_pre ---------------------------------------------------------------------------------

// fn = 0 and base = 0: μ = 0, pre = σ(0) + ε, so y = (0.5 + ε)·Σ_k X_k (exact mode: the products
// and the 4-term sum in double, error ≤ 4 u relative to Σ|X_k|); official: bf16 of the fp32 sum
// of the rounded products, computed here directly.
TEST(MhcPre, ZeroWeightsAverageTheStreams) {
  const ModelConfig c = small_config();
  HcWeights w = HcWeights::synthetic(c, 1);
  w.fn.setZero();
  w.base.setZero();
  const Mat x = test::random_bf16_matrix(3, 4 * c.dim, 11, 1, 1.0);
  const HcPreOutput e = hc_pre(kExact, c, x, w);
  const HcPreOutput o = hc_pre(kOfficial, c, x, w);
  const float pre32 = 0.5f + static_cast<float>(c.hc_eps);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    for (std::int64_t dl = 0; dl < c.dim; ++dl) {
      double s = 0.0, sabs = 0.0;
      float terms[4];
      for (int k = 0; k < 4; ++k) {
        s += x(t, k * c.dim + dl);
        sabs += std::abs(x(t, k * c.dim + dl));
        terms[k] = pre32 * static_cast<float>(x(t, k * c.dim + dl));
      }
      EXPECT_NEAR(e.y(t, dl), (0.5 + c.hc_eps) * s, 4 * 0x1p-53 * sabs);
      EXPECT_EQ(o.y(t, dl), static_cast<double>(round_bf16(c1_sum(terms, 4))));
    }
    for (int j = 0; j < 4; ++j) EXPECT_EQ(o.post(t, j), 1.0);
    for (int m = 0; m < 24; ++m) EXPECT_EQ(e.mixes(t, m), 0.0);
  }
}

// μ = (W v)·rsqrt(mean v² + ε_n) against a long-double evaluation (exact mode). Tolerance: the
// double GEMM has |error| ≤ γ_K Σ_i|w_i v_i| (K = 4d), the mean of squares ≤ γ_K relative, rsqrt
// and the product a few u more: |Δμ| ≤ (γ_{K+8})·r·(Σ|w v| + |W v|).
TEST(MhcPre, MixesAreRmsScaledGemm) {
  const ModelConfig c = small_config();
  const HcWeights w = HcWeights::synthetic(c, 2);
  const Mat x = test::random_bf16_matrix(4, 4 * c.dim, 12, 1, 3.0);
  const HcPreOutput e = hc_pre(kExact, c, x, w);
  const std::int64_t K = 4 * c.dim;
  const double u = 0x1p-53, gamma = (K + 8) * u / (1 - (K + 8) * u);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    long double sq = 0;
    for (std::int64_t i = 0; i < K; ++i) sq += static_cast<long double>(x(t, i)) * x(t, i);
    const long double r = 1.0L / std::sqrt(sq / K + static_cast<long double>(c.norm_eps));
    for (int m = 0; m < 24; ++m) {
      long double dot = 0, dabs = 0;
      for (std::int64_t i = 0; i < K; ++i) {
        dot += static_cast<long double>(w.fn(m, i)) * x(t, i);
        dabs += std::abs(static_cast<long double>(w.fn(m, i)) * x(t, i));
      }
      const double tol = gamma * static_cast<double>(r * (dabs + std::abs(dot)));
      EXPECT_NEAR(e.mixes(t, m), static_cast<double>(dot * r), tol) << t << " " << m;
    }
  }
}

// Official mode: μ is the fp32 RMS-scaled GEMM, post and comb are fp32 numbers and y is bf16; official y is within its
// bf16 rounding of the exact y plus the fp32 drift of the gates. Bound: |y_o − y_e| ≤ 2^-8·|y_e| + 2^-16·Σ_k|pre_k
// X_k|: bf16 rounding ≤ 2^-9 of the fp32 value (|y_o| ≤ 2|y_e| + the second term), fp32 products and sum ≤ 2^-23 Σ|pre
// X|, and the gates' relative fp32 drift (≤ 1e-6 here: μ within ~2^-22 relative to r·Σ|w v| ~ 3, σ' ≤ 1/4, α ≤ 1) far
// below 2^-16.
TEST(MhcPre, OfficialValuesAndAgreementWithExact) {
  const ModelConfig c = small_config();
  const HcWeights w = HcWeights::synthetic(c, 4);
  const Mat x = test::random_bf16_matrix(6, 4 * c.dim, 13, 1, 2.0);
  const HcPreOutput e = hc_pre(kExact, c, x, w);
  const HcPreOutput o = hc_pre(kOfficial, c, x, w);
  // μ against a float evaluation: the 4d-term dot of bf16 × fp32 values in double is within
  // ~1e-16 relative of exact, so rounding it to float is the C1 result unless it sits within that
  // of a tie (not the case for these fixed inputs); r per C7/C2.
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    double sq = 0.0;
    for (Eigen::Index i = 0; i < x.cols(); ++i) sq += x(t, i) * x(t, i);
    const float mean = static_cast<float>(sq) * (1.0f / static_cast<float>(x.cols()));
    const float r = cr_rsqrt(mean + static_cast<float>(c.norm_eps));
    for (int m = 0; m < 24; ++m) {
      double dot = 0.0;
      for (Eigen::Index i = 0; i < x.cols(); ++i) dot += w.fn(m, i) * x(t, i);
      ASSERT_EQ(o.mixes(t, m), static_cast<double>(static_cast<float>(dot) * r)) << t << " " << m;
    }
  }
  for (Eigen::Index i = 0; i < o.comb.size(); ++i) EXPECT_EQ(o.comb.data()[i], double(float(o.comb.data()[i])));
  for (Eigen::Index i = 0; i < o.post.size(); ++i) EXPECT_EQ(o.post.data()[i], double(float(o.post.data()[i])));
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const SinkhornResult s = hc_split_sinkhorn(kExact, c, e.mixes.row(t).data(), w);
    for (std::int64_t dl = 0; dl < c.dim; ++dl) {
      EXPECT_EQ(o.y(t, dl), static_cast<double>(round_bf16(o.y(t, dl))));
      double mag = 0.0;
      for (int k = 0; k < 4; ++k) mag += std::abs(s.pre(k) * x(t, k * c.dim + dl));
      EXPECT_NEAR(o.y(t, dl), e.y(t, dl), 0x1p-8 * std::abs(e.y(t, dl)) + 0x1p-16 * mag) << t << " " << dl;
    }
  }
}

// Official bits are a pure function of the inputs: two runs agree, and a batch of tokens gives
// the same bits as each token alone (C1 sums: no dependence on the row count).
TEST(MhcPre, OfficialBitsStableAndBatchInvariant) {
  const ModelConfig c = small_config();
  const HcWeights w = HcWeights::synthetic(c, 6);
  const Mat x = test::random_bf16_matrix(5, 4 * c.dim, 14, 1, 1.0);
  for (const Precision* p : {&kOfficial, &kExact}) {
    const HcPreOutput a = hc_pre(*p, c, x, w);
    const HcPreOutput b = hc_pre(*p, c, x, w);
    EXPECT_TRUE(bit_equal(a.y, b.y) && bit_equal(a.comb, b.comb) && bit_equal(a.post, b.post) &&
                bit_equal(a.mixes, b.mixes));
    for (Eigen::Index t = 0; t < x.rows(); ++t) {
      const HcPreOutput one = hc_pre(*p, c, x.row(t), w);
      EXPECT_TRUE(bit_equal(one.y, a.y.row(t)) && bit_equal(one.comb, a.comb.row(t)) &&
                  bit_equal(one.mixes, a.mixes.row(t)))
          << t;
    }
  }
}

// ---- hc_post --------------------------------------------------------------------------------

// post = 0 and comb = I: the new state is the residual, bit for bit (products by 1 and 0 exact).
// post = 1 and comb = 0: every stream is f.
TEST(MhcPost, IdentityCombReturnsResidualAndPostBroadcasts) {
  const ModelConfig c = small_config();
  const Mat res = test::random_bf16_matrix(3, 4 * c.dim, 15, 1, 1.0);
  const Mat f = test::random_bf16_matrix(3, c.dim, 15, 2, 1.0);
  Mat comb_id = Mat::Zero(3, 16);
  for (int j = 0; j < 4; ++j) comb_id.col(j * 4 + j).setOnes();
  for (const Precision* p : {&kOfficial, &kExact}) {
    EXPECT_TRUE(bit_equal(hc_post(*p, c, f, res, Mat::Zero(3, 4), comb_id), res));
    const Mat out = hc_post(*p, c, f, res, Mat::Ones(3, 4), Mat::Zero(3, 16));
    for (int k = 0; k < 4; ++k) EXPECT_TRUE(bit_equal(out.middleCols(k * c.dim, c.dim), f)) << k;
  }
}

// comb[j,k] carries stream j into stream k (spec 04 §4.4): with comb[0,1] = 1 the only input
// stream 0 lands in output stream 1 and output stream 0 is zero; the transposed reading
// (comb[k,j]) would put stream 1 into stream 0 instead. Then a general token, checked
// element-wise against the formula written out in floats.
TEST(MhcPost, CombCarriesRowStreamIntoColumnStream) {
  const ModelConfig c = small_config();
  const std::int64_t d = c.dim;
  const Mat res = test::random_bf16_matrix(1, 4 * d, 16, 1, 1.0);
  const Mat f = test::random_bf16_matrix(1, d, 16, 2, 1.0);
  Mat comb = Mat::Zero(1, 16);
  comb(0, 0 * 4 + 1) = 1.0;
  const Mat out = hc_post(kOfficial, c, f, res, Mat::Zero(1, 4), comb);
  EXPECT_TRUE(bit_equal(out.middleCols(d, d), res.middleCols(0, d)));
  EXPECT_TRUE(out.middleCols(0, d).isZero(0));
  EXPECT_TRUE(out.middleCols(2 * d, 2 * d).isZero(0));

  const ModelConfig cfg = small_config();
  const HcWeights w = HcWeights::synthetic(cfg, 8);
  const HcPreOutput pre = hc_pre(kOfficial, cfg, res, w);
  const Mat got = hc_post(kOfficial, cfg, f, res, pre.post, pre.comb);
  Mat transposed = pre.comb;
  for (int j = 0; j < 4; ++j) {
    for (int k = 0; k < 4; ++k) transposed(0, j * 4 + k) = pre.comb(0, k * 4 + j);
  }
  EXPECT_FALSE(bit_equal(hc_post(kOfficial, cfg, f, res, pre.post, transposed), got));
  for (int k = 0; k < 4; ++k) {
    for (std::int64_t dl = 0; dl < d; ++dl) {
      float terms[4];
      for (int j = 0; j < 4; ++j) terms[j] = float(pre.comb(0, j * 4 + k)) * float(res(0, j * d + dl));
      const float v = float(pre.post(0, k)) * float(f(0, dl)) + c1_sum(terms, 4);
      ASSERT_EQ(got(0, k * d + dl), static_cast<double>(round_bf16(v))) << k << " " << dl;
    }
  }
}

// ---- hc_head --------------------------------------------------------------------------------

// fn = 0: μ = 0, pre_k = σ(b_k) + ε, y = Σ_k pre_k X_k (exact mode, ≤ 4 u Σ|pre X| + σ's few u).
TEST(MhcHead, ZeroFnUsesSigmoidOfBase) {
  const ModelConfig c = small_config();
  HcHeadWeights w = HcHeadWeights::synthetic(c, 9);
  w.fn.setZero();
  const Mat x = test::random_bf16_matrix(2, 4 * c.dim, 17, 1, 1.0);
  const Mat y = hc_head(kExact, c, x, w);
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    for (std::int64_t dl = 0; dl < c.dim; ++dl) {
      double s = 0.0, mag = 0.0;
      for (int k = 0; k < 4; ++k) {
        const double pre = 1.0 / (1.0 + std::exp(-w.base(k))) + c.hc_eps;
        s += pre * x(t, k * c.dim + dl);
        mag += std::abs(pre * x(t, k * c.dim + dl));
      }
      EXPECT_NEAR(y(t, dl), s, 16 * 0x1p-53 * mag);
    }
  }
}

// Official hc_head = separate fp32 ops (μ·α rounded, + b rounded, σ, + ε), no FMA: the gates are
// checked bit for bit against a float evaluation from the same μ (obtained through hc_pre with an
// HcWeights whose first n rows are the head's fn: the same RMS-scaled GEMM), and the FMA reading
// differs on at least one gate, so the test tells the two apart; y is then checked bit for bit
// against the bf16 of the fp32 weighted sum with those gates.
TEST(MhcHead, OfficialUsesSeparateOpsNotFma) {
  const ModelConfig c = small_config();
  const HcHeadWeights hw = HcHeadWeights::synthetic(c, 10);
  HcWeights pw = HcWeights::synthetic(c, 10);
  pw.fn.topRows(4) = hw.fn;
  const Mat x = test::random_bf16_matrix(64, 4 * c.dim, 18, 1, 1.0);
  const Mat y = hc_head(kOfficial, c, x, hw);
  const Mat mixes = hc_pre(kOfficial, c, x, pw).mixes;
  const float eps = static_cast<float>(c.hc_eps), alpha = static_cast<float>(hw.scale);
  int fma_differs = 0;
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    float pre[4];
    for (int k = 0; k < 4; ++k) {
      const float mu = static_cast<float>(mixes(t, k)), b = static_cast<float>(hw.base(k));
      const float prod = mu * alpha;
      pre[k] = sigmoid_float(prod + b) + eps;
      if (sigmoid_float(std::fma(mu, alpha, b)) + eps != pre[k]) ++fma_differs;
    }
    const Vec gates = hc_head_gates(kOfficial, c, mixes.row(t).data(), hw);
    for (int k = 0; k < 4; ++k) ASSERT_EQ(gates(k), static_cast<double>(pre[k])) << t << " " << k;
    for (std::int64_t dl = 0; dl < c.dim; ++dl) {
      float terms[4];
      for (int k = 0; k < 4; ++k) terms[k] = pre[k] * static_cast<float>(x(t, k * c.dim + dl));
      ASSERT_EQ(y(t, dl), static_cast<double>(round_bf16(c1_sum(terms, 4)))) << t << " " << dl;
    }
  }
  EXPECT_GT(fma_differs, 0);
}

// ---- bad input ------------------------------------------------------------------------------

using testing_support::expect_invalid;

TEST(MhcErrors, ShapesAndConfigNamed) {
  const ModelConfig c = small_config();
  const HcWeights w = HcWeights::synthetic(c, 1);
  const HcHeadWeights hw = HcHeadWeights::synthetic(c, 1);
  const Mat x = Mat::Zero(2, 4 * c.dim);
  HcWeights bad_fn = w;
  bad_fn.fn = Mat::Zero(24, 4 * c.dim + 1);
  expect_invalid([&] { hc_pre(kExact, c, x, bad_fn); }, "fn");
  HcWeights bad_base = w;
  bad_base.base = Vec::Zero(23);
  expect_invalid([&] { hc_pre(kExact, c, x, bad_base); }, "base");
  HcWeights bad_scale = w;
  bad_scale.scale = Vec::Zero(2);
  expect_invalid([&] { hc_pre(kExact, c, x, bad_scale); }, "scale");
  expect_invalid([&] { hc_pre(kExact, c, Mat::Zero(2, 3 * c.dim), w); }, "x");
  ModelConfig c0 = c;
  c0.hc_mult = 0;
  expect_invalid([&] { hc_pre(kExact, c0, x, w); }, "hc_mult");
  ModelConfig c3 = c;
  c3.hc_mult = 3;  // weights are for n = 4
  expect_invalid([&] { hc_pre(kExact, c3, Mat::Zero(2, 3 * c.dim), w); }, "fn");
  ModelConfig ci = c;
  ci.hc_sinkhorn_iters = 0;
  expect_invalid([&] { hc_pre(kExact, ci, x, w); }, "hc_sinkhorn_iters");
  expect_invalid([&] { hc_sinkhorn(kExact, Mat::Zero(3, 4), 20, 1e-6); }, "square");
  const Mat f = Mat::Zero(2, c.dim);
  expect_invalid([&] { hc_post(kExact, c, f, Mat::Zero(2, 4 * c.dim), Mat::Zero(2, 3), Mat::Zero(2, 16)); }, "post");
  expect_invalid([&] { hc_post(kExact, c, f, Mat::Zero(2, 4 * c.dim), Mat::Zero(2, 4), Mat::Zero(2, 15)); }, "comb");
  expect_invalid([&] { hc_post(kExact, c, f, Mat::Zero(1, 4 * c.dim), Mat::Zero(2, 4), Mat::Zero(2, 16)); },
                 "residual");
  HcHeadWeights bad_head = hw;
  bad_head.base = Vec::Zero(5);
  expect_invalid([&] { hc_head(kExact, c, x, bad_head); }, "hc_head base");
}

}  // namespace
}  // namespace dsv4
