// The certify tolerance model (tolerance.hpp; README §Tolerance model).
#include "dsv4/compare/tolerance.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "dsv4/compare/number_text.hpp"
#include "dsv4/compare/ulp.hpp"

namespace dsv4::compare {
namespace {

void require_param(double v, const char* name) {
  if (!std::isfinite(v) || v < 0.0) {
    throw std::invalid_argument(std::string("tolerance: ") + name + " must be finite and ≥ 0, got " + num(v));
  }
}

Check hard_check(const char* name, std::int64_t count, std::int64_t first, const std::string& what) {
  Check c;
  c.name = name;
  c.value = static_cast<double>(count);
  c.limit = 0.0;
  c.pass = count == 0;
  c.detail = std::to_string(count) + " " + what + (count > 0 ? " (first at index " + std::to_string(first) + ")" : "");
  return c;
}

// The first two criteria share one form: value ≤ k·official + floor_ulps · ulp, where `label`
// names the value and `ulp_label` the ulp term in the detail line.
Check scaled_check(const char* name, const char* label, double value, double official, const ToleranceParams& p,
                   double floor_ulps, const char* ulp_label, double ulp) {
  Check c;
  c.name = name;
  c.value = value;
  const double floor = floor_ulps * ulp;
  c.limit = p.k * official + floor;
  c.pass = c.value <= c.limit;
  c.detail = std::string(label) + " " + num(c.value) + (c.pass ? " <= " : " > ") + num(c.limit) + " = " + num(p.k) +
             " x official " + num(official) + " + " + num(floor_ulps) + " " + ulp_label + " " + num(ulp);
  return c;
}

// tolerance.hpp, first criterion: max|c − e| ≤ k·max|o − e| + floor_max_ulps · max ulp(e).
Check max_abs_check(const TensorMetrics& m, const ReferenceError& o, const ToleranceParams& p) {
  Check c = scaled_check("max_abs", "max|c-e|", m.max_abs, o.max_abs, p, p.floor_max_ulps, "ulp", m.ulp_max);
  if (m.max_abs_index >= 0) c.detail += " (worst at index " + std::to_string(m.max_abs_index) + ")";
  return c;
}

// Second criterion: rms(c − e) ≤ k·rms(o − e) + floor_rms_ulps · rms ulp(e).
Check rms_check(const TensorMetrics& m, const ReferenceError& o, const ToleranceParams& p) {
  return scaled_check("rms", "rms(c-e)", m.rms, o.rms, p, p.floor_rms_ulps, "x rms ulp", m.ulp_rms);
}

// Third criterion: |Σ(c − e)·sign(e)| ≤ k·|Σ(o − e)·sign(e)| + z·sqrt(Σ(c − e)²) + b·Σ ulp(e).
// Values and limit are reported in mean ulps (divided by Σ ulp(e)) when that is positive.
Check bias_check(const TensorMetrics& m, const ReferenceError& o, const ToleranceParams& p) {
  Check c;
  c.name = "bias";
  const double noise = p.bias_sigmas * std::sqrt(m.sum_sq_err);
  const double value = std::fabs(m.bias_sum);
  const double limit = p.k * std::fabs(o.bias_sum) + noise + p.bias_floor_ulps * m.ulp_sum;
  c.pass = value <= limit;
  const double unit = m.ulp_sum > 0.0 ? m.ulp_sum : 1.0;
  c.value = value / unit;
  c.limit = limit / unit;
  c.detail = std::string("mean bias ") + (m.bias_sum < 0 ? "toward zero " : "away from zero ") + num(c.value) + " ulp" +
             (c.pass ? " <= " : " > ") + num(c.limit) + " ulp = " + num(p.k) + " x official " +
             num(std::fabs(o.bias_sum) / unit) + " + " + num(p.bias_sigmas) + " sigma noise " + num(noise / unit) +
             " + " + num(p.bias_floor_ulps);
  return c;
}

}  // namespace

ReferenceError reference_error(const TensorMetrics& m) {
  ReferenceError r;
  r.compared = m.compared;
  r.max_abs = m.max_abs;
  r.rms = m.rms;
  r.bias_sum = m.bias_sum;
  return r;
}

ReferenceError larger_error(const ReferenceError& a, const ReferenceError& b) {
  ReferenceError r = a;
  r.max_abs = std::max(a.max_abs, b.max_abs);
  r.rms = std::max(a.rms, b.rms);
  if (std::abs(b.bias_sum) > std::abs(a.bias_sum)) r.bias_sum = b.bias_sum;
  return r;
}

namespace {

// The per-element unit of UlpScale: u_i = ulp(max(|e_i|, rms(e)/16)) in `dtype` for every i where
// e_i and r_i are finite (the RMS over those elements), 0 elsewhere.
std::vector<double> element_units(std::span<const double> r, std::span<const double> e, DType dtype) {
  double ss = 0.0;
  std::int64_t n = 0;
  for (std::size_t i = 0; i < e.size(); ++i) {
    if (!std::isfinite(e[i]) || !std::isfinite(r[i])) continue;
    ss += e[i] * e[i];
    ++n;
  }
  const double guard = n > 0 ? std::sqrt(ss / static_cast<double>(n)) / 16.0 : 0.0;
  const UlpGrid g = ulp_grid(dtype);
  std::vector<double> u(e.size(), 0.0);
  for (std::size_t i = 0; i < e.size(); ++i)
    if (std::isfinite(e[i]) && std::isfinite(r[i])) u[i] = ulp_at(g, std::max(std::fabs(e[i]), guard));
  return u;
}

}  // namespace

UlpScale error_in_ulps(std::span<const double> r, std::span<const double> e, DType dtype) {
  if (r.size() != e.size()) throw std::invalid_argument("error_in_ulps: sizes differ");
  const std::vector<double> u = element_units(r, e, dtype);
  UlpScale s;
  double ss_err = 0.0, ss_u = 0.0;
  for (std::size_t i = 0; i < e.size(); ++i) {
    if (u[i] == 0.0) continue;
    const double d = r[i] - e[i];
    s.max_ulps = std::max(s.max_ulps, std::fabs(d) / u[i]);
    ss_err += d * d;
    ss_u += u[i] * u[i];
  }
  if (ss_u > 0.0) s.rms_ulps = std::sqrt(ss_err / ss_u);
  return s;
}

UlpScale larger_scale(const UlpScale& a, const UlpScale& b) {
  return {std::max(a.max_ulps, b.max_ulps), std::max(a.rms_ulps, b.rms_ulps)};
}

ReferenceError pooled_yardstick(const ReferenceError& own, const UlpScale& family, std::span<const double> e,
                                DType dtype, const ToleranceParams& p) {
  if (static_cast<std::int64_t>(e.size()) >= p.short_elements) return own;
  require_param(family.max_ulps, "family max_ulps");
  require_param(family.rms_ulps, "family rms_ulps");
  double u_max = 0.0, ss_u = 0.0;
  std::int64_t n = 0;
  for (const double u : element_units(e, e, dtype)) {
    if (u == 0.0) continue;
    u_max = std::max(u_max, u);
    ss_u += u * u;
    ++n;
  }
  ReferenceError r = own;
  if (n == 0) return r;
  r.max_abs = std::max(own.max_abs, family.max_ulps * u_max);
  r.rms = std::max(own.rms, family.rms_ulps * std::sqrt(ss_u / static_cast<double>(n)));
  return r;
}

const char* verdict_name(Verdict v) { return v == Verdict::kPass ? "PASS" : "FAIL"; }

TensorVerdict judge_tensor(const TensorMetrics& m, const ReferenceError& o, const ToleranceParams& p) {
  require_param(p.k, "k");
  require_param(p.floor_max_ulps, "floor_max_ulps");
  require_param(p.floor_rms_ulps, "floor_rms_ulps");
  require_param(p.bias_sigmas, "bias_sigmas");
  require_param(p.bias_floor_ulps, "bias_floor_ulps");
  require_param(o.max_abs, "official max_abs");
  require_param(o.rms, "official rms");
  if (!std::isfinite(o.bias_sum)) throw std::invalid_argument("tolerance: official bias_sum must be finite");

  TensorVerdict v;
  // Hard failures: no tolerance applies.
  v.checks.push_back(hard_check("nonfinite", m.nonfinite_where_ref_finite, m.first_nonfinite_where_ref_finite,
                                "NaN/Inf where the reference is finite"));
  v.checks.push_back(hard_check("special", m.special_mismatch, m.first_special_mismatch,
                                "reference +-inf/NaN (masks) not reproduced"));
  v.checks.push_back(hard_check(
      "off_grid", m.off_grid, m.first_off_grid,
      std::string("values not representable in the declared format ") + std::string(dtype_name(m.ulp_dtype))));
  if (m.compared > 0) {
    v.checks.push_back(max_abs_check(m, o, p));
    v.checks.push_back(rms_check(m, o, p));
    v.checks.push_back(bias_check(m, o, p));
  }
  for (const Check& c : v.checks) {
    if (!c.pass) {
      v.verdict = Verdict::kFail;
      v.reason = "FAIL " + c.name + ": " + c.detail;
      return v;
    }
  }
  v.verdict = Verdict::kPass;
  if (m.compared == 0) {
    v.reason = "PASS: no finite element to compare; " + std::to_string(m.ref_nonfinite) + " special values reproduced";
    return v;
  }
  // The closest call: the largest value / limit ratio among the tolerance checks.
  const Check* closest = nullptr;
  double worst = -1.0;
  for (const Check& c : v.checks) {
    if (c.name == "max_abs" || c.name == "rms" || c.name == "bias") {
      const double ratio = c.limit > 0 ? c.value / c.limit : (c.value > 0 ? INFINITY : 0.0);
      if (ratio > worst) {
        worst = ratio;
        closest = &c;
      }
    }
  }
  v.reason =
      "PASS (closest: " + closest->name + " at " + num(100.0 * worst) + "% of its limit: " + closest->detail + ")";
  return v;
}

double rel_floor_for(double reference_rms, DType ulp_dtype) {
  const double min_normal = std::ldexp(1.0, ulp_grid(ulp_dtype).min_exponent);
  if (!std::isfinite(reference_rms) || reference_rms < 0) {
    throw std::invalid_argument("rel_floor_for: reference_rms must be finite and ≥ 0");
  }
  return std::max(reference_rms * 0x1.0p-4, min_normal);
}

double tie_tolerance(double official_score_max_abs_err, double kth_score, DType score_dtype, const ToleranceParams& p) {
  require_param(official_score_max_abs_err, "official score error");
  require_param(p.k, "k");
  require_param(p.floor_max_ulps, "floor_max_ulps");
  const UlpGrid g = ulp_grid(score_dtype);
  const double ulp = std::isfinite(kth_score) ? ulp_at(g, kth_score) : 0.0;
  return 2.0 * (p.k * official_score_max_abs_err + p.floor_max_ulps * ulp);
}

}  // namespace dsv4::compare
