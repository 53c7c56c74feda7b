// The certify report model (issue 5, `dsv4 certify`): per-tensor and per-set results, what was
// missing, and their two renderings — aligned text tables for people and JSON for machines.
// Pure computation: the caller writes the strings where it wants.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/compare/set_compare.hpp"
#include "dsv4/compare/tolerance.hpp"

namespace dsv4::report {

// An output judged locally (teacher-forced, `dsv4 diff`) because a discrete decision flip precedes
// it in execution order — one the candidate took at an accepted near-tie, or one where the
// official reference itself differs from exact. Past it the end-to-end comparison says little in
// either direction (the golden describes the other branch; the official error that scales the
// tolerance includes the flip's effect); its own module, recomputed from its own inputs, does.
struct LocalJudgement {
  std::string after_flip;  // the first accepted flip: "prefill/layers.2.attn.indexer/out row 35"
  bool available = false;  // a local verdict exists for this output (or its module)
  bool pass = false;
  std::string reason;  // the local verdict's reason, or why none is available
};

struct TensorResult {
  std::string name;  // canonical tensor name
  std::vector<std::int64_t> shape;
  compare::TensorMetrics metrics;    // candidate against `exact`
  compare::ReferenceError official;  // `official` against `exact` (from the golden)
  compare::TensorVerdict verdict;
  std::optional<LocalJudgement> local;  // set for outputs at or after the first decision flip
  // The final verdict: the local one when one is available, else the end-to-end one.
  bool passes() const;
};

struct SetResult {
  std::string name;  // canonical name of the discrete output
  std::string kind;  // "topk" (indexer selection) or "experts" (routed expert ids)
  compare::SetComparison comparison;
  std::optional<LocalJudgement> local;  // set for outputs at or after the first decision flip
  bool passes() const;
};

struct CertifyReport {
  std::string golden;  // labels of what was compared (e.g. file paths)
  std::string candidate;
  compare::ToleranceParams tolerance;
  std::vector<TensorResult> tensors;
  std::vector<SetResult> sets;
  std::vector<std::string> missing;    // golden outputs the candidate does not hold
  std::vector<std::string> unmatched;  // candidate tensors that name no golden output

  std::int64_t failed_tensors() const;
  std::int64_t failed_sets() const;
  // Every checked tensor and set passes (missing outputs are reported, not failed).
  bool pass() const { return failed_tensors() == 0 && failed_sets() == 0; }
};

// Tables: tensors (name, dtype, shape, max abs, max rel, RMS, cosine diff, max ulp, share of
// elements within 1 ulp, verdict), sets (rows, identical, near-tie, rejected, verdict), then the
// reason of every failure and every non-identical row, the missing and unmatched names, and a
// summary line ending in PASS or FAIL.
std::string format_text(const CertifyReport& report);

// Schema "dsv4-certify-report/1" (README §Report JSON). Numbers that are not finite are written
// as the strings "inf", "-inf" and "nan" (JSON has no such numbers).
nlohmann::json to_json(const CertifyReport& report);

// A double as JSON: a number when finite, else "inf" / "-inf" / "nan".
nlohmann::json json_number(double v);

}  // namespace dsv4::report
