// `dsv4 diff --teacher-forced`: which module is itself wrong (oracle/diff/teacher_forced.hpp).
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "commands.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/diff/teacher_forced.hpp"
#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/golden/declarations.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/atomic_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/name_map.hpp"
#include "dsv4/io/tensor_source.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kFooter = R"(
Every module the candidate dumped is recomputed by the reference from the candidate's OWN input
to it (the previous module's candidate output), in exact and official mode, and official with its
sums accumulated sequentially in fp32 (a legitimate order); for the attention module with the
candidate's own indexer top-k, for the MoE combine with the candidate's own routing (decision
forcing). The module's local error (candidate vs that exact recomputation) is judged by certify's
tolerance model against the larger error of the two other recomputations (the yardstick:
oracle/README.md, "The yardstick"), and by the
structure tests of its error field against the official recomputation (scale, offset, per-channel
and per-row scale: systematic errors far below one ulp per element; in the FP8-quantised outputs
also the direction test: the elements off the official's code must lie nearer and farther from
zero alike, as a round-to-nearest-even engine's; one Holm family over the whole run at
alpha = 1e-4, oracle/compare/README.md); discrete decisions pass only at near-ties proven by
the exact scores, and in the FP8-quantised outputs (window KV, compressor entries) a value one FP8
step from the exact code counts as exact only where the exact pre-quantisation value lies within
the yardstick of the rounding boundary (a near-tie; counted, oracle/compare/README.md §Quantised
outputs). The first module whose local verdict fails is the first divergent module — found
even when upstream drift makes end-to-end comparisons meaningless. `dsv4 certify` gives the same
verdicts (it reads these).

Example:
  dsv4 run --config tiny --seed 1 --tokens t.npy --decode-steps 2 --mode official --dump cand.h5
  dsv4 diff --golden G.h5 --candidate cand.h5 --teacher-forced --json diff.json --svg diff.svg

The candidate must hold, for the modules to check, the module's input as well as its output
(e.g. layers.3.attn_norm/out and layers.3.attn/out); modules whose inputs are missing are listed.
--candidate-format declares the number format of every float output, and values off its grid
fail. Default: per output, the official model's format (bf16, or fp32 for mHC post/comb, gate
scores/weights and logits) when every value lies on its grid, else float64 (a double dump).

A dump of the golden's training step (train/ names: train/loss/*, train/grad/<parameter>,
train/updated/<parameter>, the optimizer states; goldens/README.md, Certifying a training engine)
is judged value by value with certify's tolerance model: the losses and gradients against the
exact step, the official-style step's error as the yardstick; the optimizer states and updated
parameters against the optimizer recomputed from the candidate's own gradients (certify's
teacher-forced optimizer). The first failing value in the order of the step's backward is named
with what it blames: the loss, the backward of a module, or the optimizer of a parameter.

Exit status: 0 no module diverges; 1 a module diverges (named in the table and as
first_divergent_module in the JSON); 2 bad input (one line on stderr).)";

struct DiffArgs {
  std::string golden_sha256;  // --golden-sha256: the manifest hash the user expects
  std::string golden, candidate, map, json, svg, format, weights;
  bool teacher_forced = false;
};

// The training step's values of the candidate: certify's judgement of each (the one tolerance
// model), printed in the order of the step's backward with the first failing value's blame first.
int diff_training_step(const Golden& g, const MappedTensorSource& cand, std::optional<DType> fmt,
                       const std::string& weights) {
  CertifyOptions o;
  o.require = parse_requirement("none");
  o.candidate_format = fmt;
  o.golden_weights = [&g, &weights] { return diff::golden_weights(g, weights); };
  const report::CertifyReport rep = certify(g, cand, o);
  std::vector<const report::TensorResult*> rows;
  std::int64_t failed = 0;
  for (const report::TensorResult& t : rep.tensors)
    if (t.name.rfind("train/", 0) == 0) {
      rows.push_back(&t);
      failed += t.passes() ? 0 : 1;
    }
  const bool pass = !rows.empty() && failed == 0;
  std::printf(
      "training step: %s — %s\n  %zu values checked (%lld FAIL) against the exact step, the official-style "
      "step's error as the yardstick (the optimizer's: recomputed from the candidate's gradients), in the order "
      "of the step's backward\n",
      pass ? "PASS" : "FAIL",
      rep.first_failure_blame.empty() ? (rows.empty() ? "no value of the step was checked" : "no value diverges")
                                      : ("first divergent: " + rep.first_failure_blame).c_str(),
      rows.size(), static_cast<long long>(failed));
  for (const report::TensorResult* t : rows)
    if (!t->passes())
      std::printf("  FAIL %s: %s\n", t->name.c_str(),
                  (t->local && t->local->available ? t->local->reason : t->verdict.reason).c_str());
  return pass ? 0 : 1;
}

int run_diff(const DiffArgs& a) {
  if (!a.teacher_forced) throw InputError("--teacher-forced", "required (the end-to-end comparison is `dsv4 certify`)");
  check_output_paths(
      {{"--json", a.json}, {"--svg", a.svg}},
      {{"--golden", a.golden}, {"--candidate", a.candidate}, {"--map", a.map}, {"--weights", a.weights}});
  const Golden g = Golden::open_verified(a.golden, a.golden_sha256);  // every dataset read is hash-checked
  const NameMap map = a.map.empty() ? NameMap{} : load_name_map(a.map);
  const MappedTensorSource cand(TensorSource::open(a.candidate), map);
  std::optional<DType> fmt;
  if (!a.format.empty()) fmt = candidate_format_option(a.format);
  if (const int rc = check_declarations(g, cand, "diff"); rc != 0) return rc;
  bool forward = false, train = false;
  for (const std::string& n : cand.names()) (n.rfind("train/", 0) == 0 ? train : forward) = true;
  int train_rc = 0;
  if (train) {
    train_rc = diff_training_step(g, cand, fmt, a.weights);
    if (!forward) return train_rc;
  }
  const diff::DiffReport r = diff::diff_against_golden(g, cand, fmt, a.weights);
  for (const auto& [path, text] : {std::pair{a.json, diff::diff_json(r)}, std::pair{a.svg, diff::diff_svg(r)}}) {
    if (path.empty()) continue;
    AtomicFile out(path);
    out.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    out.commit();
  }
  std::printf("%s", diff::diff_table(r).c_str());
  if (r.checked_modules == 0) {
    std::printf("diff: FAIL — no module could be checked (the candidate lacks the modules' inputs)\n");
    return 1;
  }
  return r.first_divergent_module || train_rc != 0 ? 1 : 0;
}

}  // namespace

void register_diff(CLI::App& app) {
  auto a = std::make_shared<DiffArgs>();
  auto* cmd = app.add_subcommand("diff", "Find the first module that is itself wrong (teacher-forced localisation)");
  add_golden_options(cmd, a->golden, a->golden_sha256);
  cmd->add_option("--candidate", a->candidate, "candidate dump: HDF5, safetensors, .npy, .npy directory or .npz")
      ->required();
  cmd->add_option("--map", a->map, "JSON name map: the candidate's names → canonical names");
  cmd->add_flag("--teacher-forced", a->teacher_forced,
                "recompute each module from the candidate's own inputs (required)");
  cmd->add_option("--json", a->json, "write the per-module verdicts as JSON (first_divergent_module at the top)");
  cmd->add_option("--svg", a->svg, "write a plot of local vs accumulated error by layer (SVG)");
  cmd->add_option("--candidate-format", a->format,
                  "number format of the candidate's float outputs (bfloat16, float32, float64, …)");
  cmd->add_option("--weights", a->weights,
                  "the golden's checkpoint, for a golden of checkpoint weights (its content hash is checked)");
  cmd->footer(std::string(kFooter) +
              "\n\nWhat each module is checked on (the output table, ref/model output_table.hpp): the outputs it "
              "checks, and the\ncandidate tensors it needs as inputs (\"<block input>\": the previous layer's out; "
              "'?': optional):\n" +
              diff::diff_requirements_text());
  cmd->callback([a]() { set_exit_code(run_guarded("diff", [&] { return run_diff(*a); })); });
}

}  // namespace dsv4::cli
