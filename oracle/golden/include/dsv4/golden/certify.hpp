// `dsv4 certify`: a candidate's tensors judged against a golden (oracle/README.md §Goldens).
//
// Per value tensor: the metrics of the candidate against the golden's `exact` values and the
// tolerance model of oracle/compare (tolerance.hpp: k × the official reference's error + the
// candidate format's noise floor). Per discrete output (indexer top-k lists, routed expert ids): a
// set comparison per row (set_compare.hpp), a different set accepted only at a near-tie proven by
// the golden's exact scores with τ from tie_tolerance (the official-vs-exact score error of that
// row). Golden outputs the candidate does not hold are listed as missing (not failed); the
// decision data (scores, margins) are compared only when the candidate has them. Outputs after an
// accepted near-tie flip are judged locally (CertifyOptions::local_verdicts).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "dsv4/compare/tolerance.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "dsv4/report/certify_report.hpp"

namespace dsv4 {

// A local (teacher-forced) verdict of one output or module: `dsv4 diff`'s, see oracle/diff.
struct LocalVerdict {
  bool pass = false;
  std::string reason;
};
// Keys: canonical output names ("prefill/layers.3.ffn/out") and modules ("prefill/layers.3.ffn").
using LocalVerdicts = std::map<std::string, LocalVerdict>;

struct CertifyOptions {
  compare::ToleranceParams tolerance;
  // Decision-aware judging. A legitimate engine may take another discrete decision at a near-tie
  // (accepted by the set comparison); from there on the golden's values describe the other branch
  // of that decision and end-to-end errors of O(1) are expected. So every output that FAILS end to
  // end and comes at or after the first accepted flip in execution order (same step and block or
  // later; later steps see it through the caches) is re-judged by its local verdict: its module
  // recomputed from the candidate's own inputs. Called at most once, only when needed. Without it
  // such outputs keep their FAIL, noted as lacking a local verdict.
  std::function<LocalVerdicts()> local_verdicts;
};

// Throws InputError for a candidate tensor whose shape or dtype cannot be compared at all
// (reported instead as a FAIL with the reason where the comparison is meaningful).
report::CertifyReport certify(const Golden& golden, const MappedTensorSource& candidate,
                              const CertifyOptions& opts = {});

// The number format a candidate tensor is judged in (ULPs, noise floor): its storage dtype, except
// float64 whose finite values all lie on the golden's official grid (bf16 or fp32) — a widened
// engine dump — which is judged in that grid; other float64 tensors in float64.
DType certify_ulp_dtype(const Tensor& candidate, DType official_grid);

}  // namespace dsv4
