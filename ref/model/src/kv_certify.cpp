// spec 02 §2.5 step 4 (window KV FP8 simulation); ref/README.md §Precision design: certification of
// the exact-mode quantisation decisions by a derived error bound, Mp50 re-decision otherwise.
//
// ---- Derivation of the bound (u = 2^-53, γ_n = n·u / (1 − n·u), Higham, Accuracy and Stability
// of Numerical Algorithms, §3.1; Lemma 3.1: ∏ (1 + δ_i)^{±1} over m factors, |δ_i| ≤ u, is 1 + θ_m
// with |θ_m| ≤ γ_m; Lemma 3.3: γ_j + γ_k + γ_j γ_k ≤ γ_{j+k}) ----
//
// 1. Linear, ŷ_j = s_K with s_{k+1} = fl(s_k + fl(x_k w_jk)) (numerics/gemm.hpp, no FMA):
//    |ŷ_j − y_j| ≤ γ_K Σ_k |x_k w_jk| + K·2^-1075 (the last term: a product that underflows has an
//    absolute error ≤ 2^-1075; an addition that underflows is exact). Σ|x w| is computed by the same
//    GEMM on |x|, |w| (nonnegative terms): Â ≥ (1 − γ_K) Σ|x w| − K·2^-1075, so
//    |ŷ_j − y_j| ≤ γ_K/(1 − γ_K) · Â + (2K + 1)·2^-1075, and γ_K/(1 − γ_K) = Ku/(1 − 2Ku) ≤ γ_{K+2}
//    for K < 2^26. We use e_j = γ_{K+2} Â (1 + 4γ_{K+2}) + (2K + 2)·2^-1074: the factor 1 + 4γ
//    covers the three roundings of evaluating the bound itself.
//
// 2. RMSNorm over the row (n = c columns, weight ω, eps ε ≥ 2^-900), exact o_i = ω_i y_i R(y),
//    R(y) = (‖y‖²/n + ε)^{-1/2}; exact-mode dsv4::rmsnorm computes
//    Ŝ = Σ fl(ŷ_i²) sequentially, m̂ = fl(Ŝ·fl(1/n)), d̂ = fl(m̂ + ε), r̂ = fl(1/fl(√d̂)),
//    ô_i = fl(ω_i · fl(ŷ_i · r̂)). Split |ô_i − o_i| ≤ |ô_i − ω_i f_i(ŷ)| + |ω_i|·|f_i(ŷ) − f_i(y)|
//    with f(y) = y R(y).
//    (a) evaluation rounding at ŷ: nonnegative terms give Ŝ = S(1 + θ_n); ×fl(1/n) and its
//        rounding: θ_{n+2}; + ε (ε > 0 exact): d̂ = d(1 + θ_{n+3}) (squares that underflow add at
//        most n·2^-1075 / ε ≤ n·2^-175 relative — inside the slack below). (1 + θ)^{-1/2} ∈
//        [1 − γ, 1 + γ] for γ ≤ 1/2, and √, 1/ add two roundings: r̂ = R(ŷ)(1 + θ_{n+5}); the two
//        products add two more: ô_i = ω_i ŷ_i R(ŷ)(1 + θ_{n+7}). We use γ_{n+9}·|ω_i ŷ_i| R_max
//        (R(ŷ) ≤ R_max below; two units of slack for the underflow terms).
//    (b) propagated input error, |ŷ − y| ≤ e componentwise. f_i is smooth (ε > 0); the mean value
//        theorem on the segment ξ = y + t(ŷ − y) gives f_i(ŷ) − f_i(y) = ∇f_i(ξ)·Δ, Δ = ŷ − y, and
//        ∇f_i(ξ)·Δ = R(ξ) Δ_i − ξ_i R(ξ)³ (ξ·Δ)/n. With |ξ_j| ≤ |ŷ_j| + e_j, ‖ξ‖ ≥ ‖ŷ‖ − ‖e‖:
//          |f_i(ŷ) − f_i(y)| ≤ R_max e_i + R_max³ (|ŷ_i| + e_i) P / n,
//          P = Σ_j (|ŷ_j| + e_j) e_j,   R_max = (max(0, ‖ŷ‖ − ‖e‖)²/n + ε)^{-1/2}.
//        (The Jacobian R(I − R² y yᵀ/n) has norm ≤ R: the bound is of the size R·e, not worse.)
//    Every quantity of the bound is evaluated in double rounded the safe way: ‖ŷ‖ is scaled by
//    (1 − γ_{n+2}), ‖e‖ by (1 + γ_{n+2}), L²/n by (1 − γ_{n+2}), R_max by (1 + γ_{n+2})(1 + γ_8) —
//    each factor exceeds the accumulated roundings of what it scales — and the final sum by
//    1 + γ_{2n+32}, plus 2^-1060 (1 + |ω_i|) for underflow in ŷ_i·r̂ and ω_i·z_i.
//
// 3. RoPE rotates the last r_d dims only (rope.hpp): the quantised dims [0, c − r_d) are the
//    RMSNorm output itself, so their bound has no RoPE term.
//
// 4. Decisions. Block scale: k(a) = the smallest k with max(a, floor) ≤ 448·2^k is monotone in a;
//    the true amax lies in [max_j(|v̂_j| − B_j), max_j(|v̂_j| + B_j)] (ends rounded outwards), so the
//    scale is certified when both ends give the same k. Element: with the scale certified, the true
//    v/2^k lies in [(v̂ − B)/2^k, (v̂ + B)/2^k] (outwards); clamp and RNE to the e4m3 grid are
//    monotone, so the decision is certified when both ends round to the same grid value. This is
//    exactly "margin (distance to the boundary) > bound" in value units.
#include "dsv4/model/kv_certify.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/gemm.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Grid {
  const MinifloatFormat* format;
  double qmax;
  double floor;
  std::vector<double> values;  // nonnegative finite values, ascending; index = code (even index = even mantissa)
};

const Grid& grid(BlockQuant kind) {
  static const Grid fp8 = [] {
    Grid g{&kFormatE4M3, 448.0, static_cast<double>(kActQuantAmaxFloor), {}};
    for (std::uint32_t code = 0; code <= 0x7E; ++code) g.values.push_back(decode_minifloat(kFormatE4M3, code));
    return g;
  }();
  static const Grid fp4 = [] {
    Grid g{&kFormatE2M1, static_cast<double>(kFp4Max), static_cast<double>(kFp4AmaxFloor), {}};
    for (std::uint32_t code = 0; code <= 0x7; ++code) g.values.push_back(decode_minifloat(kFormatE2M1, code));
    return g;
  }();
  return kind == BlockQuant::kFp8Ue8m0 ? fp8 : fp4;
}

// The smallest k with a ≤ qmax·2^k (a > 0; qmax·2^k is exact in double).
int pow2_exponent(double a, double qmax) {
  int e = 0;
  (void)std::frexp(a / qmax, &e);
  int k = e;
  while (a <= std::ldexp(qmax, k - 1)) --k;
  while (a > std::ldexp(qmax, k)) ++k;
  return k;
}

// clamp to ±qmax and RNE to the grid (the double quantiser's element decision).
double round_grid(const Grid& g, double v) {
  const double c = std::min(std::max(v, -g.qmax), g.qmax);
  return decode_minifloat(*g.format, encode_minifloat(*g.format, c, Overflow::kSaturateFinite));
}

// RNE of an Mp50 value |v| ≤ qmax to the grid, decided in Mp50 (midpoints are exact).
double round_grid_mp50(const Grid& grid_, const Mp50& v) {
  const std::vector<double>& g = grid_.values;
  const Mp50 a = abs(v);
  const auto it = std::upper_bound(g.begin(), g.end(), a, [](const Mp50& val, double gv) { return val < Mp50(gv); });
  const std::size_t i = static_cast<std::size_t>(it - g.begin()) - 1;  // g[i] ≤ a (g[0] = 0)
  double r = g.back();
  if (i + 1 < g.size()) {
    const Mp50 mid = (Mp50(g[i]) + Mp50(g[i + 1])) / 2;
    if (a < mid) {
      r = g[i];
    } else if (a > mid) {
      r = g[i + 1];
    } else {
      r = (i % 2 == 0) ? g[i] : g[i + 1];
    }
  }
  return v < 0 ? -r : r;
}

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("certify_fp8_kv: " + what); }

}  // namespace

Mat linear_error_bound(const Mat& x, const Mat& w) {
  if (x.cols() != w.cols()) bad("linear_error_bound: inner dimensions differ");
  const std::int64_t M = x.rows(), N = w.rows(), K = x.cols();
  Mat a(M, N);
  gemm_nt(M, N, K, x.data(), K, w.data(), K, a.data(), N, 0, /*abs_operands=*/true);
  const double g = gamma_n(static_cast<std::size_t>(K) + 2);
  const double tiny = std::ldexp(static_cast<double>(2 * K + 2), -1074);
  for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = g * a.data()[i] * (1.0 + 4.0 * g) + tiny;
  return a;
}

Mat rmsnorm_error_bound(const Mat& y_hat, const Mat& e_y, const Vec& weight, double eps, std::int64_t cols) {
  const std::int64_t n = y_hat.cols();
  if (e_y.rows() != y_hat.rows() || e_y.cols() != n || weight.size() != n || cols < 0 || cols > n) {
    bad("rmsnorm_error_bound: shape mismatch");
  }
  Mat b(y_hat.rows(), cols);
  if (!(eps >= 0x1.0p-900) || !std::isfinite(eps)) {  // outside the derivation's assumptions
    b.setConstant(kInf);
    return b;
  }
  const auto nn = static_cast<std::size_t>(n);
  const double gs = gamma_n(nn + 2);
  const double gr = gamma_n(nn + 9);
  const double inflate = 1.0 + gamma_n(2 * nn + 32);
  const double dn = static_cast<double>(n);
  for (Eigen::Index r = 0; r < y_hat.rows(); ++r) {
    double ss = 0.0, ee = 0.0, P = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      const double y = std::fabs(y_hat(r, j)), e = e_y(r, j);
      ss += y * y;
      ee += e * e;
      P += (y + e) * e;
    }
    double L = std::sqrt(ss) * (1.0 - gs) - std::sqrt(ee) * (1.0 + gs);
    if (!(L > 0.0)) L = 0.0;
    const double r_max = 1.0 / std::sqrt(L * L / dn * (1.0 - gs) + eps) * (1.0 + gs) * (1.0 + gamma_n(8));
    const double r3 = r_max * r_max * r_max;
    for (std::int64_t i = 0; i < cols; ++i) {
      const double om = std::fabs(weight(i)), y = std::fabs(y_hat(r, i)), e = e_y(r, i);
      const double rounding = gr * om * y * r_max;
      const double propagated = om * (r_max * e + r3 * (y + e) * P / dn);
      double bound = (rounding + propagated) * inflate + 0x1.0p-1060 * (1.0 + om);
      if (!std::isfinite(bound)) bound = kInf;
      b(r, i) = bound;
    }
  }
  return b;
}

std::vector<Mp50> linear_rmsnorm_row_mp50(const Mat& x, std::int64_t row, const Mat& w, const Vec& weight, double eps,
                                          std::int64_t cols) {
  const std::int64_t n = w.rows(), K = w.cols();
  if (x.cols() != K || weight.size() != n || row < 0 || row >= x.rows() || cols < 0 || cols > n) {
    bad("linear_rmsnorm_row_mp50: shape mismatch");
  }
  std::vector<Mp50> xr(static_cast<std::size_t>(K));
  for (std::int64_t k = 0; k < K; ++k) xr[static_cast<std::size_t>(k)] = Mp50(x(row, k));
  std::vector<Mp50> y(static_cast<std::size_t>(n));
  Mp50 ss = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    Mp50 acc = 0;
    for (std::int64_t k = 0; k < K; ++k) acc += xr[static_cast<std::size_t>(k)] * Mp50(w(j, k));
    y[static_cast<std::size_t>(j)] = acc;
    ss += acc * acc;
  }
  const Mp50 rinv = Mp50(1) / sqrt(ss / Mp50(n) + Mp50(eps));
  std::vector<Mp50> o(static_cast<std::size_t>(cols));
  for (std::int64_t j = 0; j < cols; ++j) {
    o[static_cast<std::size_t>(j)] = Mp50(weight(j)) * y[static_cast<std::size_t>(j)] * rinv;
  }
  return o;
}

std::vector<double> block_quant_mp50(std::span<const Mp50> v, BlockQuant kind) {
  const Grid& g = grid(kind);
  Mp50 a = Mp50(g.floor);
  for (const Mp50& e : v) a = std::max(a, Mp50(abs(e)));
  int k = pow2_exponent(static_cast<double>(a), g.qmax);  // then exact comparisons in Mp50
  while (a <= Mp50(std::ldexp(g.qmax, k - 1))) --k;
  while (a > Mp50(std::ldexp(g.qmax, k))) ++k;
  const Mp50 s = Mp50(std::ldexp(1.0, k));
  std::vector<double> q;
  q.reserve(v.size());
  for (const Mp50& e : v) {
    Mp50 t = e / s;  // exact: a power of two
    if (t > Mp50(g.qmax)) t = Mp50(g.qmax);
    if (t < Mp50(-g.qmax)) t = Mp50(-g.qmax);
    q.push_back(std::ldexp(round_grid_mp50(g, t), k));
  }
  return q;
}

std::vector<double> fp8_ue8m0_block_mp50(std::span<const Mp50> v) { return block_quant_mp50(v, BlockQuant::kFp8Ue8m0); }

std::vector<char> block_decisions_certified(std::span<const double> v, std::span<const double> bound, int block,
                                            BlockQuant kind) {
  const std::int64_t n = static_cast<std::int64_t>(v.size());
  if (block <= 0 || n % block != 0 || bound.size() != v.size()) bad("block_decisions_certified: shape mismatch");
  const Grid& g = grid(kind);
  std::vector<char> ok(v.size(), 0);
  for (std::int64_t b0 = 0; b0 < n; b0 += block) {
    double lo_amax = 0.0, hi_amax = 0.0;
    for (std::int64_t j = b0; j < b0 + block; ++j) {
      const double a = std::fabs(v[static_cast<std::size_t>(j)]), e = bound[static_cast<std::size_t>(j)];
      lo_amax = std::max(lo_amax, std::nextafter(a - e, -kInf));
      hi_amax = std::max(hi_amax, std::nextafter(a + e, kInf));
    }
    const int k_lo = pow2_exponent(std::max(lo_amax, g.floor), g.qmax);
    const bool scale_ok = std::isfinite(hi_amax) && k_lo == pow2_exponent(std::max(hi_amax, g.floor), g.qmax);
    const double sc = std::ldexp(1.0, k_lo);
    for (std::int64_t j = b0; j < b0 + block; ++j) {
      bool good = scale_ok;
      if (good) {
        const double x = v[static_cast<std::size_t>(j)], e = bound[static_cast<std::size_t>(j)];
        const double lo = std::nextafter(std::nextafter(x - e, -kInf) / sc, -kInf);
        const double hi = std::nextafter(std::nextafter(x + e, kInf) / sc, kInf);
        good = round_grid(g, lo) == round_grid(g, hi);
      }
      ok[static_cast<std::size_t>(j)] = good ? 1 : 0;
    }
  }
  return ok;
}

DecisionStats certify_fp8_kv(const Precision& p, const Mat& x, const Mat& w, const Vec& weight, double eps,
                             const Mat& y_hat, const Mat& unquantised, std::int64_t cols, int block, Mat& quantised) {
  const std::int64_t s = x.rows();
  if (block <= 0 || cols <= 0 || cols % block != 0) bad("cols must be a positive multiple of the block");
  if (w.cols() != x.cols() || y_hat.rows() != s || y_hat.cols() != w.rows() || unquantised.rows() != s ||
      quantised.rows() != s || unquantised.cols() < cols || quantised.cols() < cols || cols > w.rows()) {
    bad("shape mismatch");
  }
  Mat bound;  // derivation steps 1–3, computed on the first row asked for
  const RowCertifier certificate = [&](std::int64_t r) {
    if (bound.size() == 0) bound = rmsnorm_error_bound(y_hat, linear_error_bound(x, w), weight, eps, cols);
    RowCertificate c;
    c.value.assign(unquantised.row(r).data(), unquantised.row(r).data() + cols);
    c.bound.assign(bound.row(r).data(), bound.row(r).data() + cols);
    return c;
  };
  const RowMp50 mp50 = [&](std::int64_t r) { return linear_rmsnorm_row_mp50(x, r, w, weight, eps, cols); };
  return p.certify_quantised(s, block, BlockQuant::kFp8Ue8m0, certificate, mp50, quantised, "certify_fp8_kv");
}

DecisionStats certify_fp8_kv(const Mat& x, const Mat& w, const Vec& weight, double eps, const Mat& y_hat,
                             const Mat& unquantised, std::int64_t cols, int block, Mat& quantised) {
  return certify_fp8_kv(Precision(Mode::kExact), x, w, weight, eps, y_hat, unquantised, cols, block, quantised);
}

}  // namespace dsv4
