// The tolerance rule of the plugin fuzzers (plugin_detail.hpp; properties/README.md §Foreign
// kernels).
#include <cmath>
#include <cstdio>

#include "plugin_detail.hpp"

namespace dsv4::props::plugin_detail {

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

namespace {
// Spacing of a binary format with `mant` stored mantissa bits and minimum normal exponent emin.
double ulp_of(double x, int mant, int emin) {
  const double a = std::fabs(x);
  const int e = (a == 0.0 || !std::isfinite(a)) ? emin : std::max(std::ilogb(a), emin);
  return std::ldexp(1.0, e - mant);
}
}  // namespace

double ulp_bf16(double x) { return ulp_of(x, 7, -126); }
double ulp_fp32(double x) { return ulp_of(x, 23, -126); }

std::string fa_rule_violation(const std::string& what, std::span<const float> cand, const Mat& official,
                              const Mat& exact, const ToleranceRule& rule) {
  const std::int64_t n = exact.size();
  if (static_cast<std::int64_t>(cand.size()) != n || official.size() != n) {
    return what + ": internal size mismatch";
  }
  double official_err = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    official_err = std::max(official_err, std::fabs(official.data()[i] - exact.data()[i]));
  }
  std::int64_t worst = -1;
  double worst_ratio = 1.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double c = cand[static_cast<std::size_t>(i)];
    const double e = exact.data()[i];
    if (std::isnan(c)) return what + ": NaN at " + rule.where(i) + " (exact " + num(e) + ")";
    if (std::isinf(c) != std::isinf(e) || (std::isinf(c) && c != e)) {
      return what + ": " + num(c) + " at " + rule.where(i) + ", exact " + num(e);
    }
    if (std::isinf(c)) continue;
    const double allowed = rule.k * official_err + rule.floor(i);
    const double err = std::fabs(c - e);
    const double ratio = allowed > 0 ? err / allowed : (err > 0 ? INFINITY : 0.0);
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  if (worst < 0) return "";
  const double c = cand[static_cast<std::size_t>(worst)];
  const double e = exact.data()[worst];
  return what + " at " + rule.where(worst) + ": plugin " + num(c) + ", exact " + num(e) + ", official " +
         num(official.data()[worst]) + ": |plugin - exact| = " + num(std::fabs(c - e)) + " > allowed " +
         num(rule.k * official_err + rule.floor(worst)) + " = " + num(rule.k) + " * max|official - exact| (" +
         num(official_err) + ") + floor " + num(rule.floor(worst));
}

}  // namespace dsv4::props::plugin_detail
