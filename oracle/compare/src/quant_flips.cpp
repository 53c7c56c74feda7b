// Near-boundary rounding flips of a simulated-quantised output (quant_flips.hpp).
#include "dsv4/compare/quant_flips.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "dsv4/compare/number_text.hpp"
#include "dsv4/compare/ulp.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4::compare {
namespace {

// The quantiser's element format, its qmax and amax floor (ref/numerics quant_margin.cpp), and the
// sorted signed grid of its finite codes (±0 merged).
struct Quantiser {
  const MinifloatFormat* format = nullptr;
  double qmax = 0.0;
  double floor = 0.0;
  std::vector<double> grid;
};

Quantiser make_quantiser(BlockQuant kind) {
  Quantiser q;
  q.format = &block_quant_format(kind);
  q.qmax = kind == BlockQuant::kFp8Ue8m0 ? kFp8Max : kFp4Max;
  q.floor = kind == BlockQuant::kFp8Ue8m0 ? kActQuantAmaxFloor : kFp4AmaxFloor;
  const std::uint32_t n = 1u << (1 + q.format->exponent_bits + q.format->mantissa_bits);
  for (std::uint32_t c = 0; c < n; ++c) {
    const double v = decode_minifloat(*q.format, c);
    if (std::isfinite(v) && std::abs(v) <= q.qmax) q.grid.push_back(v == 0.0 ? 0.0 : v);
  }
  std::sort(q.grid.begin(), q.grid.end());
  q.grid.erase(std::unique(q.grid.begin(), q.grid.end()), q.grid.end());
  return q;
}

const Quantiser& quantiser(BlockQuant kind) {
  static const Quantiser fp8 = make_quantiser(BlockQuant::kFp8Ue8m0);
  static const Quantiser fp4 = make_quantiser(BlockQuant::kFp4);
  return kind == BlockQuant::kFp8Ue8m0 ? fp8 : fp4;
}

// The exact scale decision (block_quant_exact_inplace): the smallest k with
// max(amax, floor) ≤ qmax · 2^k.
int scale_exponent(const Quantiser& q, double amax) {
  const double a = std::max(amax, q.floor);
  int e = 0;
  (void)std::frexp(a / q.qmax, &e);
  int k = e;
  while (a <= std::ldexp(q.qmax, k - 1)) --k;
  while (a > std::ldexp(q.qmax, k)) ++k;
  return k;
}

// The code of v: clamp to ±qmax, round to nearest even on the grid.
double code_of(const Quantiser& q, double v) {
  const double c = std::min(std::max(v, -q.qmax), q.qmax);
  const double r = decode_minifloat(*q.format, encode_minifloat(*q.format, c, Overflow::kSaturateFinite));
  return r == 0.0 ? 0.0 : r;
}

// Position of v on the grid, or −1 when v is not a code.
std::int64_t grid_index(const Quantiser& q, double v) {
  if (!std::isfinite(v)) return -1;
  const auto it = std::lower_bound(q.grid.begin(), q.grid.end(), v);
  if (it == q.grid.end() || *it != v) return -1;
  return it - q.grid.begin();
}

enum class Fit { kNo, kSame, kOneStep };

// Candidate value c at scale s against the reference code `ref` (x_e's code at s): the same code,
// one grid step from it with the rounding boundary between the two within τ of x, or neither.
Fit fit(const Quantiser& q, double c, double ref, double x, double s, double tau, double& slack) {
  const double cc = c / s;  // s is a power of two: exact
  const std::int64_t ic = grid_index(q, cc), ir = grid_index(q, ref);
  if (ic < 0 || ir < 0) return Fit::kNo;
  if (ic == ir) return Fit::kSame;
  if (std::abs(ic - ir) != 1) return Fit::kNo;
  const double distance = std::abs(x - 0.5 * (cc + ref) * s);
  if (distance > tau) return Fit::kNo;
  slack = tau - distance;
  return Fit::kOneStep;
}

void check_layout(std::size_t n, const QuantisedLayout& l) {
  if (l.cols <= 0 || l.quantised_cols <= 0 || l.quantised_cols > l.cols || l.block <= 0 ||
      l.quantised_cols % l.block != 0)
    throw std::invalid_argument("quant flips: bad layout (cols " + std::to_string(l.cols) + ", quantised " +
                                std::to_string(l.quantised_cols) + ", block " + std::to_string(l.block) + ")");
  if (static_cast<std::int64_t>(n) % l.cols != 0)
    throw std::invalid_argument("quant flips: " + std::to_string(n) + " values are not rows of " +
                                std::to_string(l.cols));
}

}  // namespace

std::string QuantFlips::summary(BlockQuant kind) const {
  if (accepted() == 0) return "";
  const char* fmt = kind == BlockQuant::kFp8Ue8m0 ? "FP8" : "FP4";
  return std::to_string(accepted()) + " " + fmt + " rounding flip" + (accepted() == 1 ? "" : "s") +
         " at a near-tie accepted (" + std::to_string(element_flips) + " element" + (element_flips == 1 ? "" : "s") +
         " one quantum off, " + std::to_string(scale_flips) + " block scale" + (scale_flips == 1 ? "" : "s") + " of " +
         std::to_string(scale_flip_elements) + " elements; largest " + num(largest_accepted) + ", smallest slack " +
         num(smallest_slack) + ")";
}

double quant_flip_tolerance(double pre_max_abs_err, double x, DType pre_dtype, const ToleranceParams& params) {
  if (!std::isfinite(pre_max_abs_err) || pre_max_abs_err < 0.0)
    throw std::invalid_argument(
        "quant_flip_tolerance: the references' pre-quantisation error must be finite and ≥ 0, got " +
        num(pre_max_abs_err));
  return params.k * pre_max_abs_err + params.floor_max_ulps * ulp_at(ulp_grid(pre_dtype), x);
}

double quantised_max_abs_error(std::span<const double> a, std::span<const double> exact,
                               const QuantisedLayout& layout) {
  if (a.size() != exact.size()) throw std::invalid_argument("quantised_max_abs_error: sizes differ");
  check_layout(a.size(), layout);
  double err = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (static_cast<std::int64_t>(i) % layout.cols >= layout.quantised_cols) continue;
    if (std::isfinite(a[i]) && std::isfinite(exact[i])) err = std::max(err, std::abs(a[i] - exact[i]));
  }
  return err;
}

QuantFlips accept_quant_flips(std::span<const double> candidate, std::span<const double> exact,
                              std::span<const double> exact_pre, double pre_max_abs_err, DType pre_dtype,
                              const QuantisedLayout& layout, const ToleranceParams& params) {
  if (candidate.size() != exact.size() || exact_pre.size() != exact.size())
    throw std::invalid_argument("accept_quant_flips: candidate, exact and pre-quantisation sizes differ");
  check_layout(exact.size(), layout);
  const Quantiser& q = quantiser(layout.kind);
  QuantFlips r;
  r.judged.assign(candidate.begin(), candidate.end());
  const std::int64_t rows = static_cast<std::int64_t>(exact.size()) / layout.cols;
  const auto block = static_cast<std::size_t>(layout.block);
  std::vector<double> tau(block), slack(block);
  std::vector<Fit> at_exact(block);
  for (std::int64_t row = 0; row < rows; ++row) {
    for (std::int64_t b0 = 0; b0 < layout.quantised_cols; b0 += layout.block) {
      const auto base = static_cast<std::size_t>(row * layout.cols + b0);
      r.quantised += layout.block;
      double amax = 0.0;
      bool finite = true;
      for (std::size_t j = 0; j < block; ++j) {
        finite = finite && std::isfinite(exact_pre[base + j]) && std::isfinite(exact[base + j]);
        amax = std::max(amax, std::abs(exact_pre[base + j]));
      }
      if (!finite) continue;  // the hard checks judge a non-finite reference
      const int k = scale_exponent(q, amax);
      const double s = std::ldexp(1.0, k);
      // At the exact scale: each element the exact code, or one step from it at a near-tie.
      bool all_fit = true, any_differs = false;
      for (std::size_t j = 0; j < block; ++j) {
        const double c = candidate[base + j], e = exact[base + j], x = exact_pre[base + j];
        tau[j] = quant_flip_tolerance(pre_max_abs_err, x, pre_dtype, params);
        at_exact[j] = Fit::kSame;
        if (c == e) continue;
        any_differs = true;
        at_exact[j] = std::isfinite(c) ? fit(q, c, e / s, x, s, tau[j], slack[j]) : Fit::kNo;
        all_fit = all_fit && at_exact[j] != Fit::kNo;
      }
      if (!any_differs) continue;
      // Otherwise the block's scale may have flipped: amax within τ(amax) of the step to 2^(k±1).
      bool scale_flip = false;
      if (!all_fit) {
        const double tau_a = quant_flip_tolerance(pre_max_abs_err, amax, pre_dtype, params);
        const int k_lo = scale_exponent(q, std::max(amax - tau_a, 0.0)), k_hi = scale_exponent(q, amax + tau_a);
        for (const int k2 : {k - 1, k + 1}) {
          if (scale_flip || k2 < k_lo || k2 > k_hi) continue;
          const double s2 = std::ldexp(1.0, k2);
          bool fits = true;
          double block_slack = tau_a - std::abs(amax - std::max(std::ldexp(q.qmax, std::min(k, k2)), q.floor));
          for (std::size_t j = 0; j < block && fits; ++j) {
            const double c = candidate[base + j], x = exact_pre[base + j];
            double sl = 0.0;
            const Fit f = std::isfinite(c) ? fit(q, c, code_of(q, x / s2), x, s2, tau[j], sl) : Fit::kNo;
            fits = f != Fit::kNo;
            if (f == Fit::kOneStep) block_slack = std::min(block_slack, sl);
          }
          if (!fits) continue;
          scale_flip = true;
          ++r.scale_flips;
          r.smallest_slack = std::min(r.smallest_slack, block_slack);
          for (std::size_t j = 0; j < block; ++j) {
            const std::size_t i = base + j;
            if (candidate[i] == exact[i]) continue;
            ++r.scale_flip_elements;
            r.largest_accepted = std::max(r.largest_accepted, std::abs(candidate[i] - exact[i]));
            r.judged[i] = exact[i];
          }
        }
      }
      if (scale_flip) continue;
      for (std::size_t j = 0; j < block; ++j) {  // element flips (all, or those that fit)
        if (at_exact[j] != Fit::kOneStep) continue;
        const std::size_t i = base + j;
        ++r.element_flips;
        r.largest_accepted = std::max(r.largest_accepted, std::abs(candidate[i] - exact[i]));
        r.smallest_slack = std::min(r.smallest_slack, slack[j]);
        r.judged[i] = exact[i];
      }
    }
  }
  return r;
}

QuantDirections quant_directions(std::span<const double> a, std::span<const double> b, const QuantisedLayout& layout) {
  if (a.size() != b.size()) throw std::invalid_argument("quant_directions: sizes differ");
  check_layout(a.size(), layout);
  QuantDirections d;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (static_cast<std::int64_t>(i) % layout.cols >= layout.quantised_cols) continue;
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) continue;
    ++d.compared;
    if (std::abs(a[i]) < std::abs(b[i])) ++d.toward_zero;
    if (std::abs(a[i]) > std::abs(b[i])) ++d.away_from_zero;
  }
  return d;
}

double binomial_upper_tail(std::int64_t n, std::int64_t m, double p) {
  if (n < 0 || !(p >= 0.0 && p <= 1.0)) throw std::invalid_argument("binomial_upper_tail: bad n or p");
  if (m <= 0) return 1.0;
  if (m > n) return 0.0;
  if (p == 0.0) return 0.0;
  if (p == 1.0) return 1.0;
  // log P(X = j) = log C(n, j) + j log p + (n − j) log(1 − p); from j the terms are summed away
  // from the mode (they only decrease there): upward from m when m lies above the mean, else the
  // lower tail downward from m − 1, and its complement.
  const bool upper = static_cast<double>(m) > static_cast<double>(n) * p;
  const std::int64_t j0 = upper ? m : m - 1;
  double log_term = static_cast<double>(j0) * std::log(p) + static_cast<double>(n - j0) * std::log1p(-p);
  for (std::int64_t i = 1; i <= j0; ++i)
    log_term += std::log(static_cast<double>(n - j0 + i)) - std::log(static_cast<double>(i));
  double sum = 0.0, term = 1.0;  // relative to P(X = j0)
  for (std::int64_t j = j0; upper ? j <= n : j >= 0; j += upper ? 1 : -1) {
    sum += term;
    term *= upper ? static_cast<double>(n - j) / static_cast<double>(j + 1) * (p / (1.0 - p))
                  : static_cast<double>(j) / static_cast<double>(n - j + 1) * ((1.0 - p) / p);
    if (term < 1e-18 * sum) break;
  }
  const double tail = std::min(1.0, std::exp(log_term + std::log(sum)));
  return upper ? tail : std::max(0.0, 1.0 - tail);
}

StructureStat quant_direction_test(std::span<const double> candidate, std::span<const double> official,
                                   std::span<const double> exact, const QuantisedLayout& layout, double k,
                                   const StructureParams& params) {
  if (candidate.size() != official.size() || exact.size() != official.size())
    throw std::invalid_argument("quant_direction_test: candidate, official and exact sizes differ");
  const QuantDirections c = quant_directions(candidate, official, layout);
  const QuantDirections e = quant_directions(exact, official, layout);
  StructureStat s;
  s.kind = StructureKind::kQuantDirection;
  if (c.differing() == 0) {
    s.not_run = "no quantised element differs from the official's";
    return s;
  }
  const auto n = static_cast<double>(c.differing());
  const double d_exact = std::abs(static_cast<double>(e.toward_zero - e.away_from_zero));
  const double exact_part =
      std::max(0.0, d_exact - params.exact_sigmas * std::sqrt(static_cast<double>(e.differing())));
  s.ran = true;
  s.groups = c.differing();
  s.estimate = static_cast<double>(c.toward_zero - c.away_from_zero);
  s.se = std::sqrt(n);
  s.allowance = k * exact_part + 16.0 * params.scale_floor * static_cast<double>(c.compared);
  s.z = (std::abs(s.estimate) - s.allowance) / s.se;
  const double p0 = std::min(1.0, 0.5 + s.allowance / (2.0 * n));
  s.p = std::min(1.0, 2.0 * binomial_upper_tail(c.differing(), std::max(c.toward_zero, c.away_from_zero), p0));
  return s;
}

}  // namespace dsv4::compare
