// `dsv4 golden generate|verify|inspect`: golden HDF5 sets, format v1 (goldens/README.md).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/config/resource_limits.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/golden/recompute.hpp"
#include "dsv4/golden/train_golden.hpp"
#include "dsv4/gpu/gpu_model_run.hpp"
#include "dsv4/io/atomic_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kGenerateFooter = R"(
Examples:
  dsv4 golden generate --config tiny --seed 1 --prompt-len 18 --decode-steps 2 --out g.h5
  dsv4 golden generate --config cfg.json --weights w.safetensors --tokens t.npy --decode-steps 4 --out g.h5
  dsv4 golden generate --config tiny --seed 1 --prompt-len 40 --train --out train.h5

Runs the reference twice (modes exact and official) on the same weights and tokens and writes every
module output of both, the inputs, the decision scores and margins, tolerance metadata, a SHA-256 per
dataset and a manifest (format v1, goldens/README.md). --prompt-len N makes N + K seeded token ids
(--token-seed) for a prompt of N tokens and K = --decode-steps decode steps; --tokens T takes them from
a .npy ([b, L] or [L], int32/int64; the last K are decoded). The file is written atomically.

--train adds one training step of the reference under train/ (exact, float64; and beside each value
the official-style step's under train/official/, spec 06 §6.17, the yardstick of certify): the token
sequence (one sequence, all L ids, whatever --decode-steps) is trained on as one prefill; the file
holds the loss parts (total, lm, mtp, balance), the gradient of every parameter by official name,
the routing and index lists the step held fixed, the FP8 KV offsets of its straight-through
surrogate, and the optimizer step from a zero state at --lr: each parameter to Muon or AdamW by its
name (optimizer_for), the states after the step (AdamW m and v, Muon momentum) and every updated
parameter (gate.bias by the auxiliary-loss-free update). Hashed and listed like every dataset, so
golden verify covers it (goldens/README.md §The training step). Refused (exit 2, one line naming
why) where the step cannot run: more than one sequence, fewer than 3 tokens, more than one MTP
module, or a config whose float64 training state does not fit the memory (tiny does; a slice
does not on a small machine; V4 never).
--device gpu computes the official values with GpuModel (gpu/README.md, GpuModel: every module
through the op registry's CUDA kernels, bit-identical with the CPU reference's official mode); the
exact values, the decision scores and margins of the exact run, the tolerance figures and a --train
step still come from the CPU. The manifest says so (official_device: device "gpu", what computed
the values); dsv4 golden verify --recompute re-derives the official values on the CPU and checks
them bit for bit. It needs a GPU (without one: exit 2, "no GPU") and one sequence.
--exact-layers SEL limits the exact side (the CPU's exact mode, a forward of the whole model) to
what is asked: all (default); none — no exact run at all, the golden holds the official values and
decisions (routing, top-k lists, their official scores and margins) of every output and no exact
values or tolerance figures; or [STEP/]MODULE selectors as --recompute-only takes (layers.0,head):
the exact run still runs the whole model on the CPU but only the selected outputs are kept. The
manifest says which (exact_values). certify judges only outputs with exact values and reports the
others NOT JUDGED (verdict PARTIAL, exit 4; nothing judgeable: exit 2); golden verify
--recompute-only proves the official values module by module on the CPU (goldens/README.md).
  dsv4 golden generate --device gpu --config flash-slice --prompt-len 4096 --exact-layers none --out g.h5
Progress: each module (layer, head, MTP) as it finishes, on stderr, with its time and the total.
Exit status: 0 written; 2 bad input.)";

constexpr const char* kVerifyFooter = R"(
Checks the golden's schema and integrity: the manifest's own SHA-256 (root attribute manifest_sha256),
every dataset the manifest lists (present, dtype, shape, SHA-256 of its data), no dataset that the
manifest does not list, the inputs and steps, and that exact/ and official/ hold the same outputs.
A golden with a training step (generate --train) is checked too: every train/ name is one the format
describes, with its role and dtype; every parameter has its gradient and updated value in its
checkpoint shape and exactly the states of the optimizer that trains it; the losses, decisions and
train/tokens (= inputs/tokens) are there; loss/total is lm + mtp_weight*mtp + balance of the parts.

--recompute also recomputes every official/ output from the golden's own tokens, steps and weights
(official mode; --device cpu, the default: the CPU reference; --device gpu: GpuModel on the CUDA
kernels, one sequence) and compares it with the stored dataset bit for bit, after the checks above
pass. A golden of checkpoint weights needs --weights (its content hash is checked). Printed: the
outputs and values compared, or the first mismatch in execution order (output, coordinate, both
values) and how many outputs differ. Not recomputed: exact/ (the CPU's exact mode; certify's
local verdicts recompute those modules) and train/.

--recompute-only SEL spot-checks a golden too large for a CPU forward (a GPU-made golden at V4-Flash
widths): only the selected official outputs are recomputed on the CPU reference, each module from
the golden's OWN recorded official inputs (the output table's site inputs: the previous module's
output, the block input, the indexer lists the attention took, the routing the MoE combine took;
no forward of the model), and compared bit for bit. SEL: comma-separated [STEP/]MODULE, '*' a
wildcard; a module selects every module inside it. A selected attention in a decode step needs its
layer's cache: the layer's attention is recomputed in the earlier steps too (not compared unless
selected). Printed: what was checked (outputs, modules, steps) and how many official outputs were
not. A selector that selects nothing, or selected modules whose inputs the golden lacks (named), is
bad input (exit 2).
  dsv4 golden verify --recompute goldens/tiny-s1-p6-d2.h5
  dsv4 golden verify --recompute --device gpu g.h5
  dsv4 golden verify --recompute-only layers.3 g.h5                  # every module of layer 3, every step
  dsv4 golden verify --recompute-only 'prefill/layers.*.ffn,head' g.h5
  dsv4 golden verify --recompute-only decode1/layers.0.attn --weights W.safetensors g.h5
Exit status: 0 intact (and, with --recompute or --recompute-only, every recomputed official value
bit-identical); 1 a check failed (each failing dataset named on stdout) or a recomputed value
differs (output, coordinate and both values named); 2 the file cannot be read as a golden (not
HDF5, truncated, not a dsv4 golden, unsupported version), or bad input (a --device it cannot use:
no GPU, more than one sequence on gpu; a --recompute-only selector that selects nothing).)";

// --device: cpu (nullopt: the CPU reference) or gpu (GpuModel's CUDA backend). InputError naming
// --device for anything else, for more sequences than the runner takes (`batch`, checked first: the
// input is wrong on any machine) and for gpu without a GPU (the reason: "no GPU: …").
std::optional<OfficialRunner> device_runner(const std::string& device, std::int64_t batch) {
  if (device == "cpu") return std::nullopt;
  if (device != "gpu") throw InputError("--device", "must be cpu or gpu, not '" + device + "'");
  OfficialRunner r = gpu::official_runner(gpu::OpBackend::kDevice);
  check_runner_batch(r, batch);
  if (!ops::device_available()) throw InputError("--device", "no GPU: " + ops::device_unavailable_reason());
  return r;
}

struct GenArgs {
  std::string config, weights, tokens, out, device = "cpu", exact_layers = "all";
  std::optional<std::uint64_t> seed;
  std::optional<std::int64_t> prompt_len;
  std::uint64_t token_seed = 1;
  std::int64_t decode_steps = 0;
  int deflate = 6;
  bool train = false;
  std::optional<double> lr;  // --train only; default kPeakLearningRateFlash
};

int generate(const GenArgs& a) {
  if (!a.weights.empty() && a.seed) throw InputError("--weights", "give either --weights or --seed, not both");
  if (a.tokens.empty() == !a.prompt_len) throw InputError("--tokens", "give exactly one of --tokens and --prompt-len");
  if (a.deflate < 0 || a.deflate > 9) throw InputError("--deflate", "must be 0-9");
  check_output_paths({{"--out", a.out}}, {{"--config", a.config}, {"--weights", a.weights}, {"--tokens", a.tokens}});
  if (a.device != "cpu" && a.device != "gpu")
    throw InputError("--device", "must be cpu or gpu, not '" + a.device + "'");
  GoldenGenerateOptions o;
  o.config = load_config(a.config);
  if (a.weights.empty())
    o.weights.seed = a.seed.value_or(0);
  else
    o.weights.file = a.weights;
  if (a.prompt_len) {
    if (*a.prompt_len <= 0) throw InputError("--prompt-len", "must be positive");
    if (a.decode_steps < 0) throw InputError("--decode-steps", "must be non-negative");
    // Before the token ids are made (a length past max_seq_len must not allocate first).
    if (*a.prompt_len > o.config.max_seq_len || a.decode_steps > o.config.max_seq_len - *a.prompt_len)
      throw InputError("--prompt-len", std::to_string(*a.prompt_len) + " + " + std::to_string(a.decode_steps) +
                                           " decode steps exceed the config's max_seq_len " +
                                           std::to_string(o.config.max_seq_len));
    o.tokens = synthetic_tokens(*a.prompt_len + a.decode_steps, o.config.vocab_size, a.token_seed);
    o.tokens_source = "synthetic_tokens(n=" + std::to_string(*a.prompt_len + a.decode_steps) +
                      ", seed=" + std::to_string(a.token_seed) + ")";
  } else {
    o.tokens = read_tokens_npy(a.tokens, o.config.vocab_size);
    const auto slash = a.tokens.find_last_of('/');
    o.tokens_source = slash == std::string::npos ? a.tokens : a.tokens.substr(slash + 1);
  }
  o.exact = parse_exact_coverage(a.exact_layers);
  if (a.train && !o.exact.all)
    throw InputError("--exact-layers", "a --train golden holds the exact values of every output (--exact-layers all)");
  o.official_runner = device_runner(a.device, static_cast<std::int64_t>(o.tokens.size()));
  o.decode_steps = a.decode_steps;
  o.deflate = a.deflate;
  if (a.lr && !a.train) throw InputError("--lr", "is the learning rate of the --train step; give --train too");
  if (a.train) {
    if (const auto why = train_golden_refusal(o.config, static_cast<std::int64_t>(o.tokens.size()),
                                              static_cast<std::int64_t>(o.tokens.front().size())))
      throw InputError("--train", *why);
    const double lr = a.lr.value_or(kPeakLearningRateFlash);
    if (!(lr >= 0.0 && lr < 1.0)) throw InputError("--lr", "must lie in [0, 1)");
    o.train = TrainStepOptions{};
    o.train->lr = lr;
  }
  {  // before any work: refused with the estimate and what to lower when the machine has too little memory
    const std::string what = "dsv4 golden generate of " + std::to_string(o.tokens.size()) + " x " +
                             std::to_string(o.tokens.front().size()) + " tokens on config " + o.config.name;
    const MemoryEstimate est =
        estimate_run_memory(o.config, static_cast<std::int64_t>(o.tokens.size()),
                            static_cast<std::int64_t>(o.tokens.front().size()), o.exact.none() ? 1 : 2);
    check_memory(est, what);
    note_memory_estimate(what, est.total());
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  auto t_module = t0;
  // Progress: every module as it finishes (each layer, the head, MTP), with its time and the total.
  const GoldenGenerateStats st =
      generate_golden(o, a.out, [&](const std::string& mode, const std::string& step, const std::string& module) {
        const std::string what = mode + " " + step + (module.empty() ? "" : " " + module);
        std::fprintf(stderr, "dsv4 golden: %s (%.2f s; %.1f s in all)\n", what.c_str(), since(t_module), since(t0));
        t_module = std::chrono::steady_clock::now();
      });
  const double total = since(t0);
  char train_part[64] = "";
  if (a.train) std::snprintf(train_part, sizeof train_part, "training step %.2f s, ", st.seconds_train);
  char exact_part[160] = "";
  if (!o.exact.all)
    std::snprintf(exact_part, sizeof exact_part, " exact values of %lld of %lld outputs (--exact-layers %s);",
                  static_cast<long long>(st.exact_outputs), static_cast<long long>(st.outputs), o.exact.text().c_str());
  std::printf(
      "wrote %s: %lld datasets, %.1f MB of values;%s weights %.2f s, exact %.2f s, official %.2f s, %swrite %.2f s, "
      "total %.2f s\n",
      a.out.c_str(), static_cast<long long>(st.datasets), static_cast<double>(st.value_bytes) / 1e6, exact_part,
      st.seconds_weights, st.seconds_exact, st.seconds_official, train_part, st.seconds_write, total);
  return 0;
}

struct VerifyArgs {
  std::string golden, device = "cpu", weights;
  std::optional<std::string> recompute_only;
  bool recompute = false;
};

std::string value_text(double x) {
  char b[96];
  std::snprintf(b, sizeof b, "%.17g (%a)", x, x);
  return b;
}

// Where a recomputed official output first differs: its coordinate and both values, or the
// recompute's own words (a missing or misshapen dataset).
std::string mismatch_text(const RecomputeMismatch& m) {
  if (!m.what.empty()) return m.what;
  return "at " + coordinate_text(m.coordinate) + ": stored " + value_text(m.stored) + ", recomputed " +
         value_text(m.recomputed) + " (" + std::to_string(m.differing) + " elements differ)";
}

// --recompute: every official output recomputed (recompute.hpp) and compared bit for bit.
int recompute(const VerifyArgs& a, const std::optional<OfficialRunner>& runner) {
  const Golden g = Golden::open_verified(a.golden);  // every dataset read is hash-checked
  const ModelWeights w = diff::golden_weights(g, a.weights);
  const auto t0 = std::chrono::steady_clock::now();
  const GoldenRecomputeResult r =
      recompute_official(g, w, runner ? &*runner : nullptr, [&](const std::string& step, const std::string& module) {
        if (module == "head") std::fprintf(stderr, "dsv4 golden verify: recomputed %s\n", step.c_str());
      });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string who = a.device + " (official values of the golden computed by " + g.official_device() + ")";
  if (r.ok()) {
    std::printf("%s: recompute OK on %s: %lld official outputs, %lld values bit-identical (%.2f s)\n", a.golden.c_str(),
                who.c_str(), static_cast<long long>(r.outputs), static_cast<long long>(r.values), s);
    return 0;
  }
  const RecomputeMismatch& m = *r.first;
  const std::string where = mismatch_text(m);
  std::printf("FAIL official/%s %s\n", m.output.c_str(), where.c_str());
  std::printf("%s: recompute FAILED on %s: %lld of %lld official outputs differ; the first in execution order: %s\n",
              a.golden.c_str(), who.c_str(), static_cast<long long>(r.differing_outputs),
              static_cast<long long>(r.outputs), m.output.c_str());
  std::fprintf(stderr, "dsv4 golden verify: %s: recompute FAILED: official/%s %s\n", a.golden.c_str(), m.output.c_str(),
               where.c_str());
  return 1;
}

// --recompute-only: the selected official outputs recomputed module by module from the golden's own
// recorded inputs (recompute_official_selected) and compared bit for bit; the report says what was
// checked and how much was not.
int spot_check(const VerifyArgs& a, const RecomputeSelection& sel) {
  const Golden g = Golden::open_verified(a.golden);  // every dataset read is hash-checked
  const ModelWeights w = diff::golden_weights(g, a.weights);
  const auto t0 = std::chrono::steady_clock::now();
  const GoldenRecomputeResult r =
      recompute_official_selected(g, w, sel, [&](const std::string& step, const std::string& module) {
        std::fprintf(stderr, "dsv4 golden verify: recomputed %s %s\n", step.c_str(), module.c_str());
      });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // What was checked: the modules (in execution order) and the steps.
  std::vector<std::string> modules, steps;
  for (const std::string& name : r.checked) {
    const std::size_t a0 = name.find('/'), b0 = name.rfind('/');
    const std::string step = name.substr(0, a0), module = name.substr(a0 + 1, b0 - a0 - 1);
    if (std::find(modules.begin(), modules.end(), module) == modules.end()) modules.push_back(module);
    if (std::find(steps.begin(), steps.end(), step) == steps.end()) steps.push_back(step);
  }
  const auto join = [](const std::vector<std::string>& v) {
    std::string t;
    for (const std::string& x : v) t += (t.empty() ? "" : ", ") + x;
    return t;
  };
  const std::string what = std::to_string(r.checked.size()) + " official outputs of " + std::to_string(modules.size()) +
                           " modules (" + join(modules) + ") in " + std::to_string(steps.size()) + " steps (" +
                           join(steps) + "), each recomputed on the " + "cpu from the golden's own recorded inputs; " +
                           std::to_string(r.not_checked) + " other official outputs not checked";
  const std::string who = "official values of the golden computed by " + g.official_device();
  if (r.ok()) {
    std::printf("%s: spot check OK (--recompute-only '%s', %s): %s; %lld values bit-identical (%.2f s)\n",
                a.golden.c_str(), sel.text.c_str(), who.c_str(), what.c_str(), static_cast<long long>(r.values), s);
    return 0;
  }
  const RecomputeMismatch& m = *r.first;
  const std::string where = mismatch_text(m);
  std::printf("FAIL official/%s %s\n", m.output.c_str(), where.c_str());
  std::printf(
      "%s: spot check FAILED (--recompute-only '%s', %s): %lld of %lld compared official outputs differ; "
      "the first in execution order: %s; checked: %s\n",
      a.golden.c_str(), sel.text.c_str(), who.c_str(), static_cast<long long>(r.differing_outputs),
      static_cast<long long>(r.outputs), m.output.c_str(), what.c_str());
  std::fprintf(stderr, "dsv4 golden verify: %s: spot check FAILED: official/%s %s\n", a.golden.c_str(),
               m.output.c_str(), where.c_str());
  return 1;
}

int verify(const VerifyArgs& a) {
  const std::string& path = a.golden;
  const bool spot = a.recompute_only.has_value();
  if (!a.recompute && !spot && (a.device != "cpu" || !a.weights.empty()))
    throw InputError(a.weights.empty() ? "--device" : "--weights", "is an option of --recompute; give --recompute too");
  std::optional<RecomputeSelection> sel;  // before any output: a bad selector is bad input (exit 2)
  if (spot) {
    if (a.recompute) throw InputError("--recompute-only", "give either --recompute (every output) or --recompute-only");
    if (a.device != "cpu")
      throw InputError("--recompute-only",
                       "spot checks run on the CPU reference (--device cpu); --recompute "
                       "--device gpu recomputes the whole run");
    sel = parse_recompute_selection(*a.recompute_only);
    recompute_selected_outputs(Golden::open(path), *sel);  // a selector that selects nothing: exit 2 now
  }
  std::optional<OfficialRunner> runner;  // before any output: a device it cannot use is bad input (exit 2)
  if (a.recompute) runner = device_runner(a.device, static_cast<std::int64_t>(Golden::open(path).tokens().size()));
  const GoldenVerifyResult r = verify_golden(path);
  if (r.ok()) {
    std::printf("%s: OK (%lld datasets, manifest and every SHA-256 verified)\n", path.c_str(),
                static_cast<long long>(r.datasets_checked));
    if (sel) return spot_check(a, *sel);
    return a.recompute ? recompute(a, runner) : 0;
  }
  for (const GoldenProblem& p : r.problems) std::printf("FAIL %s: %s\n", p.dataset.c_str(), p.what.c_str());
  std::printf("%s: %zu problem(s) in %lld datasets checked\n", path.c_str(), r.problems.size(),
              static_cast<long long>(r.datasets_checked));
  std::fprintf(stderr, "dsv4 golden verify: %s: FAILED: %s: %s\n", path.c_str(), r.problems.front().dataset.c_str(),
               r.problems.front().what.c_str());
  return 1;
}

int inspect(const std::string& path, bool json, bool tensors) {
  const Golden g = Golden::open(path);
  const nlohmann::ordered_json man = nlohmann::ordered_json::parse(g.manifest_text());
  std::map<std::string, std::map<std::string, int>> per_step;  // step → role → count (exact/ only)
  std::int64_t bytes = 0, train_bytes = 0, train_datasets = 0;
  for (const GoldenEntry& e : g.entries()) {
    std::int64_t n = 8;
    for (auto d : e.shape) n *= d;
    if (e.path.rfind("train/", 0) == 0) {
      train_bytes += n;
      ++train_datasets;
      continue;
    }
    bytes += n;
    if (e.path.rfind("official/", 0) != 0) continue;
    const std::string canonical = e.path.substr(9);
    per_step[canonical.substr(0, canonical.find('/'))][golden_role_name(e.role)]++;
    if (!g.exact_coverage().all && g.has_exact(canonical))
      per_step[canonical.substr(0, canonical.find('/'))]["with exact values"]++;
  }
  if (json) {
    nlohmann::ordered_json j;
    j["path"] = path;
    for (const char* k : {"format", "format_version", "generator", "config", "weights", "inputs"}) j[k] = man.at(k);
    if (man.contains("official_device")) j["official_device"] = man.at("official_device");
    if (man.contains("exact_values")) j["exact_values"] = man.at("exact_values");
    j["datasets"] = g.entries().size();
    j["value_bytes"] = bytes;
    j["outputs_per_step"] = per_step;
    if (man.contains("train")) {
      nlohmann::ordered_json t = man.at("train");
      t.erase("optimizer");
      t.erase("tolerance");  // per value, as the forward's tolerance.tensors
      t["datasets"] = train_datasets;
      t["value_bytes"] = train_bytes;
      j["train"] = std::move(t);
    }
    if (tensors) {
      j["tensors"] = nlohmann::ordered_json::array();
      for (const GoldenEntry& e : g.entries())
        j["tensors"].push_back(
            {{"path", e.path}, {"dtype", e.dtype}, {"shape", e.shape}, {"role", golden_role_name(e.role)}});
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  const ModelConfig& c = g.config();
  std::printf("golden %s\n", path.c_str());
  std::printf("  format      %s v%lld, written by %s\n", man.at("format").get<std::string>().c_str(),
              static_cast<long long>(man.at("format_version").get<std::int64_t>()),
              man.at("generator").get<std::string>().c_str());
  std::printf(
      "  config      %s: %lld layers (+%lld MTP), dim %lld, vocab %lld, %lld heads, %lld experts (top %lld), "
      "ratios",
      c.name.c_str(), static_cast<long long>(c.n_layers), static_cast<long long>(c.n_mtp_layers),
      static_cast<long long>(c.dim), static_cast<long long>(c.vocab_size), static_cast<long long>(c.n_heads),
      static_cast<long long>(c.n_routed_experts), static_cast<long long>(c.n_activated_experts));
  for (auto r : c.compress_ratios) std::printf(" %lld", static_cast<long long>(r));
  std::printf("\n  weights     %s\n", g.weights_json().c_str());
  if (g.official_device() != "cpu")
    std::printf(
        "  official    values computed by %s (manifest official_device); exact values, margins, tolerances "
        "by the CPU\n",
        g.official_device().c_str());
  if (!g.exact_coverage().all)
    std::printf(
        "  exact       only for --exact-layers '%s' (%s outputs; the others hold official values and "
        "decisions only: certify reports them NOT JUDGED)\n",
        g.exact_coverage().text().c_str(), man.at("exact_values").at("outputs").dump().c_str());
  std::printf("  tokens      %zu x %zu (%s)\n", g.tokens().size(), g.tokens().front().size(),
              man.at("inputs").value("tokens_source", "").c_str());
  std::printf("  steps      ");
  for (const StepPlan& s : g.steps())
    std::printf(" %s(pos %lld, %lld tok%s)", s.name.c_str(), static_cast<long long>(s.start_pos),
                static_cast<long long>(s.length), s.mtp ? ", mtp" : "");
  std::printf("\n  datasets    %zu (%.1f MB of values, exact + official)\n", g.entries().size() - train_datasets,
              static_cast<double>(bytes) / 1e6);
  if (man.contains("train")) {
    const auto& t = man.at("train");
    std::map<std::string, int> kinds;
    const nlohmann::ordered_json optimizer = t.value("optimizer", nlohmann::ordered_json::object());
    for (const auto& [name, k] : optimizer.items()) kinds[k.get<std::string>()]++;
    const auto loss = [&](const char* part) {
      const std::string ds = std::string("train/loss/") + part;
      if (!g.file().is_dataset(ds)) return std::nan("");
      const Tensor v = g.file().read(ds);
      return v.numel() == 1 && v.dtype() == DType::kF64 ? v.values<double>()[0] : std::nan("");
    };
    std::printf(
        "  train       one step, exact: loss %.17g (lm %.17g, mtp %.17g, balance %.3e); %d parameters (%d muon, %d "
        "adamw, %d none), lr %g; %lld datasets, %.1f MB of values (goldens/README.md §The training step)\n",
        loss("total"), loss("lm"), loss("mtp"), loss("balance"), kinds["muon"] + kinds["adamw"] + kinds["none"],
        kinds["muon"], kinds["adamw"], kinds["none"], t.value("lr", std::nan("")),
        static_cast<long long>(train_datasets), static_cast<double>(train_bytes) / 1e6);
  }
  std::printf(g.exact_coverage().all ? "  outputs per step (each in exact/ and official/):\n"
                                     : "  outputs per step (each in official/; exact/ as counted):\n");
  for (const auto& [step, roles] : per_step) {
    std::printf("    %-9s", step.c_str());
    for (const auto& [role, n] : roles) std::printf(" %d %s", n, role.c_str());
    std::printf("\n");
  }
  if (tensors) {
    const auto& tol = man.at("tolerance").at("tensors");
    std::printf("  %-58s %-8s %-16s %-8s %s\n", "canonical name", "role", "shape", "grid", "|official-exact| max");
    for (const std::string& name : g.canonical_names()) {
      const GoldenEntry* e = g.find("official/" + name);
      std::string shape = "[";
      for (std::size_t i = 0; i < e->shape.size(); ++i) shape += (i ? "," : "") + std::to_string(e->shape[i]);
      shape += "]";
      std::string grid = "-", err = "-";
      if (tol.contains(name)) {
        grid = tol.at(name).at("official_grid").get<std::string>();
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3g", tol.at(name).at("official_max_abs").get<double>());
        err = buf;
      } else if (!g.has_exact(name)) {
        err = "(no exact values)";
      }
      std::printf("  %-58s %-8s %-16s %-8s %s\n", name.c_str(), golden_role_name(e->role), shape.c_str(), grid.c_str(),
                  err.c_str());
    }
  } else {
    std::printf("  (--tensors lists every output; dsv4 golden verify checks the hashes)\n");
  }
  return 0;
}

}  // namespace

void register_golden(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("golden", "Golden HDF5 sets: generate, verify, inspect (format v1, goldens/README.md)");
  cmd->require_subcommand(1);

  auto g = std::make_shared<GenArgs>();
  auto* gen = cmd->add_subcommand("generate", "Run the reference in both modes and write a golden file");
  gen->add_option("--config", g->config, "built-in config name (tiny, …) or a config.json")->required();
  gen->add_option("--weights", g->weights, "safetensors checkpoint (official or Hugging Face naming)");
  gen->add_option("--seed", g->seed, "seed of the synthetic weights (default 0 when --weights is not given)");
  gen->add_option("--tokens", g->tokens, ".npy of int32/int64 token ids, [b, L] or [L]");
  gen->add_option("--prompt-len", g->prompt_len, "prompt length N of seeded token ids (instead of --tokens)");
  gen->add_option("--token-seed", g->token_seed, "seed of the --prompt-len token ids")->capture_default_str();
  gen->add_option("--decode-steps", g->decode_steps, "decode steps K")->capture_default_str();
  gen->add_option("--deflate", g->deflate, "gzip level 0-9 of the datasets (0: none)")->capture_default_str();
  gen->add_flag("--train", g->train,
                "also write one training step (exact: losses, every gradient, optimizer states, updated parameters) "
                "under train/");
  gen->add_option("--lr", g->lr, "learning rate of the --train step (default 2.7e-4: V4-Flash's peak, spec 06 §6.4)");
  gen->add_option("--out", g->out, "output golden .h5")->required();
  gen->add_option("--device", g->device,
                  "what computes the official values: cpu (the reference) or gpu (GpuModel, the CUDA kernels; the "
                  "exact values, margins and tolerance figures still from the CPU)")
      ->capture_default_str();
  gen->add_option("--exact-layers", g->exact_layers,
                  "outputs that get exact values (the CPU's exact mode): all, none (official values and decisions "
                  "only: no CPU exact run), or [STEP/]MODULE selectors as --recompute-only's (layers.0,head)")
      ->capture_default_str();
  gen->footer(kGenerateFooter);
  gen->callback([g]() { set_exit_code(run_guarded("golden generate", [&] { return generate(*g); })); });

  auto v = std::make_shared<VerifyArgs>();
  auto* ver = cmd->add_subcommand(
      "verify", "Check a golden's schema and SHA-256 hashes (--recompute: and its official values, bit for bit)");
  ver->add_option("golden", v->golden, "golden .h5")->required();
  ver->add_flag("--recompute", v->recompute,
                "also recompute every official output from the golden's inputs and compare bit for bit");
  ver->add_option("--recompute-only", v->recompute_only,
                  "spot check: recompute only the selected modules, each from the golden's own recorded inputs "
                  "(comma-separated [STEP/]MODULE globs: layers.3, prefill/layers.*.ffn, head), bit for bit");
  ver->add_option("--device", v->device, "what recomputes (--recompute): cpu (the reference) or gpu (GpuModel)")
      ->capture_default_str();
  ver->add_option("--weights", v->weights,
                  "the golden's checkpoint, for --recompute of a golden of checkpoint weights (its content hash is "
                  "checked)");
  ver->footer(kVerifyFooter);
  ver->callback([v]() { set_exit_code(run_guarded("golden verify", [&] { return verify(*v); })); });

  auto ipath = std::make_shared<std::string>();
  auto ijson = std::make_shared<bool>(false);
  auto itens = std::make_shared<bool>(false);
  auto* ins = cmd->add_subcommand("inspect", "Print a readable summary of a golden");
  ins->add_option("golden", *ipath, "golden .h5")->required();
  ins->add_flag("--json", *ijson, "print the summary as JSON");
  ins->add_flag("--tensors", *itens, "list every output with its shape and official-vs-exact error");
  ins->callback([ipath, ijson, itens]() {
    set_exit_code(run_guarded("golden inspect", [&] { return inspect(*ipath, *ijson, *itens); }));
  });
}

}  // namespace dsv4::cli
