// `dsv4 audit`: prove our own stack bit-stable (oracle/audit self_audit.hpp; issue 17).
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "dsv4/audit/dump_audit.hpp"
#include "dsv4/audit/self_audit.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/gpu/gpu_model_run.hpp"
#include "dsv4/io/atomic_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kFooter = R"(
What it proves: the reference gives the same bits for the same sequence however it is run. The
yardstick is one run of the sequence alone (prefill of --prompt-len tokens, then --steps decode
steps) with every GEMM thread; each variant runs it again and compares every module output of
that sequence with the yardstick bit for bit:
  repeat N            the same run again
  threads T           GEMM calls on T threads
  batch B row R       the sequence at row R of a batch of B, the other rows random sequences
  prefill vs decode   the decode steps' position-wise outputs against a prefill of the whole
                      sequence at the same positions (main layers; spec 05 §5.6)
in each precision mode (official, exact), and
  GPU vs CPU official the sequence alone on GpuModel's CUDA kernels (gpu/README.md, GpuModel)
                      against the official yardstick; run when a GPU is present, else reported
                      as skipped with the reason ("no GPU: …"): skipped, not passed
--quick (the default; what CI runs): 1 repeat, threads 1 and 2, batch 4 at rows 0 and 3. --full: 3 repeats, batches of 4, 7 and 64 at rows 0, 3, 63, a
36-token prompt and 3 decode steps (minutes on the tiny config).

Any difference is a FAIL naming the first module in execution order whose bits move, the first
differing element, both values (hex float) and their ULP distance in the output's official format
(float64 in exact mode); the JSON (--json) carries every run's SHA-256 of the sequence's outputs;
--svg F draws where bits first move, per layer and module, over every variant (empty when all pass).

Example:
  dsv4 audit --config tiny --quick --json audit.json --svg audit.svg

A foreign engine's dumps: --dumps D1 D2 … compares the same sequences across dumps of different
runs, batch compositions and schedules. Each dump (any candidate format, canonical names) has a
manifest beside it, D.audit.json: {"run": "r1", "sequences": ["A", null, "B"], "schedule":
"incremental" | "prefill"} — the sequence id at each batch row (null: not audited). Per sequence
the first occurrence is the yardstick; each other occurrence is compared tensor by tensor in
execution order and classified: run-to-run nondeterminism (same batch size and row), batch
variance (another composition), prefill/decode variance (position-wise outputs, decode step i
against prefill position p + i; positions below window_size - 1 of --config, the model the dumps
come from, are excluded and said so: spec 02 §2.11.4 lets them differ). The first tensor whose bits move is named as the cause, with the
number of differing elements and their ULP histogram; later moves are its consequences.
--svg F draws, per layer and module, the largest fraction of elements whose bits move (log axis),
with a marker at each cause's layer (the same plot as the self-audit's).
  dsv4 audit --dumps run1.h5 run2.h5 batch7.h5 prefill.h5 --json a.json --svg a.svg

Exit status: 0 every run bit-identical; 1 a run differs; 2 bad input (one line on stderr).)";

// Each (path, text) with a path written atomically (the report files of --json and --svg).
void write_reports(const std::vector<std::pair<std::string, std::string>>& files) {
  for (const auto& [path, text] : files) {
    if (path.empty()) continue;
    AtomicFile out(path);
    out.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    out.commit();
  }
}

struct AuditArgs {
  std::vector<std::string> dumps;
  std::string config = "tiny", json, svg, modes = "official,exact";
  std::uint64_t seed = 1;
  std::int64_t prompt_len = -1, steps = -1;
  bool quick = false, full = false;
};

int run_dump_audit(const AuditArgs& a) {
  std::vector<NamedPath> inputs;
  for (const std::string& d : a.dumps) inputs.push_back({"--dumps", d});
  check_output_paths({{"--json", a.json}, {"--svg", a.svg}}, inputs);
  // The model the dumps come from: its window decides the positions spec 02 §2.11.4 lets differ.
  const audit::DumpAuditReport r = audit::audit_dumps(a.dumps, load_config(a.config).window_size);
  write_reports({{a.json, audit::dump_audit_json(r).dump(1) + "\n"}, {a.svg, audit::dump_audit_svg(r)}});
  std::printf("%s", audit::dump_audit_text(r).c_str());
  return r.pass() ? 0 : 1;
}

int run_audit(const AuditArgs& a) {
  if (!a.dumps.empty()) return run_dump_audit(a);
  check_output_paths({{"--json", a.json}, {"--svg", a.svg}}, {});
  const ModelConfig c = load_config(a.config);
  audit::AuditOptions o = a.full ? audit::full_options(c) : audit::quick_options(c);
  o.weights_seed = a.seed;
  if (a.prompt_len >= 0) o.prompt_len = a.prompt_len;
  if (a.steps >= 0) o.decode_steps = a.steps;
  o.modes.clear();
  for (std::size_t at = 0; at <= a.modes.size();) {
    const std::size_t comma = std::min(a.modes.find(',', at), a.modes.size());
    const std::string m = a.modes.substr(at, comma - at);
    if (m != "official" && m != "exact") throw InputError("--modes", "'" + m + "' is not official or exact");
    o.modes.push_back(mode_from_name(m));
    at = comma + 1;
  }
  if (ops::device_available())
    o.gpu = gpu::official_runner(gpu::OpBackend::kDevice);
  else
    o.gpu_unavailable = "no GPU: " + ops::device_unavailable_reason();
  const audit::AuditReport r = audit::run_self_audit(o, [](const std::string& mode, const std::string& variant) {
    std::fprintf(stderr, "dsv4 audit: %s %s\n", mode.c_str(), variant.c_str());
  });
  write_reports({{a.json, audit::audit_json(r).dump(1) + "\n"}, {a.svg, audit::audit_svg(r)}});
  std::printf("%s", audit::audit_text(r).c_str());
  return r.pass() ? 0 : 1;
}

}  // namespace

void register_audit(CLI::App& app) {
  auto a = std::make_shared<AuditArgs>();
  auto* cmd = app.add_subcommand("audit",
                                 "Prove the reference bit-stable across repeats, threads, batch "
                                 "compositions and prefill/decode");
  cmd->add_option("--config", a->config, "built-in config name or config.json (with --dumps: the dumps' model)")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "seed of the synthetic weights")->capture_default_str();
  cmd->add_option("--prompt-len", a->prompt_len, "prompt tokens (default: 20 quick, 36 full)");
  cmd->add_option("--steps", a->steps, "decode steps (default: 2 quick, 3 full)");
  cmd->add_option("--modes", a->modes, "precision modes, comma-separated")->capture_default_str();
  auto* quick = cmd->add_flag("--quick", a->quick, "the quick matrix (the default)");
  cmd->add_flag("--full", a->full, "the full matrix")->excludes(quick);
  cmd->add_option("--dumps", a->dumps, "audit a foreign engine's dumps instead (each with D.audit.json; see below)");
  cmd->add_option("--json", a->json,
                  "also write the report as JSON (schema dsv4-audit-report/2, or dsv4-audit-dumps/1 with --dumps)");
  cmd->add_option("--svg", a->svg, "also write an SVG of where bits first move, per layer and module");
  cmd->footer(kFooter);
  cmd->callback([a]() { set_exit_code(run_guarded("audit", [&] { return run_audit(*a); })); });
}

}  // namespace dsv4::cli
