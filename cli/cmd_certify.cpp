// `dsv4 certify`: judge a candidate's tensors against a golden (oracle/README.md §Goldens).
#include <cstdio>
#include <memory>
#include <span>
#include <string>

#include "commands.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/diff/sensitivity.hpp"
#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/golden/declarations.hpp"
#include "dsv4/io/atomic_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/name_map.hpp"
#include "dsv4/io/tensor_source.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kFooter = R"(
Example (the committed golden; t.npy holds its inputs/tokens):
  dsv4 run --config tiny --seed 1 --tokens t.npy --decode-steps 2 --mode official --dump cand.h5
  dsv4 certify --golden goldens/tiny-s1-p6-d2.h5 --candidate cand.h5 --json report.json

The candidate: HDF5, safetensors, .npy, a directory of .npy files or .npz (recognised by content),
holding any subset of the golden's outputs under their canonical names <step>/<module>/<output>
(oracle/README.md, Dump convention), or under its own names renamed by --map M.json. A single
sequence may be dumped without the batch dimension.

Verdicts: one verdict per module, the same as `dsv4 diff --teacher-forced` gives (issue 15). Each
output is judged LOCALLY: its module recomputed from the candidate's own inputs (exact and official
mode), the candidate's error against the exact recomputation judged by
  - the size checks of the tolerance model (max abs, RMS, bias: at most k = 2 times the official
    recomputation's error plus the noise floor of the candidate's number format; NaN/Inf or a lost
    mask fail outright; in the FP8-quantised outputs, window KV and compressor entries, a value one
    FP8 step from the exact code counts as exact only where the exact pre-quantisation value lies
    within the yardstick of the rounding boundary: a near-tie, counted in the reason), and
  - the structure tests of the error field: its slope against the exact values (a scale error),
    its mean (an offset), per-channel and per-row slopes — errors far below one ulp per element
    that are correlated with something — and, in the FP8-quantised outputs, the direction test
    (the elements off the official recomputation's code must lie nearer and farther from zero
    alike, as a round-to-nearest-even engine's); Holm over every test of the run at
    alpha = 1e-4 (the family-wise false-positive rate; oracle/compare/README.md §Structure tests);
and each discrete output (indexer top-k, routed expert ids) row by row as a set, a different set
accepted only where the exact scores prove a near-tie. A dump of the golden's training step
(train/…): the losses and gradients against the golden's step; each optimizer state and updated
parameter against the optimizer step recomputed from the candidate's own gradient (teacher-forced
optimizer: the golden's pre-step parameters, from its weights, and step 1's zero state), the
yardstick that recomputation stored fp32 — so a wrong optimizer fails, a near-zero gradient whose
sign differs within its yardstick does not; without the gradient, against the golden's step (e2e).
Where no local verdict exists (the candidate lacks the module's input) the end-to-end comparison
against the golden stands, marked (e2e) in the table.
The local verdicts recompute the model (about two reference runs); --end-to-end-only skips them,
for fast screening: every output is then judged end to end only, which is weak (an attention
output 2-4% too large passes it) and says nothing past the first decision flip.

Sensitivity: --sensitivity (no --candidate) measures, for every float output of the golden, the
smallest scale (1 +- e) and offset (+- e x rms) error the local verdict catches when injected into
that output alone of the golden's own official values, and its statistical limit
(oracle/README.md §Sensitivity; --json for the full table).

Coverage (--require): a candidate must hold every output the requirement names, or certify FAILs
and lists the missing ones by module. all (default): every golden output except the decision data
(scores, margins: an engine need not compute them); modules: each module's own outputs, what a
forward hook sees (out, out0, out1, in; not the mHC intermediates y/post/comb); none; or a list:
  --require 'layers.*.attn/out,layers.*.ffn/out,head/out'   (names with or without the step,
  module paths, '*' wildcards). Candidate tensors matching no golden output are listed, with the
  closest golden name ("did you mean").

Number formats: each float output is judged in the format it was stored in — bf16, fp16, fp32 —
except wide containers holding narrower values: float64 whose values lie on the official grid, and
float32 or float64 whose values all lie on the bf16 grid, are judged in that grid (ULPs and noise
floor). --candidate-format F judges every float output in F (values off its grid fail).

Report: the verdict and the first failing output in execution order come first; tables follow in
execution order (step, layer, module). --quiet prints the verdict and the failures; the default
summarises accepted near-tie swaps per output; --verbose lists every row. --json carries the dsv4
version, the golden's manifest SHA-256, the candidate and the options.

A golden with exact values of some modules only (golden generate --exact-layers; its manifest's
exact_values) judges only those: the candidate's other golden outputs are listed NOT JUDGED, neither
passed nor failed, and the verdict is PARTIAL at best (JSON "verdict": "PARTIAL", "unjudged"). A
golden with no exact values (--exact-layers none), or a candidate holding only outputs the golden
cannot judge, is refused (exit 2, one line): prove such a golden with golden verify --recompute-only.

Exit status: 0 every checked tensor passes (at least one checked, none required missing, none of the
candidate's outputs unjudged); 1 a tensor or set fails, a required output is missing or nothing
could be checked; 4 PARTIAL: every judged output passes but some of the candidate's outputs were not
judged (the golden holds no exact values for them); 2 bad input (one line on stderr, e.g. a candidate
tensor whose shape is not the golden's, a golden that can judge none of them).)";

struct CertifyArgs {
  std::string golden_sha256;  // --golden-sha256: the manifest hash the user expects
  std::string golden, candidate, map, json, require = "all", format, weights;
  bool end_to_end_only = false, quiet = false, verbose = false, sensitivity = false;
};

// `--sensitivity`: the table of diff/sensitivity.hpp; exit 1 when the golden's own official values
// do not pass (the table would mean little).
int run_sensitivity(const CertifyArgs& a) {
  check_output_paths({{"--json", a.json}}, {{"--golden", a.golden}, {"--weights", a.weights}});
  if (!a.candidate.empty())
    throw InputError("--candidate", "not used with --sensitivity (the golden's own values are)");
  const Golden g = Golden::open_verified(a.golden, a.golden_sha256);
  const diff::SensitivityReport r = diff::sensitivity(g, diff::golden_weights(g, a.weights));
  if (!a.json.empty()) {
    AtomicFile out(a.json);
    const std::string text = diff::sensitivity_json(r);
    out.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    out.commit();
  }
  std::printf("%s", diff::sensitivity_table(r).c_str());
  return r.clean_pass && !r.rows.empty() ? 0 : 1;
}

int run_certify(const CertifyArgs& a) {
  if (a.sensitivity) return run_sensitivity(a);
  if (a.candidate.empty()) throw InputError("--candidate", "required (or --sensitivity)");
  check_output_paths(
      {{"--json", a.json}},
      {{"--golden", a.golden}, {"--candidate", a.candidate}, {"--map", a.map}, {"--weights", a.weights}});
  CertifyOptions opts;
  opts.require = parse_requirement(a.require);
  if (!a.format.empty()) opts.candidate_format = candidate_format_option(a.format);
  const Golden g = Golden::open_verified(a.golden, a.golden_sha256);  // every dataset read is hash-checked
  const NameMap map = a.map.empty() ? NameMap{} : load_name_map(a.map);
  const MappedTensorSource cand(TensorSource::open(a.candidate), map);
  if (const int rc = check_declarations(g, cand, "certify"); rc != 0) return rc;
  if (!a.end_to_end_only) opts.local_verdicts = diff::certify_local_judge(g, cand, a.weights);
  // The training step's pre-step parameters (the teacher-forced optimizer), when a candidate needs them.
  opts.golden_weights = [&g, &a] { return diff::golden_weights(g, a.weights); };
  report::CertifyReport rep = certify(g, cand, opts);
  rep.options = {{"map", a.map.empty() ? nlohmann::json() : nlohmann::json(a.map)},
                 {"require", a.require},
                 {"candidate_format", a.format.empty() ? nlohmann::json() : nlohmann::json(a.format)},
                 {"end_to_end_only", a.end_to_end_only}};
  if (!a.json.empty()) {
    AtomicFile out(a.json);
    const std::string text = report::to_json(rep).dump(1) + "\n";
    out.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    out.commit();
  }
  const report::Detail detail = a.quiet     ? report::Detail::kQuiet
                                : a.verbose ? report::Detail::kVerbose
                                            : report::Detail::kNormal;
  std::printf("%s", report::format_text(rep, detail).c_str());
  return rep.pass() ? 0 : rep.partial() ? 4 : 1;
}

}  // namespace

void register_certify(CLI::App& app) {
  auto a = std::make_shared<CertifyArgs>();
  auto* cmd =
      app.add_subcommand("certify", "Judge a candidate's tensors against a golden, per tensor and per decision");
  add_golden_options(cmd, a->golden, a->golden_sha256);
  cmd->add_option("--candidate", a->candidate,
                  "candidate dump: HDF5, safetensors, .npy, .npy directory or .npz (required unless --sensitivity)");
  cmd->add_flag("--sensitivity", a->sensitivity,
                "measure the smallest scale/offset error the local verdict catches per output of the golden "
                "(no candidate)");
  cmd->add_option("--map", a->map, "JSON name map: the candidate's names → canonical names");
  cmd->add_option("--json", a->json, "also write the report as JSON (schema dsv4-certify-report/1)");
  cmd->add_flag("--end-to-end-only", a->end_to_end_only,
                "judge end to end only, skipping the local verdicts (fast screening; weak: see below)");
  cmd->add_option("--require", a->require,
                  "outputs the candidate must hold: all (default), modules (each module's out/out0/out1/in), "
                  "none, or a comma-separated list (layers.*.attn/out, head/out, layers.3.ffn, …)")
      ->capture_default_str();
  cmd->add_option("--candidate-format", a->format,
                  "number format of the candidate's float outputs (bfloat16, float32, float64, …): ULPs and "
                  "noise floor in it, values off its grid fail (default: per tensor, see below)");
  auto* quiet = cmd->add_flag("--quiet", a->quiet, "print the verdict and the failures only");
  cmd->add_flag("--verbose", a->verbose, "also every near-tie row, every missing output and every unmatched name")
      ->excludes(quiet);
  cmd->add_option("--weights", a->weights,
                  "the golden's checkpoint, for the local verdicts of a golden of checkpoint weights (hash checked)");
  cmd->footer(kFooter);
  cmd->callback([a]() { set_exit_code(run_guarded("certify", [&] { return run_certify(*a); })); });
}

}  // namespace dsv4::cli
