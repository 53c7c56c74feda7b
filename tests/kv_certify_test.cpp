// Certification of the exact-mode FP8 decisions of the window KV path (model/kv_certify.hpp,
// spec 02 §2.5): (a) random inputs certify almost everything, (b) a constructed near-tie (within
// 1e-17 relative of an e4m3 rounding boundary, on either side) is re-decided in Mp50 and matches
// the correct rounding, (c) the bound holds against Mp50 and is not vacuous.
#include "dsv4/model/kv_certify.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/attention.hpp"
#include "dsv4/model/indexer.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/certify_fixtures.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

const Precision kExactP(Mode::kExact);
constexpr std::uint64_t kInputSeed = 11;  // matrices and inputs
constexpr std::uint64_t kNormSeed = 12;   // norm weights

// A norm weight γ of n entries, 1 + 0.1 · N(0, 1), unrounded.
Vec random_norm_weight(std::int64_t n, std::uint64_t stream) {
  const CounterRng rng(kNormSeed, stream);
  Vec v(n);
  for (std::int64_t i = 0; i < n; ++i) v(i) = 1.0 + 0.1 * rng.normal(static_cast<std::uint64_t>(i));
  return v;
}

struct Pipeline {
  Mat y_hat, unquantised, quantised;
  DecisionStats stats;
};

Pipeline run_pipeline(const Mat& x, const Mat& w, const Vec& nw, double eps, std::int64_t cols) {
  Pipeline p;
  p.y_hat = kExactP.matmul_nt(x, w);
  p.unquantised = rmsnorm(kExactP, p.y_hat, nw, eps);
  p.quantised = p.unquantised;
  quantise_columns(kExactP, p.quantised, 0, cols, 64, BlockQuant::kFp8Ue8m0);
  p.stats = certify_fp8_kv(x, w, nw, eps, p.y_hat, p.unquantised, cols, 64, p.quantised);
  return p;
}

// (a) through the Attention module (tiny config, synthetic FP8 weights) and the free function.
TEST(KvCertify, RandomInputsCertify) {
  ModelConfig c = builtin_config("tiny");
  c.max_seq_len = 64;
  const Attention attn(kExactP, c, 0, AttentionWeights::synthetic(c, 0, 3));
  AttentionState st = attn.initial_state();
  const Mat x = test::random_bf16_matrix(48, c.dim, kInputSeed, 1, 1.0);
  const AttentionOutput out = attn.prefill(x, st);
  test::expect_mostly_certified("attention tiny", x.rows() * (c.head_dim - c.rope_head_dim), out.kv_decisions.certified,
                                out.kv_decisions.redecided, out.kv_decisions.recomputed, out.kv_decisions.flipped);

  const Mat xr = test::random_normal_matrix(200, 512, kInputSeed, 2, 1.0);
  const Mat w = test::random_normal_matrix(192, 512, kInputSeed, 3, 1.0 / std::sqrt(512.0));
  const Pipeline p = run_pipeline(xr, w, random_norm_weight(192, 4), 1e-6, 128);
  test::expect_mostly_certified("random 200x128", 200 * 128, p.stats.certified, p.stats.redecided, p.stats.recomputed,
                                p.stats.flipped);
}

// (b) One element of kv placed within 5e-18 relative of an e4m3 rounding boundary (above or
// below), by tuning its norm weight (coarse) and one weight against a tiny input (fine, Newton in
// Mp50). The double pipeline cannot resolve that; the certifier must re-decide in Mp50.
TEST(KvCertify, NearTieIsRedecidedInMp50) {
  const std::int64_t K = 128, n = 128, cols = 64, j = 5, kt = K - 1;
  const double eps = 1e-6;
  std::vector<double> results;
  for (const double rho : {5e-18, -5e-18}) {
    Mat x = test::random_normal_matrix(1, K, kInputSeed, 21, 1.0);
    x(0, kt) = 0x1.0p-40;
    Mat w = test::random_normal_matrix(n, K, kInputSeed, 22, 1.0 / std::sqrt(static_cast<double>(K)));
    Vec nw = random_norm_weight(n, 23);
    // the block's amax must not be element j (its scale stays put while j moves by ~1e-16)
    std::vector<Mp50> o = linear_rmsnorm_row_mp50(x, 0, w, nw, eps, cols);
    Mp50 amax = 0;
    for (std::int64_t i = 0; i < 64; ++i) {
      if (i != j) amax = std::max(amax, Mp50(abs(o[static_cast<std::size_t>(i)])));
    }
    ASSERT_LT(abs(o[j]) * 2, amax);
    const int k = static_cast<int>(std::ceil(std::log2(static_cast<double>(amax) / 448.0)));
    const double s = std::ldexp(1.0, k);
    ASSERT_LE(amax, Mp50(448.0 * s));
    ASSERT_GT(amax, Mp50(224.0 * s * (1 + 1e-6)));
    // grid neighbours of |o_j| / s and their midpoint β
    const double a = std::fabs(static_cast<double>(o[j] / s));
    double lo = 0.0, hi = 0.0;
    for (std::uint32_t code = 0; code < 0x7E; ++code) {
      const double g0 = decode_minifloat(kFormatE4M3, code), g1 = decode_minifloat(kFormatE4M3, code + 1);
      if (g0 <= a && a < g1) lo = g0, hi = g1;
    }
    ASSERT_LT(lo, hi);
    const double sign = o[j] < 0 ? -1.0 : 1.0;
    const Mp50 target = Mp50(sign) * (Mp50(lo) + Mp50(hi)) / 2 * Mp50(s) * (1 + Mp50(rho));
    // coarse: the norm weight; o_j = nw_j · z_j
    nw(j) = static_cast<double>(Mp50(nw(j)) * target / o[j]);
    // fine: Newton on w(j, kt), do_j/dy_j = nw_j R (1 − y_j² R²/n) ≈ o_j / y_j (1 − …); use a secant
    for (int it = 0; it < 6; ++it) {
      o = linear_rmsnorm_row_mp50(x, 0, w, nw, eps, cols);
      const Mp50 err = target - o[j];
      if (abs(err) < abs(target) * Mp50(1e-22)) break;
      const double h = w(j, kt) * 1e-6;
      Mat w2 = w;
      w2(j, kt) += h;
      const std::vector<Mp50> o2 = linear_rmsnorm_row_mp50(x, 0, w2, nw, eps, cols);
      const Mp50 slope = (o2[j] - o[j]) / Mp50(w2(j, kt) - w(j, kt));
      w(j, kt) = static_cast<double>(Mp50(w(j, kt)) + err / slope);
    }
    o = linear_rmsnorm_row_mp50(x, 0, w, nw, eps, cols);
    const Mp50 beta = Mp50(sign) * (Mp50(lo) + Mp50(hi)) / 2 * Mp50(s);
    const Mp50 rel = abs(o[j] - beta) / abs(beta);
    ASSERT_LT(rel, Mp50(1e-17)) << "construction failed";
    ASSERT_EQ(o[j] > beta, rho * sign > 0);
    // the correct rounding, directly: |o_j| above the midpoint → hi, below → lo
    const double expected = sign * (rho > 0 ? hi : lo) * s;

    const Pipeline p = run_pipeline(x, w, nw, eps, cols);
    EXPECT_GE(p.stats.redecided, 1);
    EXPECT_EQ(p.stats.recomputed, 1);
    EXPECT_EQ(p.quantised(0, j), expected) << "rho " << rho;
    // the re-decided row equals the Mp50 decisions everywhere
    const std::vector<double> q0 = fp8_ue8m0_block_mp50(std::span<const Mp50>(o.data(), 64));
    for (std::int64_t i = 0; i < 64; ++i) EXPECT_EQ(p.quantised(0, i), q0[static_cast<std::size_t>(i)]);
    results.push_back(p.quantised(0, j));
  }
  EXPECT_NE(results[0], results[1]);  // the two sides of the boundary are told apart
}

// (c) the bound holds against Mp50 and is usable: mean bound ≤ 1e6 × mean actual error.
TEST(KvCertify, BoundHoldsAndIsNotVacuous) {
  const std::int64_t M = 48, K = 1024, n = 128, cols = 64;
  const double eps = 1e-6;
  const Mat x = test::random_normal_matrix(M, K, kInputSeed, 31, 1.0);
  const Mat w = test::random_normal_matrix(n, K, kInputSeed, 32, 1.0 / std::sqrt(static_cast<double>(K)));
  const Vec nw = random_norm_weight(n, 33);
  const Mat y_hat = kExactP.matmul_nt(x, w);
  const Mat o_hat = rmsnorm(kExactP, y_hat, nw, eps);
  const Mat ey = linear_error_bound(x, w);
  const Mat b = rmsnorm_error_bound(y_hat, ey, nw, eps, cols);
  double sum_bound = 0.0, sum_err = 0.0, max_ratio_used = 0.0;
  double sum_ybound = 0.0, sum_yerr = 0.0;
  for (std::int64_t r = 0; r < M; ++r) {
    const std::vector<Mp50> o = linear_rmsnorm_row_mp50(x, r, w, nw, eps, cols);
    for (std::int64_t i = 0; i < cols; ++i) {
      const double err = static_cast<double>(abs(Mp50(o_hat(r, i)) - o[static_cast<std::size_t>(i)]));
      EXPECT_LE(err, b(r, i)) << r << "," << i;
      sum_bound += b(r, i);
      sum_err += err;
      max_ratio_used = std::max(max_ratio_used, err / b(r, i));
      // the linear bound alone
      Mp50 y = 0;
      for (std::int64_t k = 0; k < K; ++k) y += Mp50(x(r, k)) * Mp50(w(i, k));
      const double yerr = static_cast<double>(abs(Mp50(y_hat(r, i)) - y));
      EXPECT_LE(yerr, ey(r, i));
      sum_ybound += ey(r, i);
      sum_yerr += yerr;
    }
  }
  std::printf("rmsnorm: mean bound / mean error = %.3g (largest error/bound %.3g); linear: %.3g\n", sum_bound / sum_err,
              max_ratio_used, sum_ybound / sum_yerr);
  EXPECT_GT(sum_err, 0.0);
  EXPECT_LE(sum_bound, 1e6 * sum_err);
  EXPECT_LE(sum_ybound, 1e6 * sum_yerr);
}

}  // namespace
}  // namespace dsv4
