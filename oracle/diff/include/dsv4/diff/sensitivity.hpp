// `dsv4 certify --sensitivity` (issue 15 item 4; oracle/README.md §Sensitivity): how small a
// systematic error certify's local verdict catches, per float output of a golden.
//
// The faithful candidate is the golden's own official values. For each float output alone, its
// values are replaced by an engine's that is off by a scale (1 ± ε)·o or an offset o ± ε·rms(e),
// stored in the output's format, and judged as certify judges it: the size checks of the tolerance
// model and the structure tests, the latter at Holm's first threshold alpha / m (m: the structure
// tests of the whole clean report) — the threshold a single wrong module meets in an otherwise
// faithful candidate. Only that output's local field changes (teacher forcing: its module is
// recomputed from the unchanged inputs), so one diff run gives every row. Outputs whose values
// must lie on the FP8 grid (window KV, compressed entries) are judged without the grid check (a
// scaled engine re-quantises); that check only makes them stricter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/compare/tolerance.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/model/transformer.hpp"

namespace dsv4::diff {

struct SensitivityDirection {
  double caught_from = -1.0;  // the smallest ε of the ladder from which every larger one is caught; −1: none
  std::string by;             // the check that catches it there (max_abs, rms, bias, scale, offset, …)
};

struct SensitivityRow {
  std::string output;  // canonical name
  std::int64_t elements = 0;
  DType format = DType::kF32;  // the format the injected engine stores (the official's)
  // The statistical limit of the scale test on this field for an engine whose only noise is the
  // rounding of its own output to `format`: the floor plus z* standard errors, z* the normal
  // quantile of Holm's first threshold (relative; −1 when the test cannot run).
  double scale_limit = -1.0;
  // The same for the offset test (relative to the rms of the exact values, as the offsets ε·rms are):
  // its allowance — the floor plus k × the exact recomputation's own significant offset from the
  // official — plus z* standard errors of its weighted mean under the rounding noise alone.
  double offset_limit = -1.0;
  SensitivityDirection scale_up, scale_down, offset_up, offset_down;
};

struct SensitivityReport {
  std::vector<SensitivityRow> rows;  // execution order
  std::vector<double> ladder;        // the ε tried, ascending
  std::int64_t family = 0;           // m: structure tests that ran in the clean report
  double alpha = 0.0;
  double first_threshold = 0.0;  // alpha / m
  bool clean_pass = false;       // the faithful candidate itself passes (else the table means little)
  std::string clean_reason;      // the first failure when it does not
};

SensitivityReport sensitivity(const Golden& golden, const ModelWeights& weights,
                              const compare::ToleranceParams& tolerance = {});

// Verdict-first text: a summary (how many outputs are caught at |ε| ≤ 0.2%, the rest at their
// statistical limit), then one row per output.
std::string sensitivity_table(const SensitivityReport& r);
std::string sensitivity_json(const SensitivityReport& r);

}  // namespace dsv4::diff
