// Teacher-forced, decision-forced localisation (`dsv4 diff --teacher-forced`, issue #5 part 5).
//
// For every step and every module the candidate dumped, the reference module is recomputed from
// the candidate's OWN input to it (the previous module's candidate output; for the attention
// module the candidate's own indexer top-k lists, for the MoE combine the candidate's own routing
// — decision forcing), in both precision modes. The module's LOCAL error is the candidate's output
// against that exact-mode recomputation, judged by the certify tolerance model against the
// official-mode recomputation's own error (oracle/compare/tolerance.hpp). Discrete decisions (indexer
// top-k, expert ids) are compared as sets: a difference passes only at a near-tie proven by the
// exact scores (set_compare.hpp). A module that is itself wrong is found even when upstream drift
// makes end-to-end comparisons meaningless: the first module (execution order) whose local verdict
// fails is `first_divergent_module`.
//
// Modules, per block N in execution order: layers.N.hc_attn (pre: y, post, comb), layers.N.attn_norm,
// layers.N.attn (kv, compressor entries, indexer scores and top-k, wo_a, out), layers.N.hc_attn (post:
// out), layers.N.hc_ffn (pre), layers.N.ffn_norm, layers.N.ffn.gate (weights, expert ids),
// layers.N.ffn (combine), layers.N (the FFN site's hc_post: the block output); then hc_head, norm,
// head. Inside the attention module, outputs are attributed to the sub-module that produced them
// (layers.N.attn.compressor, layers.N.attn.indexer, layers.N.attn.wo_a). Then, in the steps
// where it runs, each MTP module: mtp.I (its input state `in` from the candidate's final main
// state and the shifted ids), its block (the same modules under mtp.I.…), mtp.I.hc_head,
// mtp.I.norm, mtp.I.head.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dsv4/compare/quant_flips.hpp"
#include "dsv4/compare/tolerance.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/model/recorder.hpp"
#include "dsv4/model/transformer.hpp"

namespace dsv4::diff {

// A dump by canonical name `<step>/<module>/<output>` (nullopt: not dumped).
using TensorGetter = std::function<std::optional<RecordedTensor>(const std::string& name)>;

// The run the dumps come from: tokens [b][L]; prefill of the first prompt_len, then decode steps.
struct RunSchedule {
  std::vector<std::vector<std::int64_t>> tokens;
  std::int64_t prompt_len = 0;
  std::int64_t decode_steps = 0;
  std::vector<std::string> step_names() const;  // prefill, decode0, …
};

struct OutputResult {
  std::string name;  // canonical name
  bool present = false;
  bool pass = true;
  std::string reason;
  double local_max_abs = 0.0;           // candidate vs exact recomputation from its own input
  double local_official_max_abs = 0.0;  // official vs exact recomputation (the yardstick)
  double accumulated_max_abs = -1.0;    // candidate vs the golden's exact run (−1: no golden value)
  // A simulated-quantised output (kv, compressed entries): the candidate's rounding flips accepted
  // at a near-tie of the exact pre-quantisation values (compare/quant_flips.hpp) — elements one
  // quantum off, and blocks whose scale flipped (their differing elements in quant_scale_flip_elements).
  std::int64_t quant_element_flips = 0;
  std::int64_t quant_scale_flips = 0;
  std::int64_t quant_scale_flip_elements = 0;
  // The structure tests of the local error field (float outputs; structure.hpp): the candidate's,
  // with allowances from the official recomputation's. Judged together over the whole report
  // (Holm, ToleranceParams::structure.alpha): `structure_reject` marks the tests that failed.
  std::vector<compare::StructureStat> structure;
  std::vector<bool> structure_reject;
};

struct ModuleResult {
  std::string step;
  std::string module;
  std::int64_t layer = -1;  // −1 for the head
  bool checked = false;     // the candidate dumped this module's input and at least one output
  bool pass = true;
  std::string reason;
  std::vector<OutputResult> outputs;
  double local_max_abs = 0.0;
  double accumulated_max_abs = -1.0;
};

struct DiffReport {
  std::vector<ModuleResult> modules;  // execution order
  std::optional<std::string> first_divergent_module;
  std::optional<std::string> first_divergent_step;
  std::int64_t checked_modules = 0;
  std::int64_t failed_modules = 0;
  std::vector<std::string> missing;  // inputs the candidate did not dump (modules skipped)
  // Near-tie rounding flips of quantised outputs accepted over the report (compare/quant_flips.hpp):
  // elements, and the outputs they are in (diff_table prints the count, not the elements).
  std::int64_t quant_flips_accepted = 0;
  std::int64_t quant_flip_outputs = 0;
};

// Throws std::invalid_argument for a bad schedule and InputError-like std::runtime_error naming the
// tensor when a dumped tensor has the wrong shape.
// candidate_format: the number format the candidate claims for every float output (its ULPs, and
// values off that grid fail); nullopt: per output, the official model's format (bf16 or fp32) when
// every value lies on its grid, else float64 (a double-precision dump) — certify's rule.
// Quantised outputs (window KV, compressed entries: FP8 e4m3 × power-of-two block scale on the
// non-RoPE dims, spec 02 §2.5) must also lie on that grid: at most 4 significant bits. Their size
// checks accept the rounding flips of compare/quant_flips.hpp (one quantum at a near-tie of the exact
// pre-quantisation value, or a block scale at a near-tie of its amax), counted in OutputResult.
// How the diff judges one float output's values: the size checks' verdict (after the quantised
// outputs' near-tie flips are accepted) and the structure tests (the quantised outputs' direction
// test among them).
struct OutputJudgement {
  compare::TensorVerdict verdict;
  std::vector<compare::StructureStat> structure;
};
// One float output's local field as the diff judged it (FieldObserver): the candidate's values, the
// exact and official recomputations from the candidate's own inputs, the formats they were judged
// in, and `judge`: the diff's own judgement of that output (every rule, the same yardstick) applied
// to other values of the same shape — what certify would say had the candidate written them
// (diff/sensitivity.hpp injects errors through it); valid during the observer's call only.
struct ObservedField {
  const std::string& name;
  const std::vector<std::int64_t>& shape;
  std::span<const double> candidate, exact, official;
  DType candidate_format, official_format;
  std::function<OutputJudgement(std::span<const double> values)> judge;
  // A quantised output (window KV, compressed entries): its layout and the official recomputation's
  // values before the quantisation point (an engine's error enters there and is quantised with the
  // rest); null and empty otherwise.
  const compare::QuantisedLayout* quantised = nullptr;
  std::span<const double> official_pre;
  // The near-tie flips rule's own inputs (compare::accept_quant_flips): the exact recomputation's
  // values before the quantisation point and the yardstick's largest error there (E_pre); empty and
  // 0 for other outputs. tests/bench/judge_bench times the rule with them.
  std::span<const double> exact_pre;
  double pre_max_abs_err = 0.0;
};
using FieldObserver = std::function<void(const ObservedField&)>;

DiffReport teacher_forced_diff(const ModelConfig& c, const ModelWeights& w, const RunSchedule& schedule,
                               const TensorGetter& candidate, const TensorGetter& golden_exact,
                               const compare::ToleranceParams& tolerance = {},
                               std::optional<DType> candidate_format = std::nullopt,
                               const FieldObserver& observer = {});

// The verdict and first divergent module first, one line per module, then each module that could
// not be localised with the input it lacked.
std::string diff_table(const DiffReport& r);
std::string diff_json(const DiffReport& r);  // {"first_divergent_module": …, "modules": […]}
// Local vs accumulated error by layer (log scale), the band 0 … k × the official reference's local
// error, and a marker at the first divergent module's layer.
std::string diff_svg(const DiffReport& r, const compare::ToleranceParams& tolerance = {});
// The modules (as "<step>/<module path>") that read a recorded tensor — the output table's site
// inputs; used to say which module a missing input left unlocalised.
std::vector<std::string> readers_of(const std::string& canonical);
// Per module (site of the output table): the outputs the diff checks and the candidate tensors it
// needs as inputs, for `dsv4 diff --help`.
std::string diff_requirements_text();

}  // namespace dsv4::diff
