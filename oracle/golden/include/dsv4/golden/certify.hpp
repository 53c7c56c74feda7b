// `dsv4 certify`: a candidate's tensors judged against a golden (oracle/README.md §Goldens).
//
// Per value tensor: the metrics of the candidate against the golden's `exact` values and the
// tolerance model of oracle/compare (tolerance.hpp: k × the official reference's error + the
// candidate format's noise floor). Per discrete output (indexer top-k lists, routed expert ids): a
// set comparison per row (set_compare.hpp), a different set accepted only at a near-tie proven by
// the golden's exact scores with τ from tie_tolerance (the official-vs-exact score error of that
// row). Golden outputs the candidate does not hold are listed as missing (not failed); the
// decision data (scores, margins) are compared only when the candidate has them. With
// CertifyOptions::local_verdicts every output is judged by its local verdict (issue 15: one verdict
// with `dsv4 diff`); the end-to-end one stands only where no local verdict covers the output. The
// training step's values (train/…): losses and gradients end to end against the golden's step;
// optimizer states and updated parameters by the teacher-forced optimizer — recomputed from the
// candidate's own gradient (goldens/README.md §Certifying a training engine, spec 06 §6.17).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

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

// Which golden outputs a candidate must hold (`certify --require`): a certify that checked fewer
// FAILs and names the missing ones. Decision data (the golden's scores, margins and choice scores)
// are never required: an engine need not compute them.
struct Requirement {
  enum class Kind {
    kAll,      // every golden output (value tensors and discrete outputs)
    kModules,  // every module's own outputs — those a forward hook sees: out, out0, out1, in
    kList,     // the outputs matching `patterns`
    kNone,     // nothing (at least one output must still be checked)
  };
  Kind kind = Kind::kAll;
  // kList: each a canonical name, a name without its step (layers.1.attn/out), a module path
  // (layers.1.attn: each of its outputs) or any of those with '*' wildcards (layers.*.ffn/out).
  std::vector<std::string> patterns;
  std::string text = "all";  // as given
};
// "all", "modules", "none" or a comma-separated list of patterns; InputError (naming --require)
// for an empty list or an empty pattern.
Requirement parse_requirement(const std::string& text);
// Whether the requirement asks for this golden output (a canonical name).
bool is_required(const Requirement& req, const std::string& canonical);

// `--candidate-format NAME` (certify and diff): a floating-point dtype name (bfloat16, float16,
// float32, float64, float8_e4m3fn, …); InputError naming the option for anything else.
DType candidate_format_option(const std::string& name);

struct CertifyOptions {
  compare::ToleranceParams tolerance;
  Requirement require;
  // The number format of every float output of the candidate, as diff's --candidate-format:
  // ULPs and noise floor in it. nullopt: certify_ulp_dtype's rule per tensor.
  std::optional<DType> candidate_format;
  // The local verdicts (`dsv4 diff --teacher-forced`'s, by output and module name). When given,
  // every output is judged by its local verdict — its module recomputed from the candidate's own
  // inputs; the end-to-end verdict stands only where none covers the output (noted), and the first
  // decision flip in execution order is named on the outputs at or after it. Called at most once.
  // Without it (the --end-to-end-only screen) outputs are judged end to end only.
  std::function<LocalVerdicts()> local_verdicts;
  // The golden's weights, from which the training step's pre-step parameters θ₀ are made
  // (model_parameters): the teacher-forced optimizer (spec 06 §6.17) recomputes every optimizer
  // state and updated parameter the candidate holds from the candidate's own gradient, θ₀ and the
  // zero state of step 1. Called at most once, and only when the candidate holds an optimizer value
  // with its gradient. Null: the golden's seeded synthetic weights (a golden of checkpoint weights
  // then is InputError naming --weights).
  std::function<ModelWeights()> golden_weights;
};

// Throws InputError for a candidate tensor whose shape or dtype cannot be compared at all
// (reported instead as a FAIL with the reason where the comparison is meaningful).
report::CertifyReport certify(const Golden& golden, const MappedTensorSource& candidate,
                              const CertifyOptions& opts = {});

// The number format a candidate tensor is judged in (ULPs, noise floor): its storage dtype, except
// a widened engine dump — float64 whose finite values all lie on the golden's official grid (bf16
// or fp32), judged in that grid, and float32 (or float64 of an fp32 output) whose values all lie on
// the bf16 grid: bf16 values stored in a wider container, judged in bf16 (compare::widened_dump_dtype).
DType certify_ulp_dtype(const Tensor& candidate, DType official_grid);

}  // namespace dsv4
