// Structure tests on an error field (structure.hpp; README §Structure tests).
#include "dsv4/compare/structure.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <stdexcept>

#include "dsv4/compare/number_text.hpp"
#include "dsv4/compare/ulp.hpp"

namespace dsv4::compare {
namespace {

// One-sided upper tail of the standard normal: P(Z > z).
double upper_tail(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

// The soft threshold: x moved toward 0 by f (0 inside [−f, f]).
double soft(double x, double f) { return std::copysign(std::max(std::fabs(x) - f, 0.0), x); }

// The finite pairs of the field — d = c − o and the official value o (named e below: the regressor)
// — with their noise scale u = ulp(max(|o|, rms(o)/16)) in the candidate's format: elements 16×
// below the field's RMS get the noise scale of RMS/16 (rounding noise there comes from upstream
// values of the field's size, not from their own tiny ulp).
struct Field {
  std::vector<std::int64_t> index;  // flat index of each finite triple
  std::vector<double> d, e, u;
  std::vector<double> dx;  // x − o: the exact recomputation's difference from the official
  std::vector<double> w;   // (u0/u)², u0 = min u: the inverse noise variance, relative
  double u0 = 1.0;
  double s2x = 0.0;  // the noise model's s² of dx (noise_scale)
};

Field finite_field(std::span<const double> c, std::span<const double> e, std::span<const double> x, DType ulp_dtype) {
  Field f;
  double sum_sq = 0.0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (!std::isfinite(c[i]) || !std::isfinite(e[i]) || !std::isfinite(x[i])) continue;
    f.index.push_back(static_cast<std::int64_t>(i));
    f.d.push_back(c[i] - e[i]);
    f.dx.push_back(x[i] - e[i]);
    f.e.push_back(e[i]);
    sum_sq += e[i] * e[i];
  }
  const double rms = f.e.empty() ? 0.0 : std::sqrt(sum_sq / static_cast<double>(f.e.size()));
  const UlpGrid grid = ulp_grid(ulp_dtype);
  f.u.resize(f.e.size());
  for (std::size_t i = 0; i < f.e.size(); ++i) f.u[i] = ulp_at(grid, std::max(std::fabs(f.e[i]), rms / 16.0));
  f.u0 = ulp_at(grid, rms / 16.0);
  f.w.resize(f.u.size());
  for (std::size_t i = 0; i < f.u.size(); ++i) f.w[i] = (f.u0 / f.u[i]) * (f.u0 / f.u[i]);
  return f;
}

// Weighted least-squares slope of d on e over the elements `sel`, weights w = (u0/u)² (inverse noise
// variance of the model, u0 the smallest noise scale: w ≤ 1): every element counts by its
// precision, not by its size — an ordinary least-squares slope would rest on the few largest values.
// Its standard error is the larger of the heteroscedasticity-consistent one (HC0 × n/(n−1), from
// the residuals) and the noise model's (residual variance s² per unit u², given).
struct Slope {
  double beta = 0.0, se = 0.0, n_eff = 0.0;
  std::int64_t n = 0;
};

// slope_of's sums, accumulated term by term in the order of the elements (so that the slopes of
// many groups can be accumulated in one pass over the field with the same bits as one pass per
// group): pass 1 gives β and n_eff, pass 2 (the residuals at β) the standard error.
struct SlopeSums {
  double swee = 0.0, swde = 0.0, sq = 0.0, hc = 0.0;
  std::int64_t n = 0;
  void add(const Field& f, const std::vector<double>& d, std::size_t i) {
    const double we2 = f.w[i] * f.e[i] * f.e[i];
    swee += we2;
    swde += f.w[i] * d[i] * f.e[i];
    sq += we2 * we2;
    ++n;
  }
  // β and n_eff of pass 1; nullopt (the slope of n elements, not estimable) when swee ≤ 0 or n < 2.
  std::optional<Slope> slope() const {
    Slope s;
    s.n = n;
    if (swee <= 0.0 || n < 2) return std::nullopt;
    s.beta = swde / swee;
    s.n_eff = swee * swee / sq;
    return s;
  }
  void add_residual(const Field& f, const std::vector<double>& d, std::size_t i, double beta) {
    const double r = d[i] - beta * f.e[i];
    hc += f.w[i] * f.w[i] * f.e[i] * f.e[i] * r * r;
  }
  // The standard error of pass 2 into s (s2: the noise model's s²).
  void finish(Slope& s, double s2) const {
    const double nn = static_cast<double>(n);
    const double h = hc / (swee * swee) * nn / (nn - 1.0);
    const double model = s2 / swee;  // s² in units of u0²: Σ w² e² u² = u0² Σ w e²
    s.se = std::sqrt(std::max(h, model));
  }
};

template <class Indices>
Slope slope_of(const Field& f, const std::vector<double>& d, const Indices& sel, double s2) {
  SlopeSums sums;
  for (const std::size_t i : sel) sums.add(f, d, i);
  std::optional<Slope> s = sums.slope();
  if (!s) {
    Slope empty;
    empty.n = sums.n;
    return empty;
  }
  for (const std::size_t i : sel) sums.add_residual(f, d, i, s->beta);
  sums.finish(*s, s2);
  return *s;
}

// A range 0 … n−1 without materialising it.
struct Range {
  std::size_t n;
  struct It {
    std::size_t i;
    std::size_t operator*() const { return i; }
    It& operator++() {
      ++i;
      return *this;
    }
    bool operator!=(const It& o) const { return i != o.i; }
  };
  It begin() const { return {0}; }
  It end() const { return {n}; }
};

// The noise model's s² in units of u0²: Σ w·r² / (n − 1) for the residuals r of the global slope.
double noise_scale(const Field& f, const std::vector<double>& d, double beta) {
  if (d.size() < 2) return 0.0;
  double s = 0.0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const double r = d[i] - beta * f.e[i];
    s += f.w[i] * r * r;
  }
  return s / static_cast<double>(d.size() - 1);
}

StructureStat not_run(StructureKind k, const std::string& why) {
  StructureStat s;
  s.kind = k;
  s.not_run = why;
  return s;
}

// The part of an estimate of the exact recomputation's structure that its own noise does not
// explain: max(0, |estimate| − exact_sigmas · SE). Where exact and official differ by a few
// quantisation flips (FP8/FP4 modules) their slope is noise and allows nothing; where they differ
// systematically (a row scale rounded away) it is allowed. An engine as precise as the exact
// recomputation then stands at most exact_sigmas SEs beyond its allowance.
double significant(const Slope& x, const StructureParams& p) {
  return std::max(0.0, std::fabs(x.beta) - p.exact_sigmas * x.se);
}

// The weighted mean Σ w·d / Σ w of a field with its standard error (the larger of the residuals'
// and the noise model's), as a Slope.
Slope offset_of(const Field& f, const std::vector<double>& d) {
  Slope s;
  s.n = static_cast<std::int64_t>(d.size());
  if (s.n < 2) return s;
  double sw = 0.0, swd = 0.0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    sw += f.w[i];
    swd += f.w[i] * d[i];
  }
  s.beta = swd / sw;
  double hc = 0.0, s2 = 0.0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    const double r = d[i] - s.beta;
    hc += f.w[i] * f.w[i] * r * r;
    s2 += f.w[i] * r * r;
  }
  const double nn = static_cast<double>(s.n);
  s.se = std::sqrt(std::max(hc / (sw * sw) * nn / (nn - 1.0), s2 / (nn - 1.0) / sw));
  return s;
}

// A location test (scale or offset): the excess of |estimate| over the allowance, in SEs.
void finish_location(StructureStat& s, double allowance) {
  s.ran = true;
  s.allowance = allowance;
  const double excess = std::fabs(s.estimate) - s.allowance;
  if (excess <= 0.0) {
    s.z = excess / std::max(s.se, 1e-300);
    s.p = 1.0;
  } else {
    s.z = s.se > 0.0 ? excess / s.se : INFINITY;
    s.p = upper_tail(s.z);
  }
}

// scale: δ = Σ w·d·o / Σ w·o², allowed the floor plus k × the significant part of the exact
// recomputation's own slope.
StructureStat scale_test(const Field& f, double s2, double k, const StructureParams& p) {
  const Slope sl = slope_of(f, f.d, Range{f.d.size()}, s2);
  if (sl.n_eff < static_cast<double>(p.min_effective))
    return not_run(StructureKind::kScale, "the scale rests on " + num(sl.n_eff) + " effective elements (< " +
                                              std::to_string(p.min_effective) + ")");
  StructureStat s;
  s.kind = StructureKind::kScale;
  s.estimate = sl.beta;
  s.se = sl.se;
  finish_location(s, p.scale_floor + k * significant(slope_of(f, f.dx, Range{f.d.size()}, f.s2x), p));
  return s;
}

// offset: μ = Σ w·d / Σ w (weighted as the slope), with the larger of the residuals' and the noise
// model's standard error.
StructureStat offset_test(const Field& f, double k, const StructureParams& p) {
  const std::int64_t n = static_cast<std::int64_t>(f.d.size());
  if (n < p.min_effective)
    return not_run(StructureKind::kOffset,
                   std::to_string(n) + " finite elements (< " + std::to_string(p.min_effective) + ")");
  double sum_e2 = 0.0;
  for (const double e : f.e) sum_e2 += e * e;
  const Slope mu = offset_of(f, f.d);
  StructureStat s;
  s.kind = StructureKind::kOffset;
  s.estimate = mu.beta;
  s.se = mu.se;
  finish_location(s,
                  p.offset_floor * std::sqrt(sum_e2 / static_cast<double>(n)) + k * significant(offset_of(f, f.dx), p));
  return s;
}

// channel_scale / row_scale: Q = Σ_g z_g² over the groups with ≥ min_group elements, z_g the
// group's slope beyond its allowance (the scale floor plus k × the exact recomputation's slope in
// that group) in SEs; Q against χ²(G) by Wilson–Hilferty.
StructureStat group_test(StructureKind kind, const Field& f, FieldLayout layout, double s2, double k,
                         const StructureParams& p) {
  const bool by_column = kind == StructureKind::kChannelScale;
  const std::int64_t n_groups = by_column ? layout.cols : layout.rows;
  // Every group's slope of d (s2) and of dx (f.s2x), as slope_of over the group's elements in
  // ascending order, accumulated in two sequential passes over the field (each group's sums see
  // the same terms in the same order: the same bits as one strided pass per group, without the
  // cache misses of a column group's stride).
  std::vector<std::size_t> group(f.index.size());
  for (std::size_t i = 0; i < f.index.size(); ++i)
    group[i] = static_cast<std::size_t>(by_column ? f.index[i] % layout.cols : f.index[i] / layout.cols);
  std::vector<SlopeSums> sd(static_cast<std::size_t>(n_groups)), sx(static_cast<std::size_t>(n_groups));
  for (std::size_t i = 0; i < group.size(); ++i) {
    sd[group[i]].add(f, f.d, i);
    sx[group[i]].add(f, f.dx, i);
  }
  std::vector<std::optional<Slope>> bd(sd.size()), bx(sx.size());
  for (std::size_t g = 0; g < sd.size(); ++g) {
    bd[g] = sd[g].slope();
    bx[g] = sx[g].slope();
  }
  for (std::size_t i = 0; i < group.size(); ++i) {
    const std::size_t g = group[i];
    if (bd[g]) sd[g].add_residual(f, f.d, i, bd[g]->beta);
    if (bx[g]) sx[g].add_residual(f, f.dx, i, bx[g]->beta);
  }
  const auto slope = [](const SlopeSums& sums, std::optional<Slope>& b, double s2_) {
    if (!b) {
      Slope empty;
      empty.n = sums.n;
      return empty;
    }
    sums.finish(*b, s2_);
    return *b;
  };
  StructureStat s;
  s.kind = kind;
  double q = 0.0, worst = -1.0;
  for (std::int64_t g = 0; g < n_groups; ++g) {
    const auto gi = static_cast<std::size_t>(g);
    if (sd[gi].n < p.min_group) continue;
    const Slope sl = slope(sd[gi], bd[gi], s2);
    if (sl.n == 0 || sl.n_eff < 2.0) continue;
    const double excess = soft(sl.beta, p.scale_floor + k * significant(slope(sx[gi], bx[gi], f.s2x), p));
    const double z = excess == 0.0 ? 0.0 : (sl.se > 0.0 ? excess / sl.se : INFINITY);
    q += z * z;
    ++s.groups;
    if (std::fabs(z) > worst) {
      worst = std::fabs(z);
      s.worst_group = g;
      s.worst_estimate = sl.beta;
    }
  }
  if (s.groups < 2)
    return not_run(kind, std::to_string(s.groups) + (by_column ? " column" : " row") +
                             " group(s) of >= " + std::to_string(p.min_group) + " elements (< 2)");
  s.ran = true;
  s.estimate = q;
  const double g = static_cast<double>(s.groups);
  const double c = 2.0 / (9.0 * g);
  s.z = std::isfinite(q) ? (std::cbrt(q / g) - (1.0 - c)) / std::sqrt(c) : INFINITY;
  s.p = q <= 0.0 ? 1.0 : upper_tail(s.z);
  return s;
}

}  // namespace

const char* structure_kind_name(StructureKind k) {
  switch (k) {
    case StructureKind::kScale:
      return "scale";
    case StructureKind::kOffset:
      return "offset";
    case StructureKind::kChannelScale:
      return "channel_scale";
    case StructureKind::kRowScale:
      return "row_scale";
    case StructureKind::kQuantDirection:
      return "quant_direction";
  }
  return "?";
}

FieldLayout layout_of(const std::vector<std::int64_t>& shape) {
  FieldLayout l;
  l.cols = shape.empty() ? 1 : shape.back();
  l.rows = 1;
  for (std::size_t i = 0; i + 1 < shape.size(); ++i) l.rows *= shape[i];
  return l;
}

ErrorStructure error_structure(std::span<const double> candidate, std::span<const double> official,
                               std::span<const double> exact, FieldLayout layout, DType ulp_dtype, double k,
                               const StructureParams& params) {
  if (candidate.size() != official.size() || exact.size() != official.size())
    throw std::invalid_argument("error_structure: candidate has " + std::to_string(candidate.size()) +
                                " values, official " + std::to_string(official.size()) + ", exact " +
                                std::to_string(exact.size()));
  if (layout.rows < 0 || layout.cols < 0 || layout.rows * layout.cols != static_cast<std::int64_t>(candidate.size()) ||
      (layout.cols == 0 && !candidate.empty()))
    throw std::invalid_argument("error_structure: layout " + std::to_string(layout.rows) + " x " +
                                std::to_string(layout.cols) + " does not cover " + std::to_string(candidate.size()) +
                                " values");
  ErrorStructure out;
  if (candidate.empty()) {  // an empty output (e.g. no compressed entry yet): nothing to test
    for (int k_ = 0; k_ < kStructureKinds; ++k_)
      out.stats.push_back(not_run(static_cast<StructureKind>(k_), "no elements"));
    return out;
  }
  Field f = finite_field(candidate, official, exact, ulp_dtype);
  f.s2x = noise_scale(f, f.dx, slope_of(f, f.dx, Range{f.d.size()}, 0.0).beta);
  out.compared = static_cast<std::int64_t>(f.d.size());
  const Slope global = slope_of(f, f.d, Range{f.d.size()}, 0.0);
  const double s2 = noise_scale(f, f.d, global.beta);
  out.stats.push_back(scale_test(f, s2, k, params));
  out.stats.push_back(offset_test(f, k, params));
  out.stats.push_back(group_test(StructureKind::kChannelScale, f, layout, s2, k, params));
  out.stats.push_back(group_test(StructureKind::kRowScale, f, layout, s2, k, params));
  return out;
}

std::vector<bool> holm_reject(std::span<const double> p, double alpha) {
  std::vector<std::size_t> order(p.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] < p[b]; });
  std::vector<bool> reject(p.size(), false);
  const double m = static_cast<double>(p.size());
  for (std::size_t r = 0; r < order.size(); ++r) {
    if (!(p[order[r]] <= alpha / (m - static_cast<double>(r)))) break;
    reject[order[r]] = true;
  }
  return reject;
}

std::string describe(const StructureStat& s) {
  const std::string name = structure_kind_name(s.kind);
  if (!s.ran) return name + ": not run (" + s.not_run + ")";
  char buf[256];
  switch (s.kind) {
    case StructureKind::kScale:
      std::snprintf(buf, sizeof buf, "scale: slope of (c-o) on o %+.3g +- %.2g (allowed %.2g; z = %.3g, p = %.2g)",
                    s.estimate, s.se, s.allowance, s.z, s.p);
      break;
    case StructureKind::kOffset:
      std::snprintf(buf, sizeof buf, "offset: mean(c-o) %+.3g +- %.2g (allowed %.2g; z = %.3g, p = %.2g)", s.estimate,
                    s.se, s.allowance, s.z, s.p);
      break;
    case StructureKind::kChannelScale:
    case StructureKind::kRowScale:
      std::snprintf(buf, sizeof buf, "%s: chi2 %.4g over %lld %s (z = %.3g, p = %.2g); worst %s %lld slope %+.3g",
                    name.c_str(), s.estimate, static_cast<long long>(s.groups),
                    s.kind == StructureKind::kChannelScale ? "columns" : "rows", s.z, s.p,
                    s.kind == StructureKind::kChannelScale ? "column" : "row", static_cast<long long>(s.worst_group),
                    s.worst_estimate);
      break;
    case StructureKind::kQuantDirection:
      std::snprintf(buf, sizeof buf,
                    "quant_direction: %lld of %lld quantised elements off the official's code are nearer zero "
                    "(toward - away %+.0f, allowed %.3g; z = %.3g, p = %.2g)",
                    static_cast<long long>((s.groups + static_cast<std::int64_t>(s.estimate)) / 2),
                    static_cast<long long>(s.groups), s.estimate, s.allowance, s.z, s.p);
      break;
  }
  return buf;
}

}  // namespace dsv4::compare
