// `dsv4 certify`: judge a candidate's tensors against a golden (oracle/README.md §Goldens).
#include <cstdio>
#include <memory>
#include <span>
#include <string>

#include "commands.hpp"
#include "dsv4/diff/dump_getters.hpp"
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

Verdicts: each value tensor against the golden's exact values by the tolerance model of
oracle/compare (error at most k = 2 times the official reference's error plus the noise floor of
the candidate's number format, on max abs, RMS and bias; NaN/Inf or a lost mask fail outright);
each discrete output (indexer top-k lists, routed expert ids) row by row as a set, a different set
accepted only where the golden's exact scores prove a near-tie. Past the first decision flip (the
candidate's accepted near-ties, or where the official reference differs from exact) end-to-end
errors say little either way, so every output there is judged by its local verdict: its module
recomputed from the candidate's own inputs as `dsv4 diff --teacher-forced` does (verdict marked
"local", the flip named; goldens of synthetic weights; where no local verdict exists the
end-to-end one stands). The local verdicts recompute the model (about two reference runs);
--end-to-end-only skips them, for fast screening: outputs past the first flip are then judged end
to end only, which is weak there.

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

Exit status: 0 every checked tensor passes (at least one checked, none required missing); 1 a
tensor or set fails, a required output is missing or nothing could be checked; 2 bad input (one
line on stderr, e.g. a candidate tensor whose shape is not the golden's).)";

struct CertifyArgs {
  std::string golden_sha256;  // --golden-sha256: the manifest hash the user expects
  std::string golden, candidate, map, json, require = "all", format, weights;
  bool end_to_end_only = false, quiet = false, verbose = false;
};

int run_certify(const CertifyArgs& a) {
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
  return rep.pass() ? 0 : 1;
}

}  // namespace

void register_certify(CLI::App& app) {
  auto a = std::make_shared<CertifyArgs>();
  auto* cmd =
      app.add_subcommand("certify", "Judge a candidate's tensors against a golden, per tensor and per decision");
  cmd->add_option("--golden", a->golden, "golden .h5 (dsv4 golden generate)")->required();
  cmd->add_option("--golden-sha256", a->golden_sha256,
                  "the golden's manifest SHA-256 you expect (goldens/README.md lists the committed ones): exit 2 "
                  "if it differs");
  cmd->add_option("--candidate", a->candidate, "candidate dump: HDF5, safetensors, .npy, .npy directory or .npz")
      ->required();
  cmd->add_option("--map", a->map, "JSON name map: the candidate's names → canonical names");
  cmd->add_option("--json", a->json, "also write the report as JSON (schema dsv4-certify-report/1)");
  cmd->add_flag("--end-to-end-only", a->end_to_end_only,
                "skip the local verdicts past the first decision flip (fast screening; weak past a flip)");
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
