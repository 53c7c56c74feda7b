// Golden format v1 (goldens/README.md): generation, opening, verification.
#include "dsv4/golden/golden.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <utility>

#include "dsv4/compare/metrics.hpp"
#include "dsv4/config/version.hpp"
#include "dsv4/golden/config_json.hpp"
#include "dsv4/golden/dump.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/golden/train_golden.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/model/output_table.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4 {

static_assert(std::endian::native == std::endian::little, "dataset hashes are defined on little-endian bytes");

namespace {

using ojson = nlohmann::ordered_json;

const std::string kGenerator = std::string("dsv4 ") + kDsv4Version;
constexpr std::size_t kDeflateMinBytes = 4096;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string tensor_sha256(const Tensor& t) { return sha256_hex(std::span<const std::byte>(t.bytes(), t.nbytes())); }

std::string storage_name(DType d) {
  switch (d) {
    case DType::kF64:
      return "float64";
    case DType::kI64:
      return "int64";
    default:
      return std::string(dtype_name(d));
  }
}

Tensor int64_tensor(std::vector<std::int64_t> shape, const std::vector<std::int64_t>& v) {
  Tensor t(DType::kI64, std::move(shape));
  std::copy(v.begin(), v.end(), t.values<std::int64_t>().begin());
  return t;
}

// The finest of float64 ⊃ fp32 ⊃ bf16 that holds every finite value (what an official-mode output
// is stored as in the official code).
std::string value_grid(const std::vector<double>& v) {
  bool bf = true, f32 = true;
  for (const double x : v) {
    if (!std::isfinite(x)) continue;
    if (static_cast<double>(static_cast<float>(x)) != x) return "float64";
    if (bf && static_cast<double>(round_bf16(x)) != x) bf = false;
    if (!f32) break;
  }
  return bf ? "bf16" : "fp32";
}

// Tolerance metadata of one value tensor: how far the official reference is from exact (the scale
// of a faithful engine's error; the certify tolerance model is stated in oracle/README.md §Goldens).
// The figures are those of compare::compute_metrics(official, exact) — certify's ReferenceError —
// stored so that certify need not read the official values (goldens/README.md §Manifest).
ojson tolerance_entry(const std::vector<double>& ex, const std::vector<double>& off) {
  const std::string grid = value_grid(off);
  const compare::TensorMetrics m = compare::compute_metrics(off, golden_grid_dtype(grid), ex);
  ojson j;
  j["official_grid"] = grid;
  j["official_compared"] = m.compared;
  j["official_max_abs"] = m.max_abs;
  j["official_rms"] = m.rms;
  j["official_bias_sum"] = m.bias_sum;
  j["exact_rms"] = m.ref_rms;
  return j;
}

ojson weights_manifest(const GoldenGenerateOptions& o, const std::string& content_sha) {
  ojson w;
  if (o.weights.seed) {
    w["source"] = "synthetic";
    w["seed"] = std::to_string(*o.weights.seed);
    w["generator_version"] = kSyntheticWeightsVersion;
    w["regenerate"] =
        "ModelWeights::synthetic(config, seed) (ref/model transformer.hpp), as `dsv4 golden generate "
        "--seed` does";
  } else {
    w["source"] = "file";
    const auto slash = o.weights.file.find_last_of('/');
    w["file"] = slash == std::string::npos ? o.weights.file : o.weights.file.substr(slash + 1);
    w["file_sha256"] = sha256_file_hex(o.weights.file);
    w["regenerate"] = "the safetensors file with this SHA-256 (pass it to --weights)";
  }
  w["content_sha256"] = content_sha;
  w["content_sha256_definition"] =
      "SHA-256 over every parameter in the official naming, sorted by name: for each, "
      "len:name len:dtype len:shape len:bytes (decimal lengths, ':' separators)";
  return w;
}

void write_entry(Hdf5File& f, ojson& list, const std::string& path, const Tensor& t, GoldenRole role, int deflate) {
  Hdf5WriteOptions opts;
  if (t.nbytes() >= kDeflateMinBytes) opts.deflate = deflate;
  f.write(path, t, opts);
  ojson e;
  e["path"] = path;
  e["dtype"] = storage_name(t.dtype());
  e["shape"] = t.shape();
  e["role"] = golden_role_name(role);
  e["sha256"] = tensor_sha256(t);
  list.push_back(std::move(e));
}

[[noreturn]] void bad_golden(const std::string& path, const std::string& what) { throw InputError(path, what); }

// A manifest integer: a JSON integer that fits int64. nlohmann's get<std::int64_t>() converts a
// float (1e300: undefined behaviour) and wraps an unsigned above 2^63 - 1 (fuzz_golden).
std::int64_t manifest_int(const std::string& path, const ojson& j, const std::string& what) {
  if (!j.is_number_integer() ||
      (j.is_number_unsigned() &&
       j.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())))
    bad_golden(path, "manifest: " + what + ": expected an integer, got " + printable_name(j.dump(), 80));
  return j.get<std::int64_t>();
}

// A dataset's manifest shape: at most 8 dimensions, none negative, and an element count whose
// 8-byte values fit in memory's addressing (every product below is then free of overflow: certify
// multiplies the dimensions, fuzz_golden).
std::vector<std::int64_t> manifest_shape(const std::string& path, const ojson& j, const std::string& dataset) {
  if (!j.is_array() || j.size() > 8)
    bad_golden(path, "manifest: dataset " + dataset + ": shape must be an array of at most 8 integers");
  std::vector<std::int64_t> shape;
  std::int64_t n = 1;
  constexpr std::int64_t kMaxElements = std::numeric_limits<std::int64_t>::max() / 8;
  for (const ojson& d : j) {
    const std::int64_t v = manifest_int(path, d, "dataset " + dataset + ": shape");
    if (v < 0 || (v != 0 && n > kMaxElements / v))
      bad_golden(path, "manifest: dataset " + dataset + ": shape " + printable_name(j.dump(), 80) +
                           " is negative or too large");
    n = v == 0 ? 0 : n * v;
    shape.push_back(v);
  }
  return shape;
}

// What judging relies on beyond the hashes — diff's recomputation runs the golden's tokens through
// its steps, certify compares exact/ with official/: the tokens lie in the vocabulary, the
// manifest's steps are the run's plan for those tokens and config (plan_steps), every exact/
// output has an official/ counterpart of its dtype and shape and every official/ output an exact/
// one. The one list of these checks: Golden::open_verified refuses the first problem,
// verify_golden reports them all (fuzz_golden).
std::vector<GoldenProblem> judging_problems(const Golden& g) {
  std::vector<GoldenProblem> out;
  const auto& tokens = g.tokens();
  try {
    check_tokens(tokens, g.config().vocab_size, "");
  } catch (const InputError& e) {
    out.push_back({"inputs/tokens", e.what()});
  }
  if (g.steps().empty()) {
    out.push_back({"manifest", "inputs.steps is empty"});
  } else if (!tokens.empty()) {
    const auto batch = static_cast<std::int64_t>(tokens.size());
    const auto length = static_cast<std::int64_t>(tokens.front().size());
    std::vector<StepPlan> plan;
    try {
      plan = plan_steps(g.config(), batch, length, static_cast<std::int64_t>(g.steps().size()) - 1);
    } catch (const InputError& e) {
      out.push_back({"manifest", std::string("inputs.steps do not fit the tokens and config: ") + e.what()});
    }
    for (std::size_t i = 0; i < plan.size(); ++i) {
      const StepPlan &a = g.steps()[i], &b = plan[i];
      if (a.name == b.name && a.start_pos == b.start_pos && a.length == b.length && a.mtp == b.mtp) continue;
      out.push_back({"manifest", "inputs.steps: step " + std::to_string(i) + " is not the run's (" + b.name + " at " +
                                     std::to_string(b.start_pos) + ", " + std::to_string(b.length) + " tokens" +
                                     (b.mtp ? ", mtp" : "") + " for " + std::to_string(batch) + " x " +
                                     std::to_string(length) + " tokens)"});
      break;  // the later steps are shifted alike
    }
  }
  // Exact values exactly where the manifest's exact_values says (every output when absent).
  const ExactCoverage& cov = g.exact_coverage();
  for (const GoldenEntry& e : g.entries()) {
    const bool ex = e.path.rfind("exact/", 0) == 0, off = e.path.rfind("official/", 0) == 0;
    if (!ex && !off) continue;
    const std::string canonical = e.path.substr(ex ? 6 : 9);
    const GoldenEntry* twin = g.find((ex ? "official/" : "exact/") + canonical);
    if (ex && (twin == nullptr || twin->shape != e.shape || twin->dtype != e.dtype))
      out.push_back({e.path, "its official/ counterpart is missing or differs in dtype or shape"});
    else if (ex && !cov.selects(canonical))
      out.push_back({e.path, "exact values of an output outside the manifest's exact_values.selection '" +
                                 printable_name(cov.text(), 80) + "'"});
    else if (off && twin == nullptr && cov.selects(canonical))
      out.push_back({e.path, "its exact/ counterpart is missing" +
                                 (cov.all ? std::string()
                                          : " (the manifest's exact_values.selection '" +
                                                printable_name(cov.text(), 80) + "' selects it)")});
  }
  return out;
}

}  // namespace

const char* golden_role_name(GoldenRole r) {
  switch (r) {
    case GoldenRole::kValue:
      return "value";
    case GoldenRole::kDiscrete:
      return "discrete";
    case GoldenRole::kDecision:
      return "decision";
    case GoldenRole::kInput:
      return "input";
  }
  return "?";
}

GoldenRole golden_role_of(const std::string& canonical) {
  const std::optional<OutputRef> d = describe_output(canonical);
  if (!d) return GoldenRole::kValue;
  switch (d->desc->role) {
    case OutputRole::kDecisionIds:
      return GoldenRole::kDiscrete;
    case OutputRole::kScores:
    case OutputRole::kMargins:
    case OutputRole::kChoiceScores:
      return GoldenRole::kDecision;
    case OutputRole::kValue:
      break;
  }
  return GoldenRole::kValue;
}

std::vector<Vec> gate_biases(const ModelWeights& w) {
  std::vector<Vec> biases;
  for (const BlockWeights& l : w.layers) biases.push_back(l.ffn.gate.bias);
  for (const MtpWeights& m : w.mtp) biases.push_back(m.block.ffn.gate.bias);
  return biases;
}

void add_choice_scores(const ModelConfig& c, const std::vector<Vec>& biases, Mode mode, MemoryRecorder& rec) {
  const Precision p(mode);
  std::vector<std::pair<std::string, RecordedTensor>> add;
  for (const auto& [name, t] : rec.entries()) {
    const std::optional<OutputRef> d = describe_output(name, &c);
    if (!d || d->desc->role != OutputRole::kScores || d->desc->decision != DecisionKind::kExperts) continue;
    const Vec& b = biases.at(static_cast<std::size_t>(d->block));
    if (b.size() == 0) continue;  // hash-routed: chosen by tid2eid, no scores behind the choice
    RecordedTensor s = t;
    const std::int64_t e = t.shape.back();
    for (std::size_t i = 0; i < s.values.size(); ++i)
      s.values[i] = p.add(t.values[i], b(static_cast<std::int64_t>(i) % e));
    add.emplace_back(d->step + "/" + d->module + "/choice_scores", std::move(s));
  }
  for (auto& [n, t] : add) rec.record(n, std::move(t));
}

std::string golden_tolerance_json(const std::vector<double>& exact, const std::vector<double>& official) {
  return tolerance_entry(exact, official).dump();
}

ExactCoverage parse_exact_coverage(const std::string& text, const std::string& option) {
  ExactCoverage c;
  if (text == "all") return c;
  c.all = false;
  if (text == "none") {
    c.selection.text = text;
    return c;
  }
  c.selection = parse_module_selection(text, option);
  for (const ModuleSelection::Selector& sel : c.selection.selectors)
    if (sel.module == "none" || sel.module == "all")
      throw InputError(option, "'" + text + "': all and none stand alone, not in a list of selectors");
  return c;
}

namespace {

// Keeps the outputs an ExactCoverage selects (generate --exact-layers): the exact run's recorder.
class SelectingRecorder final : public Recorder {
 public:
  SelectingRecorder(const ExactCoverage& cov, MemoryRecorder& into) : cov_(cov), into_(into) {}
  void record(const std::string& name, RecordedTensor value) override {
    if (cov_.selects(name)) into_.record(name, std::move(value));
  }

 private:
  const ExactCoverage& cov_;
  MemoryRecorder& into_;
};

}  // namespace

GoldenGenerateStats generate_golden(const GoldenGenerateOptions& o, const std::string& out,
                                    const GoldenProgressFn& progress) {
  GoldenGenerateStats st;
  const ModelConfig& c = o.config;
  check_tokens(o.tokens, c.vocab_size, o.tokens_source.empty() ? "--tokens" : o.tokens_source);
  const auto plan = plan_steps(c, static_cast<std::int64_t>(o.tokens.size()),
                               static_cast<std::int64_t>(o.tokens.front().size()), o.decode_steps);
  if (o.train)
    if (const auto why = train_golden_refusal(c, static_cast<std::int64_t>(o.tokens.size()),
                                              static_cast<std::int64_t>(o.tokens.front().size())))
      throw InputError("--train", *why);
  if (o.official_runner) check_runner_batch(*o.official_runner, static_cast<std::int64_t>(o.tokens.size()));
  if (o.train && !o.exact.all)
    throw InputError("--exact-layers", "a --train golden holds the exact values of every output (--exact-layers all)");

  auto t0 = std::chrono::steady_clock::now();
  ModelWeights w = make_weights(c, o.weights);
  const std::string content_sha = weights_content_sha256(c, w);
  const std::vector<Vec> biases = gate_biases(w);
  st.seconds_weights = seconds_since(t0);
  if (progress) progress("weights", "ready", "");

  MemoryRecorder rec[2];
  const Mode modes[2] = {Mode::kExact, Mode::kOfficial};
  // --exact-layers none: no exact run at all (the golden holds official values and decisions only).
  for (int m = o.exact.none() ? 1 : 0; m < 2; ++m) {
    t0 = std::chrono::steady_clock::now();
    // One copy of the weights at a time (issue 13 item 9): the first mode takes them, the second
    // makes them again (deterministic: the same seed or file, content hash checked below) once
    // the first model is gone, instead of a copy held beside the first model.
    if (m == 1 && !o.exact.none()) {
      w = make_weights(c, o.weights);
      if (weights_content_sha256(c, w) != content_sha)
        throw std::logic_error("golden: the weights made for the official run differ from the exact run's");
      st.seconds_weights += seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
    }
    const std::string mn = mode_name(modes[m]);
    const StepProgressFn step_progress = [&](const std::string& step, const std::string& module) {
      if (progress) progress(mn, step, module);
    };
    if (modes[m] == Mode::kOfficial && o.official_runner) {  // generate --device gpu
      o.official_runner->run(c, w, o.tokens, plan, rec[m], step_progress);
      w = ModelWeights{};
    } else {
      const Transformer model(Precision(modes[m]), c, std::move(w));
      SelectingRecorder selected(o.exact, rec[m]);  // the exact run keeps the selected outputs
      Recorder& into = modes[m] == Mode::kExact ? static_cast<Recorder&>(selected) : rec[m];
      run_plan(model, o.tokens, plan, into, step_progress);
    }
    add_choice_scores(c, biases, modes[m], rec[m]);
    (m == 0 ? st.seconds_exact : st.seconds_official) = seconds_since(t0);
  }

  t0 = std::chrono::steady_clock::now();
  const auto& ex = rec[0].entries();
  const auto& off = rec[1].entries();
  for (const auto& [name, t] : off)  // exact values exactly for the selected outputs
    if ((ex.count(name) != 0) != o.exact.selects(name))
      throw std::logic_error("golden: the exact run recorded " + name + (ex.count(name) != 0 ? "" : " not") +
                             " against the exact selection");
  if (ex.size() > off.size()) throw std::logic_error("golden: the exact run recorded outputs the official did not");
  Hdf5File f = Hdf5File::create(out);
  ojson datasets = ojson::array();

  const std::int64_t b = static_cast<std::int64_t>(o.tokens.size());
  const std::int64_t len = static_cast<std::int64_t>(o.tokens.front().size());
  std::vector<std::int64_t> flat, starts, lengths, mtp;
  for (const auto& s : o.tokens) flat.insert(flat.end(), s.begin(), s.end());
  for (const StepPlan& p : plan) {
    starts.push_back(p.start_pos);
    lengths.push_back(p.length);
    mtp.push_back(p.mtp ? 1 : 0);
  }
  const auto steps_n = static_cast<std::int64_t>(plan.size());
  write_entry(f, datasets, "inputs/tokens", int64_tensor({b, len}, flat), GoldenRole::kInput, 0);
  write_entry(f, datasets, "inputs/start_pos", int64_tensor({steps_n}, starts), GoldenRole::kInput, 0);
  write_entry(f, datasets, "inputs/length", int64_tensor({steps_n}, lengths), GoldenRole::kInput, 0);
  write_entry(f, datasets, "inputs/mtp", int64_tensor({steps_n}, mtp), GoldenRole::kInput, 0);

  ojson tol_entries = ojson::object();
  for (const auto& [name, t_off] : off) {
    const GoldenRole role = golden_role_of(name);
    ++st.outputs;
    const auto it = ex.find(name);
    if (it != ex.end()) {  // the exact values (all, or the selected outputs) first, as before
      const RecordedTensor& t_ex = it->second;
      if (t_off.shape != t_ex.shape || t_off.integral != t_ex.integral)
        throw std::logic_error("golden: " + name + " differs in shape between the exact and official runs");
      const Tensor t = recorded_to_tensor(t_ex);
      st.value_bytes += static_cast<std::int64_t>(t.nbytes());
      write_entry(f, datasets, "exact/" + name, t, role, o.deflate);
      ++st.exact_outputs;
    }
    const Tensor t = recorded_to_tensor(t_off);
    st.value_bytes += static_cast<std::int64_t>(t.nbytes());
    write_entry(f, datasets, "official/" + name, t, role, o.deflate);
    if (it != ex.end() && (role == GoldenRole::kValue || role == GoldenRole::kDecision) && !t_off.integral)
      tol_entries[name] = tolerance_entry(it->second.values, t_off.values);
  }
  st.seconds_write = seconds_since(t0);

  // train/ (train_golden.hpp): the weights made a third time (the forward runs took them), checked.
  ojson train_section;
  if (o.train) {
    t0 = std::chrono::steady_clock::now();
    w = make_weights(c, o.weights);
    if (weights_content_sha256(c, w) != content_sha)
      throw std::logic_error("golden: the weights made for the training step differ from the exact run's");
    st.seconds_weights += seconds_since(t0);
    TrainGoldenStats ts;
    const double write_before = st.seconds_write;
    const auto t_train = std::chrono::steady_clock::now();
    train_section = ojson::parse(write_train_group(
        c, w, o.tokens.front(), *o.train,
        [&](const std::string& path, const Tensor& t) {
          const std::optional<TrainDatasetDesc> d = describe_train_dataset(path);
          if (!d) throw std::logic_error("golden: " + path + " is not a described train/ dataset");
          st.value_bytes += static_cast<std::int64_t>(t.nbytes());
          write_entry(f, datasets, path, t, d->role, o.deflate);
        },
        &ts));
    st.seconds_train = ts.seconds_step;
    st.seconds_write = write_before + seconds_since(t_train) - ts.seconds_step;
    w = ModelWeights{};
  }
  t0 = std::chrono::steady_clock::now();

  ojson man;
  man["format"] = kGoldenFormatName;
  man["format_version"] = kGoldenFormatVersion;
  man["generator"] = kGenerator;
  man["config"] = ojson::parse(config_to_json(c));
  man["weights"] = weights_manifest(o, content_sha);
  ojson in;
  in["tokens_source"] = o.tokens_source;
  in["batch"] = b;
  in["length"] = len;
  in["decode_steps"] = o.decode_steps;
  in["steps"] = ojson::parse(steps_json(plan));
  in["mtp_rule"] = "mtp.0 pairs position p with token p+1, in every step whose next tokens are all known";
  man["inputs"] = std::move(in);
  man["modes"] = {{"exact", "double arithmetic, only the model-defined quantisation points round (ref/README.md)"},
                  {"official", "the official inference code's bf16/fp32 policy, canonical arithmetic C1-C8"}};
  if (o.official_runner)  // absent: the CPU reference computed every value (the committed goldens)
    man["official_device"] = {
        {"device", o.official_runner->device},
        {"computed_by", o.official_runner->description},
        {"official_values",
         "official/: every module output of the official mode as this device computed it "
         "(its contract: bit-identical to the CPU reference's; dsv4 golden verify --recompute "
         "checks it on the CPU)"},
        {"cpu",
         "exact/ (values, decision scores and margins), tolerance figures and train/ come from the CPU "
         "reference"}};
  if (!o.exact.all)  // absent: every output has its exact values (the committed goldens)
    man["exact_values"] = {
        {"selection", o.exact.text()},
        {"outputs", st.exact_outputs},
        {"official_only_outputs", st.outputs - st.exact_outputs},
        {"meaning",
         "exact/ (values, decision scores and margins) and tolerance.tensors hold only the outputs this selection "
         "selects ([STEP/]MODULE globs as dsv4 golden verify --recompute-only; none: no exact values, the golden "
         "holds the official values and decisions of every output only); official/ holds every output. certify "
         "judges only outputs with exact values and reports the others NOT JUDGED (verdict PARTIAL, never PASS); "
         "golden verify --recompute / --recompute-only prove the official values on the CPU"}};
  ojson tol;
  tol["metadata"] =
      "per value tensor: official_grid (finest of bf16/fp32/float64 holding every official value); "
      "official_compared, official_max_abs, official_rms, official_bias_sum (official - exact, over elements "
      "finite in both; bias_sum = sum (o - e) sign(e)) and exact_rms, as compare::compute_metrics(official, exact) "
      "gives them";
  tol["discrete"] =
      "indexer/out and ffn.gate/out1 are compared as sets per row; a different set is accepted only where the "
      "golden's scores (indexer/scores, ffn.gate/choice_scores) show a near-tie: see oracle/README.md §Goldens";
  tol["tensors"] = std::move(tol_entries);
  man["tolerance"] = std::move(tol);
  if (o.train) man["train"] = std::move(train_section);
  man["hash_definition"] = "sha256 of the dataset's elements as little-endian bytes in row-major order";
  man["datasets"] = std::move(datasets);
  st.datasets = static_cast<std::int64_t>(man["datasets"].size());
  seal_golden(f, man.dump(1));
  st.seconds_write += seconds_since(t0);
  return st;
}

// ---------------------------------------------------------------------------------------------
// Opening

Golden Golden::open(const std::string& path) { return open_with(path, false); }

Golden Golden::open_verified(const std::string& path, const std::string& pinned_sha256) {
  std::string pin = pinned_sha256;
  for (char& ch : pin)
    if (ch >= 'A' && ch <= 'F') ch = static_cast<char>(ch - 'A' + 'a');
  if (!pin.empty() && (pin.size() != 64 || pin.find_first_not_of("0123456789abcdef") != std::string::npos))
    throw InputError("--golden-sha256", "expected the manifest's SHA-256 as 64 hexadecimal digits, got '" +
                                            printable_name(pinned_sha256, 80) + "'");
  Golden g = open_with(path, true);
  if (!pin.empty() && g.manifest_sha256() != pin)
    bad_golden(path, "manifest SHA-256 " + g.manifest_sha256() + " is not the pinned --golden-sha256 " + pin +
                         " (another golden, or this one edited and re-hashed)");
  return g;
}

std::string Golden::manifest_sha256() const { return sha256_hex(manifest_text_); }

void Golden::check_read(const std::string& path, const Tensor& t) const {
  if (!verify_reads_) return;
  const GoldenEntry* e = find(path);
  if (e == nullptr)
    bad_golden(path_, path + ": not listed in the manifest (a golden's every dataset is; dsv4 golden verify)");
  if (storage_name(t.dtype()) != e->dtype || t.shape() != e->shape)
    bad_golden(path_, path + ": " + storage_name(t.dtype()) + " " + t.shape_string() + ", the manifest lists " +
                          e->dtype + " " + shape_string(e->shape) + " (a damaged golden: dsv4 golden verify)");
  if (tensor_sha256(t) != e->sha256)
    bad_golden(path_, path + ": SHA-256 differs from the manifest's (the data was changed: a damaged or " +
                          "edited golden; dsv4 golden verify lists every such dataset)");
}

Golden Golden::open_with(const std::string& path, bool verify) {
  Golden g;
  g.path_ = path;
  g.verify_reads_ = verify;
  g.file_.emplace(Hdf5File::open(path));
  const Hdf5File& f = *g.file_;
  if (!f.has_attr("/", "dsv4_format"))
    bad_golden(path, "not a dsv4 golden (no dsv4_format attribute on the root group)");
  if (f.attr_string("/", "dsv4_format") != kGoldenFormatName)
    bad_golden(path, "not a dsv4 golden (dsv4_format is '" + f.attr_string("/", "dsv4_format") + "')");
  const std::int64_t v = f.attr_int64("/", "dsv4_format_version");
  if (v != kGoldenFormatVersion)
    bad_golden(path, "golden format version " + std::to_string(v) + " is not supported (this dsv4 reads version " +
                         std::to_string(kGoldenFormatVersion) + ")");
  if (!f.is_dataset("manifest")) bad_golden(path, "manifest: missing");
  g.manifest_text_ = f.read_string("manifest");
  if (verify) {  // the manifest holds every dataset's hash: it must be the one the root attribute names
    if (!f.has_attr("/", "manifest_sha256"))
      bad_golden(path, "manifest: the root attribute manifest_sha256 is missing");
    if (f.attr_string("/", "manifest_sha256") != g.manifest_sha256())
      bad_golden(path, "manifest: SHA-256 differs from the root attribute manifest_sha256 (the manifest was changed)");
  }
  ojson m;
  try {
    m = ojson::parse(g.manifest_text_);
  } catch (const std::exception& e) {
    bad_golden(path, std::string("manifest: not valid JSON: ") + e.what());
  }
  try {
    if (m.at("format").get<std::string>() != kGoldenFormatName ||
        manifest_int(path, m.at("format_version"), "format_version") != v)
      bad_golden(path, "manifest: format fields disagree with the root attributes");
    const ojson& cj = m.at("config");
    g.config_ = parse_config_json(cj.dump(), path);
    if (cj.contains("dsv4_name")) g.config_.name = cj.at("dsv4_name").get<std::string>();
    g.weights_json_ = m.at("weights").dump();
    if (m.contains("official_device")) g.official_device_ = m.at("official_device").at("device").get<std::string>();
    if (m.contains("exact_values")) {
      const std::string sel = m.at("exact_values").at("selection").get<std::string>();
      try {
        g.exact_coverage_ = parse_exact_coverage(sel, "manifest exact_values.selection");
      } catch (const InputError& e) {
        bad_golden(path, std::string("manifest: ") + e.what());
      }
    }
    for (const ojson& s : m.at("inputs").at("steps"))
      g.steps_.push_back({s.at("step").get<std::string>(), manifest_int(path, s.at("start_pos"), "steps: start_pos"),
                          manifest_int(path, s.at("length"), "steps: length"), s.at("mtp").get<bool>()});
    for (const ojson& e : m.at("datasets")) {
      GoldenEntry ge;
      ge.path = e.at("path").get<std::string>();
      ge.dtype = e.at("dtype").get<std::string>();
      ge.shape = manifest_shape(path, e.at("shape"), printable_name(ge.path, 120));
      const std::string role = e.at("role").get<std::string>();
      bool known = false;
      for (GoldenRole r : {GoldenRole::kValue, GoldenRole::kDiscrete, GoldenRole::kDecision, GoldenRole::kInput})
        if (role == golden_role_name(r)) {
          ge.role = r;
          known = true;
        }
      if (!known) bad_golden(path, "manifest: dataset " + ge.path + " has unknown role '" + role + "'");
      ge.sha256 = e.at("sha256").get<std::string>();
      if (!g.by_path_.emplace(ge.path, g.entries_.size()).second)
        bad_golden(path, "manifest: dataset " + ge.path + " listed twice");
      g.entries_.push_back(std::move(ge));
    }
    for (const auto& [name, t] : m.at("tolerance").at("tensors").items()) {
      GoldenTolerance gt;
      try {
        gt.official_grid = golden_grid_dtype(t.at("official_grid").get<std::string>());
      } catch (const std::invalid_argument& e) {
        bad_golden(path, "manifest: tolerance.tensors." + name + ": " + e.what());
      }
      if (t.contains("official_bias_sum")) {
        GoldenTolerance::Figures fig;
        fig.error.compared = manifest_int(path, t.at("official_compared"), "tolerance.tensors." + name);
        fig.error.max_abs = t.at("official_max_abs").get<double>();
        fig.error.rms = t.at("official_rms").get<double>();
        fig.error.bias_sum = t.at("official_bias_sum").get<double>();
        fig.exact_rms = t.at("exact_rms").get<double>();
        gt.official = fig;
      }
      g.tolerance_.emplace(name, gt);
    }
  } catch (const nlohmann::json::exception& e) {
    bad_golden(path, std::string("manifest: does not follow the v1 schema: ") + e.what());
  } catch (const ConfigError& e) {
    bad_golden(path, std::string("manifest: config: ") + e.what());
  }
  if (g.find("inputs/tokens") == nullptr) bad_golden(path, "manifest: inputs/tokens is not listed");
  const Tensor tok = g.read("inputs/tokens");
  if (tok.dtype() != DType::kI64 || tok.rank() != 2)
    bad_golden(path, "inputs/tokens: expected int64 [b, L], got " + std::string(dtype_name(tok.dtype())) + " " +
                         tok.shape_string());
  for (std::int64_t i = 0; i < tok.dim(0); ++i) {
    const auto v64 = tok.values<std::int64_t>();
    g.tokens_.emplace_back(v64.begin() + i * tok.dim(1), v64.begin() + (i + 1) * tok.dim(1));
  }
  if (verify) {  // what judging relies on (diff's recomputation runs these tokens and steps); fuzz_golden
    const std::vector<GoldenProblem> problems = judging_problems(g);
    if (!problems.empty())
      bad_golden(path, printable_name(problems.front().dataset, 120) + ": " + problems.front().what +
                           " (dsv4 golden verify lists every problem)");
  }
  return g;
}

std::int64_t Golden::decode_steps() const { return static_cast<std::int64_t>(steps_.size()) - 1; }

const GoldenEntry* Golden::find(const std::string& path) const {
  const auto it = by_path_.find(path);
  return it == by_path_.end() ? nullptr : &entries_[it->second];
}

const GoldenTolerance* Golden::tolerance(const std::string& canonical) const {
  const auto it = tolerance_.find(canonical);
  return it == tolerance_.end() ? nullptr : &it->second;
}

DType golden_grid_dtype(const std::string& grid) {
  if (grid == "bf16") return DType::kBF16;
  if (grid == "fp32") return DType::kF32;
  if (grid == "float64") return DType::kF64;
  throw std::invalid_argument("official_grid '" + grid + "' is none of bf16, fp32, float64");
}

std::vector<std::string> Golden::canonical_names() const {
  std::vector<std::string> v;
  for (const GoldenEntry& e : entries_)
    if (e.path.rfind("official/", 0) == 0) v.push_back(e.path.substr(9));
  return v;
}

std::string Golden::weights_json() const { return weights_json_; }

std::optional<std::uint64_t> Golden::weights_seed() const {
  const ojson w = ojson::parse(weights_json_);
  if (!w.is_object() || !w.contains("source") || w.at("source") != "synthetic") return std::nullopt;
  const ojson seed = w.contains("seed") ? w.at("seed") : ojson();
  const std::optional<std::uint64_t> v = seed.is_string() ? parse_seed_string(seed.get<std::string>()) : std::nullopt;
  if (!v)
    bad_golden(path_, "manifest: weights.seed of synthetic weights must be a decimal uint64 string, got " +
                          printable_name(seed.dump(), 80));
  return v;
}

std::optional<std::uint64_t> parse_seed_string(std::string_view s) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  std::uint64_t v = 0;
  for (const char ch : s) {
    if (ch < '0' || ch > '9') return std::nullopt;
    const auto digit = static_cast<std::uint64_t>(ch - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

Tensor Golden::read(const std::string& path) const {
  Tensor t = file_->read(path);
  check_read(path, t);
  return t;
}

void Golden::read_into(const std::string& path, Tensor& into) const {
  file_->read_into(path, into);
  if (const GoldenEntry* e = find(path); e != nullptr && into.shape() != e->shape)
    throw InputError(path_, path + ": shape " + into.shape_string() + " differs from the manifest's " +
                                shape_string(e->shape) +
                                " (a damaged golden: dsv4 golden verify names every such dataset)");
  check_read(path, into);
}

std::vector<double> Golden::values(const std::string& mode, const std::string& canonical) const {
  const Tensor t = read(mode + "/" + canonical);
  if (t.dtype() == DType::kF64) {
    const auto s = t.values<double>();
    return std::vector<double>(s.begin(), s.end());  // no zero-fill before the copy
  }
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  if (t.dtype() == DType::kI64) {
    const auto s = t.values<std::int64_t>();
    std::transform(s.begin(), s.end(), v.begin(), [](std::int64_t x) { return static_cast<double>(x); });
  } else {
    throw InputError(path_,
                     mode + "/" + canonical + ": expected float64 or int64, got " + std::string(dtype_name(t.dtype())));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Verification

GoldenVerifyResult verify_golden(const std::string& path) {
  GoldenVerifyResult r;
  const auto problem = [&](const std::string& ds, const std::string& what) { r.problems.push_back({ds, what}); };
  const Golden g = Golden::open(path);
  const Hdf5File& f = g.file();

  // The manifest itself.
  if (!f.has_attr("/", "manifest_sha256"))
    problem("manifest", "the root attribute manifest_sha256 is missing");
  else if (f.attr_string("/", "manifest_sha256") != sha256_hex(g.manifest_text()))
    problem("manifest", "SHA-256 differs from the root attribute manifest_sha256 (the manifest was changed)");

  // Every listed dataset: present, dtype, shape, hash.
  std::set<std::string> listed;
  for (const GoldenEntry& e : g.entries()) {
    listed.insert(e.path);
    if (!f.is_dataset(e.path)) {
      problem(e.path, "listed in the manifest but missing from the file");
      continue;
    }
    const Tensor t = f.read(e.path);
    ++r.datasets_checked;
    if (storage_name(t.dtype()) != e.dtype) {
      problem(e.path, "dtype " + storage_name(t.dtype()) + ", the manifest says " + e.dtype);
      continue;
    }
    if (t.shape() != e.shape) {
      problem(e.path, "shape " + t.shape_string() + " differs from the manifest's");
      continue;
    }
    if (tensor_sha256(t) != e.sha256) problem(e.path, "SHA-256 mismatch (the data was changed)");
  }
  // Nothing unlisted.
  for (const std::string& p : f.list_datasets())
    if (p != "manifest" && listed.count(p) == 0) problem(p, "in the file but not in the manifest");

  // Schema: inputs, steps, exact/official pairing, value dtypes.
  for (const char* in : {"inputs/tokens", "inputs/start_pos", "inputs/length", "inputs/mtp"})
    if (g.find(in) == nullptr) problem(in, "required input dataset not listed");
  if (const GoldenEntry* sp = g.find("inputs/start_pos"); sp != nullptr && f.is_dataset(sp->path)) {
    const Tensor t = f.read(sp->path);
    bool same = t.dtype() == DType::kI64 && t.numel() == static_cast<std::int64_t>(g.steps().size());
    for (std::size_t i = 0; same && i < g.steps().size(); ++i)
      same = t.values<std::int64_t>()[i] == g.steps()[i].start_pos;
    if (!same) problem("inputs/start_pos", "disagrees with the manifest's steps");
  }
  std::set<std::string> steps;
  for (const StepPlan& s : g.steps()) steps.insert(s.name);
  for (const GoldenEntry& e : g.entries()) {
    const bool ex = e.path.rfind("exact/", 0) == 0, off = e.path.rfind("official/", 0) == 0;
    if (e.path.rfind("train/", 0) == 0) continue;  // verify_train_group below
    if (!ex && !off) {
      if (e.role != GoldenRole::kInput) problem(e.path, "outside exact/, official/, inputs/ and train/");
      continue;
    }
    const std::string canonical = e.path.substr(ex ? 6 : 9);
    const auto slash = canonical.find('/');
    if (slash == std::string::npos || canonical.rfind('/') == slash) {
      problem(e.path, "not a canonical name <step>/<module>/<output>");
      continue;
    }
    if (steps.count(canonical.substr(0, slash)) == 0) problem(e.path, "its step is not in the manifest's steps");
    if (e.role != golden_role_of(canonical)) problem(e.path, "role does not match its name");
  }
  // Tokens, steps, exact/official pairs: what certify and diff refuse to judge with.
  for (GoldenProblem& p : judging_problems(g)) r.problems.push_back(std::move(p));

  // The stored official-error figures are those of the data (certify relies on them instead of
  // reading the official values).
  const ojson manifest = ojson::parse(g.manifest_text());
  for (const auto& [name, t] : manifest.at("tolerance").at("tensors").items())
    if (!g.has_exact(name))
      problem("manifest", "tolerance.tensors." + printable_name(name, 120) +
                              ": figures of an output without exact values (there is no exact/" +
                              printable_name(name, 120) + ")");
  for (const std::string& name : g.canonical_names()) {
    const GoldenTolerance* t = g.tolerance(name);
    if (t == nullptr || !t->official || !f.is_dataset("exact/" + name) || !f.is_dataset("official/" + name)) continue;
    const ojson& stored = manifest.at("tolerance").at("tensors").at(name);
    const std::vector<double> exact = g.values("exact", name), official = g.values("official", name);
    if (exact.size() != official.size()) continue;  // a shape problem, reported above (fuzz_golden)
    const ojson data = tolerance_entry(exact, official);
    if (stored != data)
      problem("manifest", "tolerance.tensors." + name + " disagrees with the data (" + stored.dump() + " stored, " +
                              data.dump() + " computed)");
  }

  // The training step (train_golden.hpp).
  for (GoldenProblem& p : verify_train_group(g)) r.problems.push_back(std::move(p));
  return r;
}

void seal_golden(Hdf5File& f, const std::string& manifest_text) {
  f.write_string("manifest", manifest_text);
  f.set_attr("/", "dsv4_format", kGoldenFormatName);
  f.set_attr("/", "dsv4_format_version", kGoldenFormatVersion);
  f.set_attr("/", "manifest_sha256", sha256_hex(manifest_text));
  f.commit();
}

}  // namespace dsv4
