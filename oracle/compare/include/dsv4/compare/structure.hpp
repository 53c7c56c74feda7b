// Structure tests on an error field (issue 15; definitions and calibration in
// oracle/compare/README.md §Structure tests).
//
// The size checks of tolerance.hpp (max abs, RMS, bias toward or away from zero) bound how LARGE the
// error of a candidate may be. A real porting bug — a wrong softmax scale, an epsilon outside the
// root, an fp32 intermediate kept in bf16 — usually makes an error far below one ulp per element
// that is perfectly correlated with something: the value itself (a scale), nothing (an offset), one
// channel or head (a per-channel scale), one position (a per-row scale). With thousands of
// elements such a structure is visible long before its size is.
//
// The tests are PAIRED with the official recomputation o of the same module from the same inputs
// (the local field of `dsv4 diff`): d = c − o. Against the exact recomputation the error of a
// faithful engine contains the official arithmetic's own deviations — in modules with FP8/FP4
// quantisation a few percent of the elements a whole quantum off where a rounding decision flips —
// which are shared by every faithful engine and would bury a 0.2% scale; against o they cancel and
// what is left is the engine's own rounding noise. (The size checks keep judging c against the
// exact recomputation, so an engine more exact than the official passes those; its d is the
// official's unbiased rounding noise, which these tests do not take for structure.)
//   scale          δ = Σ d·o / Σ o²                   the slope of d against o
//   offset         μ = Σ d / n                        the mean of d
//   channel_scale  Q = Σ_j z_j², z_j the slope of column j (last dimension) beyond the floor, in SEs
//   row_scale      Q = Σ_i z_i², the same per row (every leading index: position, head, …)
// The null is "the candidate is a faithful engine": d is rounding noise, independent per element,
// plus systematic effects no larger than k × those of the exact recomputation against the official
// (an engine between the two, or as far again) and a floor for what faithful fp32 arithmetic
// (≤ 2-ulp functions, any summation order) can do. Each test gives a one-sided p-value; the family over every
// output of one diff or certify run is judged by Holm's step-down procedure at
// StructureParams::alpha (holm_reject).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dsv4/numerics/tensor.hpp"

namespace dsv4::compare {

struct StructureParams {
  // Family-wise false-positive rate of one diff/certify run over all its structure tests (Holm).
  double alpha = 1e-4;
  // Systematic relative scale allowed: 2^-16. Faithful fp32 arithmetic moves a value by at
  // most a few 2^-24 systematically (a correctly rounded or ≤ 2-ulp exp/rsqrt, any summation
  // order); 2^-16 is 64× that and 130× below the 0.2% a wrong constant typically makes.
  double scale_floor = 0x1.0p-16;
  // Offset allowed, as a fraction of rms(o): 2^-16, for the same reason.
  double offset_floor = 0x1.0p-16;
  // Fewer effective elements than this (Kish: (Σo²)²/Σo⁴ for the slope, n for the offset), or a
  // group smaller than min_group: the test is not run (said so). Rounding errors are bounded, so
  // their weighted sums are close to normal (lighter-tailed) from a few terms on; the standard error
  // is the larger of the residuals' and a noise model fitted on the whole field (stable where the
  // residuals are few).
  std::int64_t min_effective = 10;
  // The exact recomputation's own structure against the official is allowed k times only where it
  // exceeds this many of its standard errors (the rest is its noise: structure.cpp significant()).
  double exact_sigmas = 3.0;
  std::int64_t min_group = 16;
};

// kQuantDirection: the direction test of a simulated-quantised output's decisions
// (quant_flips.hpp quant_direction_test), appended to those outputs' tests only.
enum class StructureKind : std::uint8_t { kScale, kOffset, kChannelScale, kRowScale, kQuantDirection };
// "scale", "offset", "channel_scale", "row_scale", "quant_direction"
const char* structure_kind_name(StructureKind k);
inline constexpr int kStructureKinds = 4;  // the kinds error_structure computes (every float output)

struct StructureStat {
  StructureKind kind = StructureKind::kScale;
  bool ran = false;
  std::string not_run;            // why the test did not run (too few elements or groups)
  double estimate = 0.0;          // scale: δ; offset: μ; channel/row: Q (Σ z²); quant_direction: T − A
  double se = 0.0;                // scale, offset: the standard error of the estimate; quant_direction: √n
  std::int64_t groups = 0;        // channel/row: the groups (columns or rows) that entered Q; quant_direction: n
  std::int64_t worst_group = -1;  // channel/row: the group with the largest |z|
  double worst_estimate = 0.0;    // … its slope
  double allowance = 0.0;         // scale/offset: |estimate| allowed without evidence (k × exact's + floor)
  double z = 0.0;                 // the excess in standard normal units (channel/row: Wilson–Hilferty of Q)
  double p = 1.0;                 // one-sided p-value of z
};

// The statistics of one error field, one per StructureKind (in that order).
struct ErrorStructure {
  std::int64_t compared = 0;  // elements where both values are finite
  std::vector<StructureStat> stats;
};

// The layout of a tensor for the grouped tests: row-major [rows, cols], cols the last dimension.
struct FieldLayout {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
};
FieldLayout layout_of(const std::vector<std::int64_t>& shape);

// The structure of d = candidate − official, allowed k × the same statistic of exact − official
// (an engine more precise than the official has the exact recomputation's structure, which is
// legitimate: a scalar times a bf16 vector rounded back to bf16 is a whole row's scale error of
// the official arithmetic) plus the floors. ulp_dtype: the format whose spacing sets each element's
// noise scale (the candidate's). Elements where any value is not finite are skipped. Throws
// std::invalid_argument for mismatched sizes or a layout that does not cover them.
ErrorStructure error_structure(std::span<const double> candidate, std::span<const double> official,
                               std::span<const double> exact, FieldLayout layout, DType ulp_dtype, double k,
                               const StructureParams& params = {});

// Holm's step-down procedure: p-values sorted ascending are compared with alpha / (m − rank); every
// p before the first that fails is rejected. Returns one flag per input (same order).
std::vector<bool> holm_reject(std::span<const double> p, double alpha);

// One line for a report: "scale: slope +1.02e-02 ± 2.3e-05 (allowed 1.5e-05; z = 440)".
std::string describe(const StructureStat& s);

}  // namespace dsv4::compare
