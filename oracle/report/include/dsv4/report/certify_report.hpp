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

// An output judged locally (teacher-forced, `dsv4 diff`): its module recomputed from the
// candidate's own inputs (issue 15: certify's verdicts are diff's). `after_flip` names the first
// discrete decision flip before it in execution order — one the candidate took at an accepted
// near-tie, or one where the official reference itself differs from exact — past which the
// end-to-end comparison says little in either direction.
struct LocalJudgement {
  std::string after_flip;  // "" or the first flip before it: "prefill/layers.2.attn.indexer/out row 35"
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
  std::optional<LocalJudgement> local;  // set when local verdicts were sought (or past the first flip)
  // The final verdict: the local one when one is available, else the end-to-end one.
  bool passes() const;
};

struct SetResult {
  std::string name;  // canonical name of the discrete output
  std::string kind;  // "topk" (indexer selection) or "experts" (routed expert ids)
  compare::SetComparison comparison;
  std::optional<LocalJudgement> local;  // set when local verdicts were sought (or past the first flip)
  bool passes() const;
};

// A candidate tensor that names no golden output, with the closest golden name when one is close.
struct Unmatched {
  std::string name;
  std::string did_you_mean;  // "" when no golden name is close
};

struct CertifyReport {
  std::string golden;  // labels of what was compared (e.g. file paths)
  std::string candidate;
  std::string golden_sha256;  // the golden's manifest SHA-256 (its identity)
  std::string dsv4_version;
  nlohmann::json options = nlohmann::json::object();  // what the run was asked for (JSON "options")
  compare::ToleranceParams tolerance;
  // Both in execution order (step, layer, module; output_table.hpp ExecutionKey).
  std::vector<TensorResult> tensors;
  std::vector<SetResult> sets;
  std::string requirement;                    // the coverage asked for, in words ("all", "modules", a list)
  std::vector<std::string> missing;           // golden outputs the candidate does not hold (execution order)
  std::vector<std::string> required_missing;  // those of them the requirement asks for: each a FAIL
  std::vector<Unmatched> unmatched;           // candidate tensors that name no golden output
  std::vector<std::string> map_unused;        // name-map entries that matched no candidate tensor
  // Candidate outputs of the golden that it cannot judge: a golden with exact values of some
  // modules only (goldens/README.md §Exact values of some modules only) holds none for these.
  // Neither passed nor failed: any makes the verdict PARTIAL at best, never PASS.
  std::vector<std::string> unjudged;
  std::string exact_coverage = "all";  // the golden's exact_values.selection ("all", "none", selectors)
  std::string first_failure;           // the first failing output in execution order ("" none)
  // A value of the training step (train/…): what it blames, in the order of the step's backward
  // (train_golden.hpp train_blame: the loss, the backward of a module, or the optimizer); "" else.
  std::string first_failure_blame;

  std::int64_t failed_tensors() const;
  std::int64_t failed_sets() const;
  std::int64_t checked() const { return static_cast<std::int64_t>(tensors.size() + sets.size()); }
  // At least one output checked, every checked tensor and set passes, no required output missing.
  bool judged_pass() const;
  // judged_pass() and nothing unjudged: the only PASS.
  bool pass() const { return judged_pass() && unjudged.empty(); }
  // judged_pass() but some candidate outputs not judged (no exact values in the golden).
  bool partial() const { return judged_pass() && !unjudged.empty(); }
  // "PASS", "PARTIAL" or "FAIL" (text and JSON verdicts; certify exits 0, 4, 1).
  std::string verdict() const { return pass() ? "PASS" : partial() ? "PARTIAL" : "FAIL"; }
};

// How much the text report says.
enum class Detail {
  kQuiet,    // the verdict, the failures and what is missing that was required
  kNormal,   // + the tables (execution order), accepted near-tie swaps as counts per output
  kVerbose,  // + every differing row of every set, every missing output
};

// The verdict first (PASS/FAIL, the first failing output in execution order, the counts), then the
// tables — tensors (name, dtype, shape, max abs, max rel, RMS, cosine diff, max ulp, share of
// elements within 1 ulp, verdict) and sets (rows, identical, near-tie, rejected, verdict) — in
// execution order, the reason of every failure, near-tie swaps (counts per output, or every row
// with kVerbose), the missing outputs grouped by module (one line per module), unmatched candidate
// names with the closest golden name, and the verdict line again at the end.
std::string format_text(const CertifyReport& report, Detail detail = Detail::kNormal);

// Schema "dsv4-certify-report/2" (README §Report JSON). Numbers that are not finite are written
// as the strings "inf", "-inf" and "nan" (JSON has no such numbers).
nlohmann::json to_json(const CertifyReport& report);

// A double as JSON: a number when finite, else "inf" / "-inf" / "nan".
nlohmann::json json_number(double v);

}  // namespace dsv4::report
