// The certify tolerance model (issue 5; derivation and the choice of constants in
// oracle/compare/README.md §Tolerance model).
//
// The FlashAttention rule, per tensor: the candidate's error against the `exact` reference may be
// at most k × the error of the `official` reference against `exact`, plus the candidate format's
// noise floor. Applied to three statistics of the error, each catching what the others miss:
//   max abs  max|c − e|            ≤ k · max|o − e|        + floor_max_ulps · max ulp(e)
//   RMS      rms(c − e)            ≤ k · rms(o − e)        + floor_rms_ulps · rms ulp(e)
//   bias     |Σ (c − e)·sign(e)|   ≤ k · |Σ (o − e)·sign(e)| + bias_sigmas · sqrt(Σ (c − e)²)
//                                                          + bias_floor_ulps · Σ ulp(e)
// where ulp(e) is the spacing of the candidate's number format at the exact value. Hard failures
// come first: NaN/Inf where the reference is finite, a reference ±inf/NaN (a mask) not reproduced,
// values that are not in the candidate's declared format.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/structure.hpp"

namespace dsv4::compare {

struct ToleranceParams {
  double k = 2.0;                               // FlashAttention's factor (README: why 2)
  double floor_max_ulps = 1.0;                  // twice the worst round-to-nearest error (½ ulp)
  double floor_rms_ulps = 0.57735026918962576;  // 2/√12: twice the RMS of one round-to-nearest error
  double bias_sigmas = 6.0;                     // noise allowance of the bias test
  double bias_floor_ulps = 0.25;                // systematic bias allowed beyond k × the official's
  // Outputs of fewer elements are judged with their family's error scale too (pooled_yardstick;
  // README §Tolerance model, "Short outputs"): their own recomputations' errors are one or two
  // rounding paths' draws, not an estimate of the error a faithful path has.
  std::int64_t short_elements = 64;
  // The structure tests of the local (teacher-forced) error field (structure.hpp): scale, offset,
  // per-channel and per-row scale, family-wise controlled over one diff/certify run.
  StructureParams structure{};
};

// The official reference's error against `exact` for one tensor, as the golden stores it.
struct ReferenceError {
  std::int64_t compared = 0;
  double max_abs = 0.0;
  double rms = 0.0;
  double bias_sum = 0.0;  // Σ (o − e)·sign(e)
};
// From compute_metrics(official, exact).
ReferenceError reference_error(const TensorMetrics& official_vs_exact);
// Statistic by statistic, the larger of two references' errors (the bias by magnitude): diff's
// yardstick, the larger of the official recomputation's error and the fp32-order one's.
ReferenceError larger_error(const ReferenceError& a, const ReferenceError& b);

// An error scale in units of the reference format, per element: u_i = ulp(max(|e_i|, rms(e)/16))
// (the structure tests' noise unit: elements 16× below the tensor's RMS count at RMS/16).
struct UlpScale {
  double max_ulps = 0.0;  // max_i |r_i − e_i| / u_i
  double rms_ulps = 0.0;  // rms(r − e) / rms(u)
};
// The error of a recomputation r against the exact e in ulps of `dtype` (elements finite in both;
// 0 when none is). Throws std::invalid_argument for sizes that differ or a dtype without a grid.
UlpScale error_in_ulps(std::span<const double> r, std::span<const double> e, DType dtype);
// Statistic by statistic, the larger.
UlpScale larger_scale(const UlpScale& a, const UlpScale& b);
// The yardstick of one output (README §Tolerance model, "Short outputs"): `own` (its recomputations'
// error against exact) when it has at least params.short_elements elements; for a shorter one, the
// larger of `own` and its family's scale `family` (the largest per-instance UlpScale of the same
// output over the instances judged so far, this one included) expressed at this output's exact
// values: max_abs = family.max_ulps · max u_i, rms = family.rms_ulps · rms(u). The bias stays own's.
ReferenceError pooled_yardstick(const ReferenceError& own, const UlpScale& family, std::span<const double> e,
                                DType dtype, const ToleranceParams& params = {});

enum class Verdict { kPass, kFail };
const char* verdict_name(Verdict v);  // "PASS" / "FAIL"

// One criterion: value ≤ limit passes. `detail` explains the limit in words and numbers.
struct Check {
  std::string name;  // "nonfinite", "special", "off_grid", "max_abs", "rms", "bias"
  double value = 0.0;
  double limit = 0.0;
  bool pass = true;
  std::string detail;
};

struct TensorVerdict {
  Verdict verdict = Verdict::kPass;
  std::string reason;  // one line: the first failing check, or a summary of the margins on PASS
  std::vector<Check> checks;
};

// Throws std::invalid_argument for non-finite or negative parameters or official errors.
TensorVerdict judge_tensor(const TensorMetrics& candidate, const ReferenceError& official,
                           const ToleranceParams& params = {});

// The denominator guard of max_rel used by certify: 2^−4 · RMS of the reference (elements 16×
// below the tensor's RMS are measured relative to RMS/16), or the format's smallest normal where
// that is larger (an all-zero reference).
double rel_floor_for(double reference_rms, DType ulp_dtype);

// The near-tie tolerance τ of a discrete top-k / routing decision (set_compare.hpp): two
// candidates' scores may legitimately swap order when their exact scores differ by at most
// τ = 2 · (k · e_official + floor_max_ulps · ulp(kth_score)), each score being allowed the
// tensor rule's error (k × the official score error e_official, plus one ulp of the score's
// format). Throws std::invalid_argument for a negative or non-finite e_official.
double tie_tolerance(double official_score_max_abs_err, double kth_score, DType score_dtype,
                     const ToleranceParams& params = {});

}  // namespace dsv4::compare
