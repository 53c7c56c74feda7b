// Properties of mHC (spec 04 §4.3–§4.7): the official Sinkhorn's comb (hc_sinkhorn, 20 iterations,
// ε = 1e-6 unless a property varies them) in both precision modes, the gates, hc_post's
// non-expansiveness and the closure of products of comb matrices over depth.
//
// ---- The bound on the marginals (derivation) --------------------------------------------------
// Notation: A the n×n comb logits; K = softmax_row(A) + ε (step 4); every later step multiplies
// rows or columns by positive factors, so every iterate is diag(x)·K·diag(y). The Hilbert
// projective metric d_H(u, v) = log max(u/v) − log min(u/v) on positive vectors; the Birkhoff–Hopf
// theorem: d_H(K u, K v) ≤ κ·d_H(u, v) with κ = tanh(Δ(K)/4), Δ(K) = max_{j,l} d_H(K_j:, K_l:).
//  (a) Δ(K) ≤ Δ_A := max_{j,l} [max_k (A_jk − A_lk) − min_k (A_jk − A_lk)] ≤ 2·(max A − min A):
//      rows of P = softmax(A) have d_H(P_j:, P_l:) = the bracket; adding ε1 to two positive
//      vectors with equal sums (Σ_k P_jk = 1) keeps their ratios between min and max ratio, and
//      min ratio ≤ 1 ≤ max ratio, so d_H does not grow.
//  (b) After the first column normalisation the row sums r satisfy d_H(r, 1) ≤ Δ_A (r_j/r_l lies
//      between the extreme ratios K_jk/K_lk; the rows of K have equal sums).
//  (c) One (row, column) round with the ε-denominators: the row factor is 1/(K y)_j times
//      π_j = r_j/(r_j + ε) (and likewise π' for columns), d_H(π, 1) ≤ η(s) := log(1 + ε/s_min),
//      s_min the smallest sum being normalised. Chaining the three maps,
//          e_{t+1} ≤ κ²·e_t + (1 + κ²)·η_row + κ·(η_col + η_col,prev),   e_t := d_H(r^{(t)}, 1),
//      and the column sums c' before a column normalisation have d_H(c', 1) ≤ η_col,prev +
//      κ(η_row + e_t). Sums are bounded below through their means: after a column normalisation
//      the column sums are c/(c + ε) ≥ 1 − ε/c_min, so the row sums have mean ≥ 1 − ε/c_min and
//      r_min ≥ (1 − ε/c_min)·e^{−e_t}; likewise c'_min ≥ (1 − ε/r_min)·e^{−d_H(c', 1)}.
//  (d) Result after T iterations (last operation a column normalisation):
//        column sums of comb ∈ [1 − ε/c'_min, 1]           → bound_col = ε/c'_min (≈ ε),
//        row sums of comb ∈ [m e^{−e_T}, m e^{e_T}], m ∈ [1 − ε/c'_min, 1]
//                                                          → bound_row = max(e^{e_T} − 1, 1 − (1 − bound_col)e^{−e_T}).
//      Without ε and rounding this is the classical e_T ≤ κ^{2(T−1)}·Δ_A.
//  (e) Rounding (u = 2^-24 official, 2^-53 exact; libm exp assumed within 4 ulp): every rounded
//      quotient multiplies an entry by (1 + δ), |δ| ≤ u, which commutes with the diagonal
//      scalings: K drifts by ≤ 2u per round (+ 2·L(u) per comparison of consecutive K, L(u) =
//      log((1+u)/(1−u))); the softmax entries are within θ = (R + 8)u relative (R the largest row
//      range of A: the rounding of A − max costs ≤ uR in the exponent), so Δ grows by 2L(θ); each
//      denominator fl(fl(Σ) + ε) is within 2.01u relative (+ L(2.01u) in η); the final sums carry
//      ≤ 5u. All these enter the recursion below as additive terms.
// The bound is a worst case over all matrices with the same Δ_A (the Birkhoff rate is attained
// by 2×2 matrices): tight-ish for small spreads, loose (and eventually vacuous) for spreads the
// 20 iterations cannot settle. properties/README.md §mHC lists measured values against it.
#include <rapidcheck.h>

#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"
#include "dsv4/train/hc_split_sinkhorn_backward.hpp"

namespace dsv4::props {
namespace {

constexpr std::int64_t kIters = 20;  // hc_sinkhorn_iters of the released models
constexpr double kEps = 1e-6;        // hc_eps

double unit_roundoff(const Precision& p) { return p.official() ? 0x1p-24 : 0x1p-53; }
double log_ratio(double u) { return std::log1p(u) - std::log1p(-u); }  // L(u) = log((1+u)/(1−u))

struct MarginalBound {
  double row = 0;    // |row sum of comb − 1| ≤ row
  double col = 0;    // column sums of comb ∈ [1 − col, 1 + 5u]
  double e_T = 0;    // d_H(row sums, 1) after T iterations
  double kappa = 0;  // Birkhoff contraction tanh(Δ/4)
};

// The derivation at the top of this file, evaluated: iters T, eps ε (as used, i.e. fl32(ε) in
// official mode), unit roundoff u, logits A (the values hc_sinkhorn receives).
MarginalBound marginal_bound(const Mat& a, std::int64_t iters, double eps, double u) {
  const Eigen::Index n = a.rows();
  double delta_a = 0.0, range = 0.0;
  for (Eigen::Index j = 0; j < n; ++j) {
    range = std::max(range, a.row(j).maxCoeff() - a.row(j).minCoeff());
    for (Eigen::Index l = 0; l < n; ++l) {
      const RowVec diff = a.row(j) - a.row(l);
      delta_a = std::max(delta_a, diff.maxCoeff() - diff.minCoeff());
    }
  }
  const double theta = (range + 8.0) * u;
  // Δ of every iterate's K: the softmax rounding (2L(θ)) and the quotient roundings of T rounds
  // (two per round, each entry of two rows: 4T·L(u)).
  const double delta = delta_a + 2.0 * log_ratio(theta) + 4.0 * static_cast<double>(iters) * log_ratio(u);
  const double kappa = std::tanh(delta / 4.0);
  const double drift = 2.0 * log_ratio(u);  // consecutive K differ by two rounded quotients
  const auto eta = [&](double s_min) { return std::log1p(eps / s_min) + log_ratio(2.01 * u); };
  const double shrink = 1.0 - 5.0 * u;  // the final sums' own rounding, and the mean's
  // first column normalisation: column sums of K ≥ (e^{−R} + nε)(1 − θ)
  double c_min = (std::exp(-range) + static_cast<double>(n) * eps) * (1.0 - theta);
  double eta_col_prev = eta(c_min);
  double e = delta;  // (b), with the rounding of K folded into Δ
  MarginalBound b;
  b.kappa = kappa;
  const double inf = std::numeric_limits<double>::infinity();
  for (std::int64_t t = 1; t < iters; ++t) {
    const double r_min = (1.0 - eps / c_min) * shrink * std::exp(-e);
    if (!(r_min > eps)) {  // the recursion no longer bounds anything: vacuous
      b.e_T = b.row = b.col = inf;
      return b;
    }
    const double eta_row = eta(r_min);
    const double dh_col = eta_col_prev + drift + kappa * (eta_row + e);
    c_min = (1.0 - eps / r_min) * shrink * std::exp(-dh_col);
    if (!(c_min > eps)) {
      b.e_T = b.row = b.col = inf;
      return b;
    }
    const double eta_col = eta(c_min);
    e = kappa * kappa * e + (1.0 + kappa * kappa) * eta_row + kappa * (eta_col + eta_col_prev) +
        (1.0 + 2.0 * kappa) * drift;
    eta_col_prev = eta_col;
  }
  b.e_T = e;
  b.col = eps / c_min + 5.0 * u;
  b.row = std::max((1.0 + 5.0 * u) * std::exp(e) - 1.0, 1.0 - (1.0 - b.col) * std::exp(-e));
  return b;
}

// n×n fp32 comb logits: spread s ∈ [0, 8] times uniform fixed-point values in [−1, 1], sometimes a
// block pattern {0, s} (nearly decomposable limits: the slowest convergence).
Mat gen_logits(int n) {
  const double spread = *rc::gen::inRange(0, 81) / 10.0;
  const bool blocks = *rc::gen::weightedOneOf<bool>({{4, rc::gen::just(false)}, {1, rc::gen::just(true)}});
  Mat a(n, n);
  for (Eigen::Index i = 0; i < a.size(); ++i) {
    const double v = blocks ? spread * *rc::gen::inRange(0, 2) : spread * *rc::gen::inRange(-1000, 1001) / 1000.0;
    a.data()[i] = static_cast<float>(v);
  }
  return a;
}
int gen_n() { return *rc::gen::weightedOneOf<int>({{4, rc::gen::just(4)}, {1, rc::gen::inRange(2, 9)}}); }
const Precision& gen_precision() {
  static const Precision exact(Mode::kExact), official(Mode::kOfficial);
  return *rc::gen::arbitrary<bool>() ? official : exact;
}

// Sums computed here in double over ≤ 8 entries ≤ 1 + ε: within 8·2^-53 of exact.
constexpr double kSumSlack = 8 * 0x1p-53;

// comb > 0 entrywise (every entry is ≥ ε-ish after step 4 and only ever divided by positive sums).
void comb_is_positive() {
  const Precision& p = gen_precision();
  const Mat comb = hc_sinkhorn(p, gen_logits(gen_n()), kIters, kEps);
  RC_ASSERT(comb.allFinite());
  RC_ASSERT(comb.minCoeff() > 0.0);
}

// Every row and column sum of comb within the derived bound (T = 20 mostly, sometimes 1–40).
void marginals_within_bound() {
  const Precision& p = gen_precision();
  const int n = gen_n();
  const std::int64_t iters =
      *rc::gen::weightedOneOf<std::int64_t>({{3, rc::gen::just(kIters)}, {1, rc::gen::inRange<std::int64_t>(1, 41)}});
  const Mat a = gen_logits(n);
  const Mat comb = hc_sinkhorn(p, a, iters, kEps);
  const MarginalBound b = marginal_bound(a, iters, p.fp32(kEps), unit_roundoff(p));
  const double u = unit_roundoff(p);
  for (int k = 0; k < n; ++k) {
    const double col = comb.col(k).sum();
    RC_ASSERT(col >= 1.0 - b.col - kSumSlack);
    RC_ASSERT(col <= 1.0 + 5.0 * u + kSumSlack);
  }
  for (int j = 0; j < n; ++j) RC_ASSERT(std::abs(comb.row(j).sum() - 1.0) <= b.row + kSumSlack);
}

// ‖B‖₂ ≤ √(‖B‖₁‖B‖_∞) ≤ √((1 + bound_row)(1 + 5u)) ≤ 1 + bound_row (B = combᵀ: ‖B‖_∞ = max column
// sum of comb, ‖B‖₁ = max row sum). The SVD of a ≤ 8×8 double matrix is accurate to ~1e-15.
void spectral_norm_bounded() {
  const Precision& p = gen_precision();
  const Mat a = gen_logits(gen_n());
  const Mat comb = hc_sinkhorn(p, a, kIters, kEps);
  const MarginalBound b = marginal_bound(a, kIters, p.fp32(kEps), unit_roundoff(p));
  const double sigma = Eigen::JacobiSVD<Mat>(comb).singularValues()(0);
  const double norm1 = comb.rowwise().sum().maxCoeff(), norm_inf = comb.colwise().sum().maxCoeff();
  RC_ASSERT(sigma <= std::sqrt(norm1 * norm_inf) + 1e-14);
  RC_ASSERT(sigma <= 1.0 + b.row + 1e-14);
}

// Closure over depth: P = B_L ⋯ B_1 (B_l = comb_lᵀ, L up to 122 = the mHC sites of 61 layers).
// Non-negative matrices preserve entrywise order, so P·1 ∈ [∏(1 − col_l), ∏(1 + 5u)]: every new
// stream stays a sub-convex combination of the original streams at any depth (‖P‖_∞ ≤ (1+5u)^L),
// and ‖P‖₂ ≤ √(‖P‖₁‖P‖_∞) ≤ √(∏(1 + row_l)·(1+5u)^L). The double products add ≤ L·n·2^-52
// relative (slack below).
void products_stay_bounded() {
  const Precision& p = gen_precision();
  const int n = *rc::gen::weightedOneOf<int>({{4, rc::gen::just(4)}, {1, rc::gen::inRange(2, 6)}});
  const int depth = *rc::gen::inRange(2, 123);
  const double u = unit_roundoff(p);
  Mat prod = Mat::Identity(n, n);
  double lo = 1.0, hi = 1.0, norm1_bound = 1.0;
  for (int l = 0; l < depth; ++l) {
    const Mat a = gen_logits(n);
    const Mat comb = hc_sinkhorn(p, a, kIters, kEps);
    const MarginalBound b = marginal_bound(a, kIters, p.fp32(kEps), u);
    prod = comb.transpose() * prod;
    lo *= std::max(0.0, 1.0 - b.col);
    hi *= 1.0 + 5.0 * u;
    norm1_bound *= 1.0 + b.row;
  }
  const double slack = depth * n * 0x1p-52;
  RC_ASSERT(prod.minCoeff() >= 0.0);
  const Vec rows = prod.rowwise().sum();
  RC_ASSERT(rows.minCoeff() >= lo * (1.0 - slack));
  RC_ASSERT(rows.maxCoeff() <= hi * (1.0 + slack));
  const double sigma = Eigen::JacobiSVD<Mat>(prod).singularValues()(0);
  RC_ASSERT(sigma <= std::sqrt(norm1_bound * hi) * (1.0 + slack) + 1e-14);
}

// pre ∈ (ε, 1 + ε), post ∈ (0, 2) for gate arguments |μ·α + b| ≤ 15, where fp32 σ is strictly inside
// (0, 1) (e^{−15} ≈ 3e-7 > 2^-24); for any argument the closed ranges [ε, fl(1 + ε)] and [0, 2].
void gates_in_range() {
  const Precision& p = gen_precision();
  ModelConfig c;
  c.hc_mult = gen_n();
  const std::int64_t n = c.hc_mult, mixes = (2 + n) * n;
  const bool wide = *rc::gen::weightedOneOf<bool>({{4, rc::gen::just(false)}, {1, rc::gen::just(true)}});
  const double limit = wide ? 200.0 : 7.5;  // |μ α + b| ≤ 2·limit·1 … (α ≤ 1, |b| ≤ limit)
  HcWeights w;
  w.base.resize(mixes);
  w.scale.resize(3);
  std::vector<double> mu(static_cast<std::size_t>(mixes));
  for (std::int64_t i = 0; i < mixes; ++i) {
    w.base(i) = static_cast<float>(limit * *rc::gen::inRange(-1000, 1001) / 1000.0);
    mu[static_cast<std::size_t>(i)] = static_cast<float>(limit * *rc::gen::inRange(-1000, 1001) / 1000.0);
  }
  for (int g = 0; g < 3; ++g) w.scale(g) = static_cast<float>(*rc::gen::inRange(1, 1001) / 1000.0);
  const SinkhornResult s = hc_split_sinkhorn(p, c, mu.data(), w);
  const double eps = p.fp32(c.hc_eps), one_eps = p.add(1.0, eps);
  for (std::int64_t j = 0; j < n; ++j) {
    RC_ASSERT(s.pre(j) >= eps);
    RC_ASSERT(s.pre(j) <= one_eps);
    RC_ASSERT(s.post(j) >= 0.0);
    RC_ASSERT(s.post(j) <= 2.0);
    if (!wide) {
      RC_ASSERT(s.pre(j) > eps);
      RC_ASSERT(s.pre(j) < one_eps);
      RC_ASSERT(s.post(j) > 0.0);
      RC_ASSERT(s.post(j) < 2.0);
    }
  }
}

// hc_post with post = 0 (exact mode) is X' = combᵀ-mixing of the residual: each new stream is a
// non-negative combination of the old ones with weights summing to a column sum of comb ≤ 1 +
// 5u, so max_k |X'_k| ≤ (1 + 5u)·max_j |X_j| per feature (plus 4 double roundings). Applying comb
// untransposed would break this whenever a row sum of comb exceeds 1 (spec 04 §4.4).
void post_mixing_is_nonexpansive() {
  const Precision exact(Mode::kExact);
  const Precision& p = gen_precision();
  ModelConfig c;
  c.hc_mult = 4;
  c.dim = *rc::gen::inRange(1, 9);
  const Mat comb = hc_sinkhorn(p, gen_logits(4), kIters, kEps);
  Mat comb_row(1, 16);
  for (int j = 0; j < 4; ++j) {
    for (int k = 0; k < 4; ++k) comb_row(0, j * 4 + k) = comb(j, k);
  }
  Mat res(1, 4 * c.dim);
  for (Eigen::Index i = 0; i < res.size(); ++i) res.data()[i] = *rc::gen::inRange(-1000, 1001) / 100.0;
  const Mat out = hc_post(exact, c, Mat::Zero(1, c.dim), res, Mat::Zero(1, 4), comb_row);
  const double u = unit_roundoff(p);
  for (std::int64_t dl = 0; dl < c.dim; ++dl) {
    double in_max = 0.0, out_max = 0.0;
    for (int k = 0; k < 4; ++k) {
      in_max = std::max(in_max, std::abs(res(0, k * c.dim + dl)));
      out_max = std::max(out_max, std::abs(out(0, k * c.dim + dl)));
    }
    RC_ASSERT(out_max <= in_max * (1.0 + 5.0 * u + 8 * 0x1p-53));
  }
}

// ---- the measured convergence table (not a RapidCheck testable) ------------------------------
// For logits A_jk ~ N(0, σ²) rounded to fp32 (n = 4, ε = 1e-6, official mode), per iteration count
// T the median / 99th percentile / max over the samples of max_j |row sum_j(comb) − 1| (the
// column sums of B, which the last step does not normalise), and the median derived bound; then
// per bucket of the logits' Δ_A the worst deviation at T = 20 against the bound. Passes
// when every sample is within its bound; the table is the message (dsv4 fuzz --property
// mhc.sinkhorn_convergence --json prints it).
RunResult convergence_table(const RunConfig& cfg) {
  const Precision p(Mode::kOfficial);
  const std::vector<double> sigmas{0.5, 1.0, 2.0, 4.0};
  const std::vector<std::int64_t> iters{1, 2, 3, 5, 10, 20, 30, 50};
  const int samples = std::max(cfg.runs, 1);
  std::ostringstream table;
  table << "| σ | T | median | 99th pct | max | median bound |\n|---|---|---|---|---|---|\n";
  RunResult r;
  r.passed = true;
  for (const double sigma : sigmas) {
    const CounterRng rng(cfg.seed, stream_id("mhc.convergence") + static_cast<std::uint64_t>(sigma * 16));
    for (const std::int64_t t : iters) {
      std::vector<double> dev, bound;
      for (int s = 0; s < samples; ++s) {
        Mat a(4, 4);
        for (int i = 0; i < 16; ++i) {
          a.data()[i] = static_cast<float>(sigma * rng.normal(static_cast<std::uint64_t>(s * 16 + i)));
        }
        const Mat comb = hc_sinkhorn(p, a, t, kEps);
        double d = 0.0;
        for (int j = 0; j < 4; ++j) d = std::max(d, std::abs(comb.row(j).sum() - 1.0));
        const double b = marginal_bound(a, t, p.fp32(kEps), unit_roundoff(p)).row;
        if (d > b + kSumSlack) {
          r.passed = false;
          r.message = "sample beyond its bound: sigma " + std::to_string(sigma) + ", T " + std::to_string(t);
          return r;
        }
        dev.push_back(d);
        bound.push_back(b);
      }
      std::sort(dev.begin(), dev.end());
      std::sort(bound.begin(), bound.end());
      const auto at = [&](const std::vector<double>& v, double q) {
        return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
      };
      char line[200];
      std::snprintf(line, sizeof line, "| %.1f | %lld | %.1e | %.1e | %.1e | %.1e |\n", sigma,
                    static_cast<long long>(t), at(dev, 0.5), at(dev, 0.99), dev.back(), at(bound, 0.5));
      table << line;
    }
    r.runs_done += samples;
    if (cfg.progress) cfg.progress(r.runs_done);
  }
  // Second table: per Δ_A bucket, the worst observed row-sum deviation at T = 20 against the range
  // of the bound (A = s·U[−1, 1] with s ∈ [hi/4, hi/2], kept when Δ_A falls in [lo, hi)).
  table << "\n| Δ_A | samples | worst deviation | bound_row (min – max) | worst observed / bound |\n"
           "|---|---|---|---|---|\n";
  const std::vector<double> edges{0.0, 0.5, 1, 2, 4, 6, 8, 12, 16, 32};
  for (std::size_t e = 1; e < edges.size(); ++e) {
    const double lo = edges[e - 1], hi = edges[e];
    const CounterRng rng(cfg.seed, stream_id("mhc.convergence.buckets") + e);
    double worst = 0.0, bmin = std::numeric_limits<double>::infinity(), bmax = 0.0, ratio = 0.0;
    int count = 0;
    for (std::uint64_t s = 0; s < 100u * static_cast<std::uint64_t>(samples) && count < samples; ++s) {
      const double scale = hi / 2.0 * (0.5 + 0.5 * rng.uniform(s * 17 + 16));
      Mat a(4, 4);
      for (int i = 0; i < 16; ++i) a.data()[i] = static_cast<float>(scale * (2.0 * rng.uniform(s * 17 + i) - 1.0));
      double delta_a = 0.0;
      for (int j = 0; j < 4; ++j) {
        for (int l = 0; l < 4; ++l) {
          const RowVec diff = a.row(j) - a.row(l);
          delta_a = std::max(delta_a, diff.maxCoeff() - diff.minCoeff());
        }
      }
      if (delta_a < lo || delta_a >= hi) continue;
      ++count;
      const Mat comb = hc_sinkhorn(p, a, kIters, kEps);
      const double b = marginal_bound(a, kIters, p.fp32(kEps), unit_roundoff(p)).row;
      double d = 0.0;
      for (int j = 0; j < 4; ++j) d = std::max(d, std::abs(comb.row(j).sum() - 1.0));
      if (d > b + kSumSlack) {
        r.passed = false;
        r.message = "sample beyond its bound: Δ_A bucket [" + std::to_string(lo) + ", " + std::to_string(hi) + ")";
        return r;
      }
      worst = std::max(worst, d);
      bmin = std::min(bmin, b);
      bmax = std::max(bmax, b);
      ratio = std::max(ratio, d / b);
    }
    char line[200];
    std::snprintf(line, sizeof line, "| [%g, %g) | %d | %.2e | %.2e – %.2e | %.2f |\n", lo, hi, count, worst, bmin,
                  bmax, ratio);
    table << line;
  }
  r.message = table.str();
  return r;
}

// ---- The backward (spec 04 §4.8, spec 06 §6.12) --------------------------------------------------
// hc_split_sinkhorn_backward — the gates and the unrolled gradient through every Sinkhorn iteration
// — against central differences of the exact forward (hc_split_sinkhorn_exact) evaluated in 50-digit
// arithmetic, at random points: one token, n ∈ [2, 4], T ∈ [1, 20] iterations, ε ∈ {0, 1e-6, 1e-3};
// mixes μ ∈ [−2, 2], α ∈ [0.1, 2], b ∈ [−1, 1] (comb logits within ±5, so every column sum the
// normalisations divide by is ≥ e^−10 and the function is smooth with a bounded condition);
// upstream gradients of pre, post and comb ∈ [−1, 1]. The scalar L = Σ dpre·pre + Σ dpost·post +
// Σ dcomb·comb is differentiated along each of the (2+n)n + 3 + (2+n)n coordinates with spec 06
// §6.12's step h_j = 10⁻²⁰·max(|θ_j|, 10⁻³) (truncation and rounding below 10⁻²⁵ relative). Checks:
//  * every coordinate within kSinkhornGradTol·max_j |fd_j| of the 50-digit difference (spec 06
//    §6.12's gradient-check bound, here over all coordinates together: a random point may make one
//    group — the three dα — a cancellation of larger terms);
//  * the structure: a row j of the comb logits shifted by a constant leaves the row softmax, hence
//    comb, unchanged, so Σ_k ∂L/∂b_{2n+jn+k} = 0 (with one token dbase is da): the backward's row
//    sums vanish to n times the per-coordinate bound, and the 50-digit difference along the shift
//    is zero to 10⁻²⁵. A backward that drops a normalisation step's − Σ Ȳ Y term (treats the
//    normaliser as a constant), or the softmax's, fails both.
constexpr double kSinkhornGradTol = 1e-10;

void sinkhorn_gradient_matches_finite_differences() {
  const int n = *rc::gen::inRange(2, 5);
  const std::int64_t iters = *rc::gen::inRange(1, 21);
  const double eps = *rc::gen::element(0.0, 1e-6, 1e-3);
  const std::int64_t count = (2 + static_cast<std::int64_t>(n)) * n;
  const auto uniform = [](double lo, double hi) { return lo + (hi - lo) * *rc::gen::inRange(0, 1001) / 1000.0; };
  Mat mixes(1, count);
  Vec scale(3), base(count);
  for (std::int64_t i = 0; i < count; ++i) {
    mixes(0, i) = uniform(-2.0, 2.0);
    base(i) = uniform(-1.0, 1.0);
  }
  for (Eigen::Index g = 0; g < 3; ++g) scale(g) = uniform(0.1, 2.0);
  Mat dpre(1, n), dpost(1, n), dcomb(1, n * n);
  for (Eigen::Index i = 0; i < n; ++i) {
    dpre(0, i) = uniform(-1.0, 1.0);
    dpost(0, i) = uniform(-1.0, 1.0);
  }
  for (Eigen::Index i = 0; i < n * n; ++i) dcomb(0, i) = uniform(-1.0, 1.0);
  const HcSplitSinkhornGrads bw = hc_split_sinkhorn_backward(mixes, n, scale, base, iters, eps, dpre, dpost, dcomb);
  // θ = (μ, α, b); L(θ) in 50 digits.
  std::vector<double> theta;
  for (std::int64_t i = 0; i < count; ++i) theta.push_back(mixes(0, i));
  for (Eigen::Index g = 0; g < 3; ++g) theta.push_back(scale(g));
  for (std::int64_t i = 0; i < count; ++i) theta.push_back(base(i));
  const auto loss = [&](const std::vector<Mp50>& t) {
    std::vector<Mp50> pre(static_cast<std::size_t>(n)), post(static_cast<std::size_t>(n)),
        comb(static_cast<std::size_t>(n * n));
    hc_split_sinkhorn_exact(t.data(), n, t.data() + count, t.data() + count + 3, iters, eps, pre.data(), post.data(),
                            comb.data());
    Mp50 l = 0;
    for (int i = 0; i < n; ++i)
      l += Mp50(dpre(0, i)) * pre[static_cast<std::size_t>(i)] + Mp50(dpost(0, i)) * post[static_cast<std::size_t>(i)];
    for (int i = 0; i < n * n; ++i) l += Mp50(dcomb(0, i)) * comb[static_cast<std::size_t>(i)];
    return l;
  };
  const std::vector<Mp50> at(theta.begin(), theta.end());
  const auto difference = [&](const std::vector<double>& direction, const Mp50& h) {
    std::vector<Mp50> plus = at, minus = at;
    for (std::size_t j = 0; j < at.size(); ++j) {
      plus[j] += h * Mp50(direction[j]);
      minus[j] -= h * Mp50(direction[j]);
    }
    return static_cast<double>((loss(plus) - loss(minus)) / (2 * h));
  };
  std::vector<double> fd(theta.size()), got(theta.size());
  for (std::size_t j = 0; j < theta.size(); ++j) {
    std::vector<double> e(theta.size(), 0.0);
    e[j] = 1.0;
    fd[j] = difference(e, Mp50("1e-20") * Mp50(std::max(std::abs(theta[j]), 1e-3)));
    const auto i = static_cast<Eigen::Index>(j);
    got[j] = j < static_cast<std::size_t>(count)       ? bw.dmixes(0, i)
             : j < static_cast<std::size_t>(count + 3) ? bw.dscale(i - count)
                                                       : bw.dbase(i - count - 3);
  }
  double scale_fd = 0.0;
  for (const double v : fd) scale_fd = std::max(scale_fd, std::abs(v));
  const double tol = kSinkhornGradTol * scale_fd;
  for (std::size_t j = 0; j < theta.size(); ++j) {
    if (std::abs(got[j] - fd[j]) > tol) {
      std::ostringstream m;
      m.precision(17);
      m << "coordinate " << j << " (n " << n << ", T " << iters << ", eps " << eps << "): backward " << got[j]
        << ", 50-digit difference " << fd[j] << ", bound " << tol;
      RC_FAIL(m.str());
    }
  }
  for (int j = 0; j < n; ++j) {  // the comb logits' row shifts
    std::vector<double> shift(theta.size(), 0.0);
    double row_sum = 0.0;
    for (int k = 0; k < n; ++k) {
      const std::size_t b = static_cast<std::size_t>(count + 3 + 2 * n + j * n + k);
      shift[b] = 1.0;
      row_sum += got[b];
    }
    RC_ASSERT(std::abs(difference(shift, Mp50("1e-20"))) <= 1e-25 * std::max(scale_fd, 1e-300));
    RC_ASSERT(std::abs(row_sum) <= static_cast<double>(n) * tol);
  }
}

}  // namespace

void register_mhc_properties(Registry& r) {
  r.add_rc("mhc.comb_positive", "mhc", "Sinkhorn comb (20 iterations, eps 1e-6) is finite and entrywise > 0", 200,
           comb_is_positive);
  r.add_rc("mhc.comb_marginals", "mhc",
           "row and column sums of comb within the derived bound (iterations, eps, logit spread)", 300,
           marginals_within_bound);
  r.add_rc("mhc.spectral_norm", "mhc", "||comb^T||_2 <= sqrt(||.||_1 ||.||_inf) <= 1 + row bound", 200,
           spectral_norm_bounded);
  r.add_rc("mhc.closure", "mhc", "products of up to 122 comb^T stay non-negative, sub-stochastic rows, bounded norm",
           50, products_stay_bounded);
  r.add_rc("mhc.gate_ranges", "mhc", "pre in (eps, 1+eps), post in (0, 2); closed ranges for any argument", 300,
           gates_in_range);
  r.add_rc("mhc.post_nonexpansive", "mhc", "hc_post mixing (post = 0) never grows max_k |X_k| beyond 1 + 5u", 200,
           post_mixing_is_nonexpansive);
  r.add_rc("mhc.sinkhorn_gradient", "mhc",
           "backward of the gates and every Sinkhorn iteration = 50-digit central differences (<= 1e-10 of the "
           "largest); comb-logit rows' gradient sums vanish (softmax shift invariance)",
           300, sinkhorn_gradient_matches_finite_differences);
  r.add(Property{"mhc.sinkhorn_convergence",
                 "mhc",
                 "measured row-sum deviation vs iterations and logit spread, every sample within its bound",
                 200,
                 convergence_table,
                 {}});
}

}  // namespace dsv4::props
