// Properties of the hybrid Newton–Schulz iteration of Muon (spec 06 §6.2; ref/train newton_schulz.hpp)
// on generated matrices: square, tall, wide, rank-deficient, condition numbers up to 10^6,
// magnitudes over 80 decades. The derivations are summarised in properties/README.md
// §Newton–Schulz; each is stated next to the code that applies it.
//
// The backbone. With W = U Σ Vᵀ the exact iteration acts on the singular values alone,
// X_k = U p_k(…p_1(Σ/(‖W‖_F + ε))…) Vᵀ with p(σ) = aσ + bσ³ + cσ⁵ — both p are positive on
// (0, ∞) (the quadratics a + bt + ct² in t = σ² have negative discriminants), so the singular values
// of X_k are exactly p_k(σ) of those of X_{k−1}. The computed iteration adds a rounding error E_k per
// step (step_error below), and three facts turn the scalar maps into statements about the computed
// matrices:
//   (W) Weyl: sorted singular values of A + E and of A differ by at most ‖E‖_2 ≤ ‖E‖_F. Hence if
//       σ(X̂_{k−1}) has ≥ m values in an interval J, then σ(X̂_k) has ≥ m values in p(J) ± E_k: the
//       m values p(σ) lie in p(J) and Weyl pairs them (in sorted order) with m distinct singular
//       values of X̂_k within E_k. Propagating intervals this way (`propagate`) bounds what the
//       computed iteration does to every class of input singular values.
//   (L) Lipschitz: for an odd polynomial p and ‖X‖_2, ‖X'‖_2 ≤ ρ, ‖p(X) − p(X')‖_F ≤
//       sup_{[0,ρ]} |p'| · ‖X − X'‖_F (the Hermitian dilation H(X) = [0 X; Xᵀ 0] has eigenvalues ±σ_i,
//       p(H(X)) = H(p(X)), and the Frobenius-norm Lipschitz bound of Hermitian matrix functions by
//       divided differences, Bhatia, Matrix Analysis §V.3). This bounds the forward error
//       ‖X̂_10 − X_10‖_F (`forward_error`).
//   (S) the SVD used to read singular values (Eigen::JacobiSVD, one-sided Jacobi, backward stable)
//       is trusted to kSvdErr·σ_max: an assumption, ~10^4 times the actual error for these sizes.
#include <rapidcheck.h>

#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../tests/support/mat_bits.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"
#include "dsv4/train/muon.hpp"
#include "dsv4/train/newton_schulz.hpp"

namespace dsv4::props {
namespace {

constexpr double kU = 0x1p-53;  // unit roundoff of double
double gamma(double k) { return k * kU / (1.0 - k * kU); }

constexpr std::int64_t kMaxDim = 32;  // generated matrices are at most kMaxDim × kMaxDim
constexpr double kSvdErr = 1e-12;     // (S): absolute error of a computed singular value, per unit σ_max
// A scalar polynomial value in double (|σ| ≤ 1.3: |terms| ≤ 9, about ten roundings): 1e-14 covers it.
constexpr double kEvalErr = 1e-14;
constexpr int kSteps = kNsAggressiveSteps + kNsStabilisingSteps;

// The thresholds and bands of properties/README.md §Newton–Schulz. The property
// newton_schulz.derived_bands recomputes each from the scalar maps and the rounding slacks.
constexpr double kTauOk = 3.7e-5;         // normalised σ ≥ this: orthogonalised
constexpr double kBand8Lo = 0.6818314;    // after 8 aggressive steps: σ ∈ [kBand8Lo, kBand8Hi]
constexpr double kBand8Hi = 1.2023687;    //   (the critical values of p_aggressive)
constexpr double kBand10Lo = 1.0 - 1e-9;  // after the 2 stabilising steps: σ ∈ [kBand10Lo, kBand10Hi]
constexpr double kBand10Hi = 1.0020174;   //   i.e. |σ − 1| ≤ 2.02e-3
constexpr double kDelta = 0.5;            // failure regime: σ_out ≤ 1 − δ …
constexpr double kTauTiny = 6.7e-6;       //   … for every normalised σ ≤ this

const NsCoefficients& coefficients(int step) {  // step 1..10
  return step <= kNsAggressiveSteps ? kNsAggressive : kNsStabilising;
}

double dp(double s, const NsCoefficients& c) {  // p'(σ) = a + 3bσ² + 5cσ⁴
  const double s2 = s * s;
  return c.a + 3.0 * c.b * s2 + 5.0 * c.c * s2 * s2;
}

// Positive roots of p'(σ) (a quadratic in σ²): the interior extrema of p.
std::vector<double> critical_points(const NsCoefficients& c) {
  const double qa = 5.0 * c.c, qb = 3.0 * c.b, qc = c.a;
  const double disc = qb * qb - 4.0 * qa * qc;
  std::vector<double> out;
  if (disc < 0.0) return out;
  for (const double t : {(-qb - std::sqrt(disc)) / (2.0 * qa), (-qb + std::sqrt(disc)) / (2.0 * qa)}) {
    if (t > 0.0) out.push_back(std::sqrt(t));
  }
  return out;
}

struct Interval {
  double lo;
  double hi;
};

// p([lo, hi]) ± slack for 0 ≤ lo ≤ hi: p is continuous, so its image is [min, max] over the endpoints
// and the critical points inside; kEvalErr covers evaluating p in double.
Interval image(const Interval& in, const NsCoefficients& c, double slack) {
  double lo = std::min(newton_schulz_scalar_step(in.lo, c), newton_schulz_scalar_step(in.hi, c));
  double hi = std::max(newton_schulz_scalar_step(in.lo, c), newton_schulz_scalar_step(in.hi, c));
  for (const double x : critical_points(c)) {
    if (x > in.lo && x < in.hi) {
      lo = std::min(lo, newton_schulz_scalar_step(x, c));
      hi = std::max(hi, newton_schulz_scalar_step(x, c));
    }
  }
  return {std::max(0.0, lo - slack - kEvalErr), hi + slack + kEvalErr};
}

// sup_{[0, ρ]} |p'|: at 0, ρ or a zero of p'' = 6bσ + 20cσ³ (σ² = −3b/(10c)) inside.
double lipschitz(double rho, const NsCoefficients& c) {
  double m = std::max(std::fabs(dp(0.0, c)), std::fabs(dp(rho, c)));
  const double t = -3.0 * c.b / (10.0 * c.c);
  if (t > 0.0 && std::sqrt(t) < rho) m = std::max(m, std::fabs(dp(std::sqrt(t), c)));
  return m * (1.0 + 1e-12);
}

// ‖E‖_F for one computed step of a wide r×n iterate (r ≤ n) with ‖X‖_2 ≤ ρ, in the order of
// newton_schulz.hpp. φ = √r·ρ ≥ ‖X‖_F; dot products of K terms: |fl − exact| ≤ γ_K Σ|terms|
// (Higham 3.5), so an r×K by K×n product M·N errs by ≤ γ_K ‖M‖_F‖N‖_F in Frobenius norm.
//   A  = fl(XXᵀ):          e_A  = γ_n φ²
//   A2 = fl(Â·Â):          e_A2 = γ_r ‖Â‖_F² + 2ρ² e_A + e_A²        (‖Â‖_F ≤ √r ρ² + e_A)
//   B  = fl(fl(bÂ)+fl(cÂ2)): e_B = |b|e_A + |c|e_A2 + γ_2(|b|‖Â‖_F + |c|‖Â2‖_F)  (‖Â2‖_F ≤ √r ρ⁴ + e_A2)
//   C  = fl(B̂X):           e_C  = γ_r ‖B̂‖_F φ + e_B ρ               (‖B̂‖_F ≤ √r β + e_B, β = |b|ρ² + |c|ρ⁴)
//   X' = fl(fl(aX) + Ĉ):   E    = e_C + γ_2(|a|φ + βφ + e_C)
double step_error(std::int64_t r, std::int64_t n, double rho, const NsCoefficients& c) {
  const double sr = std::sqrt(static_cast<double>(r));
  const double phi = sr * rho;
  const double rho2 = rho * rho, rho4 = rho2 * rho2;
  const double e_a = gamma(static_cast<double>(n)) * phi * phi;
  const double a_hat = sr * rho2 + e_a;
  const double e_a2 = gamma(static_cast<double>(r)) * a_hat * a_hat + 2.0 * rho2 * e_a + e_a * e_a;
  const double a2_hat = sr * rho4 + e_a2;
  const double ab = std::fabs(c.b), ac = std::fabs(c.c);
  const double e_b = ab * e_a + ac * e_a2 + gamma(2) * (ab * a_hat + ac * a2_hat);
  const double beta = ab * rho2 + ac * rho4;
  const double e_c = gamma(static_cast<double>(r)) * (sr * beta + e_b) * phi + e_b * rho;
  return e_c + gamma(2) * (std::fabs(c.a) * phi + beta * phi + e_c);
}

// ‖X̂_0 − X_0‖_F for X̂_0 = fl(W/fl(N̂ + ε)): the norm's sum of r·n positive squares (γ_rn relative),
// its sqrt and the + ε (u each, the sqrt halving the sum's error), and one division per element
// (u), with ‖X_0‖_F ≤ 1.
double normalise_error(std::int64_t r, std::int64_t n) { return gamma(static_cast<double>(r * n)) / 2.0 + 3.01 * kU; }

// Interval propagation (W) through the 10 steps: out[k] holds the singular values of X̂_k of the
// directions whose X̂_0 singular values lie in `start`. The slack of step k is E_k at
// ρ = the bound on ‖X̂_{k−1}‖_2 of the whole matrix (`global`, the propagation of [0, ‖X̂_0‖_2]).
using Trajectory = std::array<Interval, kSteps + 1>;
Trajectory propagate(const Interval& start, std::int64_t r, std::int64_t n, const Trajectory* global) {
  Trajectory t{};
  t[0] = start;
  for (int k = 1; k <= kSteps; ++k) {
    const double rho =
        global != nullptr ? (*global)[static_cast<std::size_t>(k - 1)].hi : t[static_cast<std::size_t>(k - 1)].hi;
    const NsCoefficients& c = coefficients(k);
    t[static_cast<std::size_t>(k)] = image(t[static_cast<std::size_t>(k - 1)], c, step_error(r, n, rho, c));
  }
  return t;
}

// The whole-matrix propagation from ‖X̂_0‖_2 ≤ ‖X̂_0‖_F ≤ 1 + normalise_error.
Trajectory global_trajectory(std::int64_t r, std::int64_t n) {
  return propagate({0.0, 1.0 + normalise_error(r, n)}, r, n, nullptr);
}

// (L): ‖X̂_10 − X_10‖_F ≤ Σ_k E_k Π_{j>k} L_j with E_0 = e0 (the start's error) and L_j the
// Lipschitz constant of step j on [0, ρ_{j−1}].
double forward_error(std::int64_t r, std::int64_t n, double e0) {
  const Trajectory g = global_trajectory(r, n);
  double err = e0;
  for (int k = 1; k <= kSteps; ++k) {
    const NsCoefficients& c = coefficients(k);
    const double rho = g[static_cast<std::size_t>(k - 1)].hi;
    err = lipschitz(rho, c) * err + step_error(r, n, rho, c);
  }
  return err;
}

// The class analysis at the largest generated shape (every slack grows with r and n, so it covers
// all shapes). X̂_0's singular values are within E0 of the measured s_i = σ_i(Y)/fl(‖Y‖_F + ε):
// one rounding per element (1.01u, ‖X_0‖_F ≤ 1) plus (S).
struct Analysis {
  double e0 = 1.01 * kU + kSvdErr;
  Trajectory global, good, tiny;
};
const Analysis& analysis() {
  static const Analysis a = [] {
    Analysis x;
    x.global = global_trajectory(kMaxDim, kMaxDim);
    x.good = propagate({kTauOk - x.e0, x.global[0].hi}, kMaxDim, kMaxDim, &x.global);
    x.tiny = propagate({0.0, kTauTiny + x.e0}, kMaxDim, kMaxDim, &x.global);
    return x;
  }();
  return a;
}

// ---------------------------------------------------------------------------------------------
// Generated matrices: Y = mag · U diag(σ) Vᵀ with U, V orthonormal (Householder QR of Philox
// Gaussian matrices), σ ∈ [10^−κ, 1] (κ = log10 of the condition number, up to 6) in one of three
// profiles, rank ≤ min(rows, cols), mag = m·10^e.
struct NsInput {
  Mat y;
  std::int64_t rank = 0;
};

Mat orthonormal_columns(std::int64_t rows, std::int64_t cols, std::uint64_t seed, const char* name) {
  const CounterRng rng(seed, stream_id(name));
  Mat g(rows, cols);
  for (std::int64_t i = 0; i < rows * cols; ++i) g.data()[i] = rng.normal(static_cast<std::uint64_t>(i));
  const Eigen::HouseholderQR<Mat> qr(g);
  return qr.householderQ() * Mat::Identity(rows, cols);
}

NsInput gen_input(std::int64_t max_dim, int log10_cond_max, int mag_lo, int mag_hi, bool full_rank) {
  const int kind = *rc::gen::inRange(0, 4);  // 0 square, 1 tall, 2 wide, 3 rank-deficient
  std::int64_t rows = *rc::gen::inRange<std::int64_t>(1, max_dim + 1);
  std::int64_t cols = rows;
  if (kind == 1 || kind == 2 || kind == 3) cols = *rc::gen::inRange<std::int64_t>(1, max_dim + 1);
  if (kind == 1 && cols > rows) std::swap(rows, cols);
  if (kind == 2 && cols < rows) std::swap(rows, cols);
  const std::int64_t k = std::min(rows, cols);
  const std::int64_t rank = (kind == 3 && !full_rank) ? *rc::gen::inRange<std::int64_t>(0, k) : k;
  const double log10_cond = *rc::gen::inRange(0, 100 * log10_cond_max + 1) / 100.0;
  const int profile = *rc::gen::inRange(0, 3);  // 0 geometric, 1 random log-uniform, 2 two clusters
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
  const int mag_exp = *rc::gen::inRange(mag_lo, mag_hi + 1);
  const double mag = (1.0 + *rc::gen::inRange(0, 1000) / 1000.0) * std::pow(10.0, mag_exp);

  const CounterRng rng(seed, stream_id("newton_schulz_props.sigma"));
  Vec sigma(rank);
  for (std::int64_t i = 0; i < rank; ++i) {
    double e = 0.0;  // σ_i = 10^−e, e ∈ [0, log10_cond]; σ_0 = 1 and σ_{rank−1} = 10^−log10_cond
    if (i == 0 || rank == 1) {
      e = 0.0;
    } else if (i == rank - 1) {
      e = log10_cond;
    } else if (profile == 0) {
      e = log10_cond * static_cast<double>(i) / static_cast<double>(rank - 1);
    } else if (profile == 1) {
      e = log10_cond * rng.uniform(static_cast<std::uint64_t>(i));
    } else {
      e = rng.uniform(static_cast<std::uint64_t>(i)) < 0.5 ? 0.0 : log10_cond;
    }
    sigma(i) = std::pow(10.0, -e);
  }
  NsInput in;
  in.rank = rank;
  if (rank == 0) {
    in.y = Mat::Zero(rows, cols);
    return in;
  }
  const Mat u = orthonormal_columns(rows, rank, seed, "newton_schulz_props.u");
  const Mat v = orthonormal_columns(cols, rank, seed, "newton_schulz_props.v");
  in.y = (u * sigma.asDiagonal() * v.transpose()) * mag;
  return in;
}

Vec singular_values(const Mat& m) { return Eigen::JacobiSVD<Mat>(m).singularValues(); }

std::int64_t count_in(const Vec& s, double lo, double hi) {
  std::int64_t n = 0;
  for (Eigen::Index i = 0; i < s.size(); ++i) n += (s(i) >= lo && s(i) <= hi) ? 1 : 0;
  return n;
}

using test::bit_equal;

// Measured extremes over the runs of this process (reported in the runner's message, README table).
struct Measured {
  double band8_lo = std::numeric_limits<double>::infinity();
  double band8_hi = 0.0;
  double dev10 = 0.0;         // max |σ − 1| after 10 steps, orthogonalised directions
  double tiny10 = 0.0;        // max σ after 10 steps of a tiny direction's count
  double ortho = 0.0;         // max ‖XXᵀ − I‖_2 of all-orthogonalised matrices
  double transpose_diff = 0;  // max ‖NS(Yᵀ) − NS(Y)ᵀ‖_F (square)
  double scale_diff = 0;      // max ‖NS_0(cY) − NS_0(Y)‖_F
  double muon_rms_lo = std::numeric_limits<double>::infinity(), muon_rms_hi = 0;  // RMS(O)/γ of Muon
  std::int64_t good_dirs = 0, tiny_dirs = 0;
};
Measured& measured() {
  static Measured m;
  return m;
}

// The normalised singular values s_i = σ_i(Y)/fl(‖Y‖_F + ε) and the class counts.
struct Classes {
  Vec s;
  std::int64_t good = 0, tiny = 0;
};
Classes classify(const Mat& y) {
  Classes c;
  const double denom = frobenius_norm(y) + kNsEps;
  c.s = singular_values(y) / denom;
  for (Eigen::Index i = 0; i < c.s.size(); ++i) {
    c.good += c.s(i) >= kTauOk ? 1 : 0;
    c.tiny += c.s(i) <= kTauTiny ? 1 : 0;
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// The constants above are what the scalar maps and the slacks give (README §Newton–Schulz):
//   band after 8 steps = [p_agg(1.0501), p_agg(0.5545)] (the critical values of p_agg; the
//   interval is invariant under p_agg since it contains both critical points), reached by every
//   normalised σ ≥ kTauOk (3.68e-5 with zero slack: p_agg^8 raises σ by at most 3.4445^8 ≈ 19,800);
//   after the stabilising steps: p_stab²([0.6818, 1.2024]) = [1, 1.0020173];
//   failure: σ ≤ kTauTiny stays ≤ 1 − δ (hand bound (1 − δ)/(4·3.4445^8) = 6.3e-6, since
//   p_agg(σ) ≤ 3.4445σ and p_stab(σ) ≤ 2σ below 1.5).
void derived_bands() {
  const Analysis& a = analysis();
  RC_ASSERT(a.good[8].lo >= kBand8Lo - 1e-9);
  RC_ASSERT(a.good[8].hi <= kBand8Hi);
  RC_ASSERT(a.good[10].lo >= kBand10Lo);
  RC_ASSERT(a.good[10].hi <= kBand10Hi);
  RC_ASSERT(a.global[10].hi <= kBand10Hi);
  RC_ASSERT(a.tiny[10].hi <= 1.0 - kDelta);
  // The thresholds are derived, not slack: 10% below kTauOk the band is not reached after 8 steps
  // (by the scalar map alone), and 20% above kTauTiny the scalar map exceeds 1 − δ.
  double s = kTauOk * 0.9;
  for (int k = 1; k <= kNsAggressiveSteps; ++k) s = newton_schulz_scalar_step(s, coefficients(k));
  RC_ASSERT(s < kBand8Lo);
  s = kTauTiny * 1.2;
  for (int k = 1; k <= kSteps; ++k) s = newton_schulz_scalar_step(s, coefficients(k));
  RC_ASSERT(s > 1.0 - kDelta);
  RC_ASSERT((1.0 - kDelta) / (4.0 * std::pow(kNsAggressive.a, 8)) <= kTauTiny);
  // The band is the invariant interval of p_agg: its critical values, each attained inside it.
  const std::vector<double> cp = critical_points(kNsAggressive);
  RC_ASSERT(cp.size() == 2u);
  RC_ASSERT(std::fabs(newton_schulz_scalar_step(cp[1], kNsAggressive) - kBand8Lo) < 1e-7);
  RC_ASSERT(std::fabs(newton_schulz_scalar_step(cp[0], kNsAggressive) - kBand8Hi) < 1e-7);
}

// A diagonal input runs the scalar iteration on each diagonal entry, bit for bit (one non-zero
// product per Gram entry; the step order of newton_schulz.hpp is the scalar step's order).
void diagonal_is_scalar() {
  const std::int64_t rows = *rc::gen::inRange<std::int64_t>(1, 12);
  const std::int64_t cols = *rc::gen::inRange<std::int64_t>(1, 12);
  const std::int64_t k = std::min(rows, cols);
  Mat y = Mat::Zero(rows, cols);
  for (std::int64_t i = 0; i < k; ++i) {
    const double m = 1.0 + *rc::gen::inRange(0, 1 << 20) / static_cast<double>(1 << 20);
    y(i, i) = (*rc::gen::arbitrary<bool>() ? -m : m) * std::pow(10.0, *rc::gen::inRange(-12, 13));
  }
  const double eps = *rc::gen::element(kNsEps, 0.0);
  const NewtonSchulzPhases ph = hybrid_newton_schulz_phases(y, eps);
  const double denom = frobenius_norm(y) + eps;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      if (r != c) {
        RC_ASSERT(ph.result(r, c) == 0.0);
        continue;
      }
      double s = y(r, c) / denom;
      for (int step = 1; step <= kSteps; ++step) {
        s = newton_schulz_scalar_step(s, coefficients(step));
        if (step == kNsAggressiveSteps) RC_ASSERT(double_bits(ph.after_aggressive(r, c)) == double_bits(s));
      }
      RC_ASSERT(double_bits(ph.result(r, c)) == double_bits(s));
    }
  }
}

// Bands (W): ≥ #good singular values of X̂_8 in the aggressive band and of X̂_10 within the
// stabilised |σ − 1| bound, ≥ #tiny of X̂_10 below 1 − δ, every one of X̂_10 below the global bound.
void bands(bool stage8, bool stage10, bool tiny) {
  const NsInput in = gen_input(kMaxDim, 6, -40, 40, false);
  const Classes cl = classify(in.y);
  const NewtonSchulzPhases ph = hybrid_newton_schulz_phases(in.y);
  const Analysis& a = analysis();
  Measured& m = measured();
  if (stage8) {
    const Vec s8 = singular_values(ph.after_aggressive);
    RC_ASSERT(count_in(s8, a.good[8].lo - kSvdErr, a.good[8].hi + kSvdErr) >= cl.good);
    RC_ASSERT(s8.maxCoeff() <= a.global[8].hi + kSvdErr);
    if (cl.good == cl.s.size() && cl.good > 0) {
      m.band8_lo = std::min(m.band8_lo, s8.minCoeff());
      m.band8_hi = std::max(m.band8_hi, s8.maxCoeff());
    }
  }
  if (stage10 || tiny) {
    const Vec s10 = singular_values(ph.result);
    if (stage10) {
      RC_ASSERT(count_in(s10, a.good[10].lo - kSvdErr, a.good[10].hi + kSvdErr) >= cl.good);
      RC_ASSERT(s10.maxCoeff() <= a.global[10].hi + kSvdErr);
      m.good_dirs += cl.good;
      if (cl.good == cl.s.size() && cl.good > 0) {
        m.dev10 = std::max({m.dev10, s10.maxCoeff() - 1.0, 1.0 - s10.minCoeff()});
      }
    }
    if (tiny) {
      RC_ASSERT(count_in(s10, 0.0, a.tiny[10].hi + kSvdErr) >= cl.tiny);
      RC_ASSERT(a.tiny[10].hi <= 1.0 - kDelta);
      m.tiny_dirs += cl.tiny;
      if (cl.tiny == cl.s.size() && cl.tiny > 0) m.tiny10 = std::max(m.tiny10, s10.maxCoeff());
    }
  }
}

// Orthogonality of an all-orthogonalised matrix (condition ≤ 10^3, ‖Y‖ ≫ ε, so every normalised
// σ ≥ 10^−3/√32 > kTauOk): the smaller Gram G = XXᵀ (wide orientation) has eigenvalues σ_i² with
// σ_i ∈ [kBand10Lo, kBand10Hi] ± kSvdErr, so ‖G − I‖_2 ≤ kBand10Hi² − 1 + slack; the slack covers
// computing G in double (γ_n ‖X‖_F² ≤ γ_n r·1.01) and the eigen solver (S).
void orthogonality() {
  const NsInput in = gen_input(kMaxDim, 3, -4, 40, true);
  const Classes cl = classify(in.y);
  RC_PRE(cl.good == cl.s.size());
  const Mat x = hybrid_newton_schulz(in.y);
  const Mat w = x.rows() <= x.cols() ? x : Mat(x.transpose());
  const Mat g = w * w.transpose() - Mat::Identity(w.rows(), w.rows());
  const Vec ev = Eigen::SelfAdjointEigenSolver<Mat>(g).eigenvalues();
  const double err = std::max(std::fabs(ev.minCoeff()), std::fabs(ev.maxCoeff()));
  const double hi = analysis().good[10].hi + kSvdErr;
  const double lo = analysis().good[10].lo - kSvdErr;
  const double bound = std::max(hi * hi - 1.0, 1.0 - lo * lo) +
                       gamma(static_cast<double>(w.cols())) * static_cast<double>(w.rows()) * 1.01 + kSvdErr;
  RC_ASSERT(err <= bound);
  measured().ortho = std::max(measured().ortho, err);
}

// Muon's update RMS (issue 16 item 8, ref/train/muon.hpp): O = X̂_10·s with s = fl(fl(√max(n, m))·γ),
// and ‖X̂_10‖_F² = Σ σ_i² over its min(n, m) singular values, so RMS(O)/γ = √(mean σ_i²) up to the
// roundings of O (2u + u), of the sum of squares (γ_N, N = nm) and of the square root and division
// (3u): for a matrix whose every direction is orthogonalised (as orthogonality), RMS(O)/γ lies in the
// stabilised band [kBand10Lo, kBand10Hi] widened by that relative slack. No SVD error enters.
void muon_update_rms() {
  const NsInput in = gen_input(kMaxDim, 3, -4, 40, true);
  const Classes cl = classify(in.y);
  RC_PRE(cl.good == cl.s.size());
  const MuonConfig cfg;
  const Mat o = muon_direction(in.y, cfg);
  const double n = static_cast<double>(o.size());
  const double r = std::sqrt(o.squaredNorm() / n) / cfg.rms;
  const double slack = gamma(n + 6.0);
  RC_ASSERT(r >= analysis().good[10].lo * (1.0 - slack));
  RC_ASSERT(r <= analysis().good[10].hi * (1.0 + slack));
  measured().muon_rms_lo = std::min(measured().muon_rms_lo, r);
  measured().muon_rms_hi = std::max(measured().muon_rms_hi, r);
}

// NS(Yᵀ) = NS(Y)ᵀ: bit for bit for non-square Y (both iterate the same wide matrix); for square Y
// (no transposition, the norm summed in another order) within 2× the forward error (L) of two runs
// whose starts both lie within normalise_error of X_0.
void transpose_symmetry() {
  const NsInput in = gen_input(kMaxDim, 6, -40, 40, false);
  RC_PRE(in.rank > 0);
  const Mat a = hybrid_newton_schulz(Mat(in.y.transpose()));
  const Mat b = Mat(hybrid_newton_schulz(in.y).transpose());
  if (in.y.rows() != in.y.cols()) {
    RC_ASSERT(bit_equal(a, b));
    return;
  }
  const std::int64_t r = in.y.rows();
  const double diff = (a - b).norm();
  RC_ASSERT(diff <= 2.0 * forward_error(r, r, normalise_error(r, r)));
  measured().transpose_diff = std::max(measured().transpose_diff, diff);
}

// Positive scaling. Powers of two commute with every rounding: NS_ε(2^k Y) = NS_{ε·2^−k}(Y) and
// NS_0(2^k Y) = NS_0(Y) bit for bit. Any c > 0 with ε = 0: fl(cY) is within u‖cY‖_F of cY, which
// moves the normalised start by ≤ 2u, so the two results are within 2× the forward error (L) of
// starts within normalise_error + 2u of X_0. (With ε > 0, NS_ε(cY) = NS_{ε/c}(Y): scaling the input
// down is raising ε — the failure regime of newton_schulz.tiny_not_orthogonalised.)
void scaling_invariance() {
  const NsInput in = gen_input(kMaxDim, 6, -30, 30, false);
  RC_PRE(in.rank > 0);
  const int k = *rc::gen::inRange(-60, 61);
  const Mat y2 = in.y * std::ldexp(1.0, k);
  RC_ASSERT(bit_equal(hybrid_newton_schulz(y2, 0.0), hybrid_newton_schulz(in.y, 0.0)));
  RC_ASSERT(bit_equal(hybrid_newton_schulz(y2), hybrid_newton_schulz(in.y, std::ldexp(kNsEps, -k))));
  const double c = std::pow(10.0, *rc::gen::inRange(-2000, 2001) / 100.0);
  const Mat yc = in.y * c;
  const double diff = (hybrid_newton_schulz(yc, 0.0) - hybrid_newton_schulz(in.y, 0.0)).norm();
  const std::int64_t r = std::min(in.y.rows(), in.y.cols()), n = std::max(in.y.rows(), in.y.cols());
  RC_ASSERT(diff <= 2.0 * forward_error(r, n, normalise_error(r, n) + 2.0 * kU));
  measured().scale_diff = std::max(measured().scale_diff, diff);
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", v);
  return buf;
}

// The run function of a property that appends what it measured (summary()) to a passing result.
template <typename F, typename S>
RunFunction reporting(const std::string& id, F f, S summary) {
  return [id, f, summary](const RunConfig& cfg) {
    measured() = Measured{};
    RunResult r = run_rapidcheck(rc::detail::toProperty(f), id, cfg);
    if (r.passed) r.message += "; " + summary(measured());
    return r;
  };
}

std::string derived_summary(const Measured&) {
  const Analysis& a = analysis();
  return "derived at 32x32: tau_ok " + fmt(kTauOk) + " -> band8 [" + fmt(a.good[8].lo) + ", " + fmt(a.good[8].hi) +
         "] -> band10 [" + fmt(a.good[10].lo) + ", " + fmt(a.good[10].hi) + "]; tau_tiny " + fmt(kTauTiny) +
         " -> s10 <= " + fmt(a.tiny[10].hi) + "; global s10 <= " + fmt(a.global[10].hi) + "; step error E_1 " +
         fmt(step_error(kMaxDim, kMaxDim, 1.0, kNsAggressive)) + ", forward error " +
         fmt(forward_error(kMaxDim, kMaxDim, normalise_error(kMaxDim, kMaxDim)));
}

}  // namespace

void register_newton_schulz_properties(Registry& r) {
  r.add({"newton_schulz.derived_bands",
         "newton_schulz",
         "the thresholds and bands of properties/README.md follow from the scalar maps and rounding slacks",
         1,
         reporting("newton_schulz.derived_bands", derived_bands, derived_summary),
         {}});
  r.add_rc("newton_schulz.diagonal_is_scalar", "newton_schulz",
           "a diagonal input runs the scalar polynomial iteration on each entry, bit for bit", 100, diagonal_is_scalar);
  r.add({"newton_schulz.aggressive_band",
         "newton_schulz",
         "after the 8 aggressive steps every direction with normalised sigma >= 3.7e-5 lies in [0.6818, 1.2024]",
         100,
         reporting(
             "newton_schulz.aggressive_band", [] { bands(true, false, false); },
             [](const Measured& m) {
               return "measured band8 of all-orthogonalised matrices [" + fmt(m.band8_lo) + ", " + fmt(m.band8_hi) +
                      "]";
             }),
         {}});
  r.add({"newton_schulz.stabilised_bound",
         "newton_schulz",
         "after the 2 stabilising steps those directions satisfy |sigma - 1| <= 2.02e-3 (sigma in [1, 1.0020174])",
         100,
         reporting(
             "newton_schulz.stabilised_bound", [] { bands(false, true, false); },
             [](const Measured& m) {
               return "measured max|s10 - 1| of all-orthogonalised matrices " + fmt(m.dev10) + " over " +
                      std::to_string(m.good_dirs) + " orthogonalised directions";
             }),
         {}});
  r.add({"newton_schulz.tiny_not_orthogonalised",
         "newton_schulz",
         "failure regime: a normalised sigma <= 6.7e-6 ends below 1 - delta = 0.5 (not orthogonalised)",
         100,
         reporting(
             "newton_schulz.tiny_not_orthogonalised", [] { bands(false, false, true); },
             [](const Measured& m) {
               return "measured max s10 of all-tiny matrices " + fmt(m.tiny10) + " over " +
                      std::to_string(m.tiny_dirs) + " tiny directions";
             }),
         {}});
  r.add({"newton_schulz.orthogonality",
         "newton_schulz",
         "||XX^T - I||_2 <= 4.04e-3 for matrices whose every direction is orthogonalised",
         100,
         reporting("newton_schulz.orthogonality", orthogonality,
                   [](const Measured& m) { return "measured max ||XX^T - I||_2 " + fmt(m.ortho); }),
         {}});
  r.add({"newton_schulz.muon_update_rms",
         "newton_schulz",
         "Muon's update O = NS(Y)*sqrt(max(n,m))*0.18 has RMS 0.18*[1 - 1e-9, 1.0020174] when every direction is "
         "orthogonalised",
         100,
         reporting("newton_schulz.muon_update_rms", muon_update_rms,
                   [](const Measured& m) {
                     return "measured RMS(O)/0.18 in [" + fmt(m.muon_rms_lo) + ", " + fmt(m.muon_rms_hi) + "]";
                   }),
         {}});
  r.add({"newton_schulz.transpose_symmetry",
         "newton_schulz",
         "NS(Y^T) = NS(Y)^T: bit for bit when non-square, within the derived forward error when square",
         100,
         reporting("newton_schulz.transpose_symmetry", transpose_symmetry,
                   [](const Measured& m) {
                     return "measured max ||NS(Y^T) - NS(Y)^T||_F (square) " + fmt(m.transpose_diff);
                   }),
         {}});
  r.add({"newton_schulz.scaling_invariance",
         "newton_schulz",
         "NS(cY) = NS(Y) for c > 0: bit for bit for powers of two, within the forward error otherwise",
         100,
         reporting("newton_schulz.scaling_invariance", scaling_invariance,
                   [](const Measured& m) { return "measured max ||NS_0(cY) - NS_0(Y)||_F " + fmt(m.scale_diff); }),
         {}});
}

}  // namespace dsv4::props
