// Golden HDF5 sets, format version 1 (goldens/README.md is the normative description).
//
//   /                      attrs dsv4_format = "dsv4-golden", dsv4_format_version = 1,
//                          manifest_sha256 (SHA-256 of the /manifest text)
//   /manifest              JSON text: generator, config, weights, inputs, steps, tolerance metadata,
//                          and one entry {path, dtype, shape, role, sha256} per dataset
//   /inputs/tokens         int64 [b, L]  token ids
//   /inputs/start_pos      int64 [steps] start_pos of each step (prefill, decode0, …)
//   /inputs/length         int64 [steps] tokens per sequence in each step
//   /inputs/mtp            int64 [steps] 1 when mtp.0 ran in the step
//   /exact/<canonical>     float64 / int64  the `exact` mode outputs (canonical name
//   /official/<canonical>  float64 / int64  `<step>/<module path>/<output>`), the `official` ones
//   /train/…               one training step, exact (`--train`; train_golden.hpp)
//
// A dataset's sha256 is that of its elements as little-endian bytes in row-major order
// (numpy: hashlib.sha256(np.ascontiguousarray(d[()]).astype('<f8' or '<i8').tobytes())).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/compare/tolerance.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/glob.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/numerics/tensor.hpp"
#include "dsv4/train/train_step.hpp"

namespace dsv4 {

inline constexpr std::int64_t kGoldenFormatVersion = 1;
inline constexpr const char* kGoldenFormatName = "dsv4-golden";

// What a golden dataset is for (manifest field "role").
enum class GoldenRole {
  kValue,     // a module output compared as numbers
  kDiscrete,  // a discrete decision compared as a set per row (indexer top-k lists, expert ids)
  kDecision,  // data behind a decision: scores, margins, choice scores (used for near-tie acceptance;
              // compared as numbers when a candidate has them, never reported missing)
  kInput,     // /inputs/…
};
const char* golden_role_name(GoldenRole r);
// The role of a canonical output name (`<step>/<module>/<output>`).
GoldenRole golden_role_of(const std::string& canonical);

// Which outputs a golden holds exact values for (`generate --exact-layers`, the manifest's
// exact_values; goldens/README.md §Exact values of some modules only). all: every output (the
// default; goldens without exact_values); none: no exact values at all — the golden holds the
// official values and decisions only; else the outputs the module selection selects (the selectors
// of `golden verify --recompute-only`: layers.0, prefill/layers.*.ffn, head).
struct ExactCoverage {
  bool all = true;
  ModuleSelection selection;  // !all: the selected modules; no selectors: none
  std::string text() const { return all ? "all" : selection.selectors.empty() ? "none" : selection.text; }
  bool none() const { return !all && selection.selectors.empty(); }
  bool selects(const std::string& canonical) const { return all || module_selection_selects(selection, canonical); }
};
// "all", "none" or selectors; InputError naming `option` for a malformed selector.
ExactCoverage parse_exact_coverage(const std::string& text, const std::string& option = "--exact-layers");

struct GoldenGenerateOptions {
  ModelConfig config;
  WeightsSpec weights;
  std::vector<std::vector<std::int64_t>> tokens;  // [b][L]
  std::int64_t decode_steps = 0;
  std::string tokens_source;  // how the tokens were made (file name or "synthetic seed S"), for the manifest
  int deflate = 6;            // gzip level of datasets of ≥ 4 KiB (0: contiguous)
  // Also one training step on the tokens (one sequence, all of them) under train/ (train_golden.hpp);
  // InputError naming --train when train_golden_refusal refuses the config or the tokens.
  std::optional<TrainStepOptions> train;
  // The official values from another implementation (`generate --device gpu`: GpuModel's CUDA
  // backend) instead of the CPU reference's Transformer; the exact values, the decision scores and
  // margins of the exact run, the tolerance figures and the training step still come from the CPU.
  // The manifest then names it (official_device). InputError naming --device when the tokens hold
  // more sequences than it runs (OfficialRunner::max_batch).
  std::optional<OfficialRunner> official_runner;
  // The outputs whose exact values are computed and written (the exact mode runs on the CPU: a
  // forward of the whole model unless none is asked, then no exact run at all); the official values
  // and decisions of every output are written whatever it is. A training step needs all.
  ExactCoverage exact;
};

struct GoldenGenerateStats {
  double seconds_weights = 0, seconds_exact = 0, seconds_official = 0, seconds_write = 0;
  double seconds_train = 0;  // the training step (forward, backward, optimizer), --train only
  std::int64_t datasets = 0;
  std::int64_t value_bytes = 0;                 // uncompressed bytes of the exact + official datasets
  std::int64_t outputs = 0, exact_outputs = 0;  // official outputs written; those with exact values
};

// Progress: (mode, step, module) after each module; ("weights", "ready", "") once the weights are made.
using GoldenProgressFn = std::function<void(const std::string&, const std::string&, const std::string&)>;

// Runs both modes and writes the golden atomically to `out`. InputError / CheckpointError on bad input.
GoldenGenerateStats generate_golden(const GoldenGenerateOptions& o, const std::string& out,
                                    const GoldenProgressFn& progress = {});

// The gate biases of every score-routed gate's block, main layers then MTP blocks (empty for a
// hash-routed gate): what add_choice_scores adds.
std::vector<Vec> gate_biases(const ModelWeights& w);
// spec 03 §3.1 step 3: the gate chooses by ŝ = s + b (official: fl32(s + b)). The recorder keeps the
// unbiased scores s; a golden adds ŝ as `…ffn.gate/choice_scores` (for every recorded score-routed
// gate's scores in `rec`) so that a different expert choice can be judged against the scores it
// was made on.
void add_choice_scores(const ModelConfig& c, const std::vector<Vec>& biases, Mode mode, MemoryRecorder& rec);

// The tolerance metadata of one value tensor as the manifest stores it (tolerance.tensors.<canonical>),
// JSON text: the figures of compare::compute_metrics(official, exact) on the official values' grid.
// What generate writes and verify recomputes (and tests that forge a consistent golden).
std::string golden_tolerance_json(const std::vector<double>& exact, const std::vector<double>& official);

// The manifest's names of the grid an official value tensor lies on ("bf16", "fp32", "float64");
// std::invalid_argument for any other name.
DType golden_grid_dtype(const std::string& grid);

// A value tensor's tolerance metadata (manifest tolerance.tensors.<canonical>).
struct GoldenTolerance {
  DType official_grid = DType::kF32;
  // official − exact as compare::compute_metrics(official, exact) gives it, and the exact values'
  // RMS over the same elements; nullopt in goldens written before these figures were stored
  // (certify then computes them from the official values).
  struct Figures {
    compare::ReferenceError error;
    double exact_rms = 0.0;
  };
  std::optional<Figures> official;
};

struct GoldenEntry {
  std::string path;   // full HDF5 path without the leading "/" ("exact/prefill/layers.0.attn/out")
  std::string dtype;  // "float64" or "int64"
  std::vector<std::int64_t> shape;
  GoldenRole role = GoldenRole::kValue;
  std::string sha256;
};

// A verified-schema view of a golden (the manifest parsed); data is read on demand.
class Golden {
 public:
  // InputError when the file is not HDF5, not a dsv4 golden (no dsv4_format attribute), of another
  // format version, or its manifest is not valid JSON of the v1 schema (integers where integers
  // belong, shapes of at most 8 non-negative dimensions whose float64 bytes are addressable).
  static Golden open(const std::string& path);
  // Opens a golden to judge with it (certify, diff; goldens/README.md §What the hashes protect):
  // Golden::open, then the manifest's SHA-256 must equal the root attribute manifest_sha256 and,
  // when `pinned_sha256` is given (--golden-sha256: 64 hex digits, the manifest hash the user
  // expects), equal that too; from then on every dataset read through this object (read,
  // read_into, values; inputs/tokens at once) is hashed and must match its manifest entry.
  // What judging relies on is checked too: the tokens lie in the vocabulary, the manifest's steps
  // are the run's plan for those tokens and config (plan_steps), and every exact/ output has an
  // official/ counterpart of its dtype and shape — so that a golden edited and re-hashed (without
  // a pin) is refused rather than run (fuzz_golden).
  // Any mismatch is an InputError (bad input, exit 2) naming the dataset, or both hashes.
  static Golden open_verified(const std::string& path, const std::string& pinned_sha256 = "");

  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const std::string& manifest_text() const { return manifest_text_; }
  // SHA-256 of the manifest text (what --golden-sha256 pins; it covers every dataset's hash).
  std::string manifest_sha256() const;
  // Whether reads are checked against the manifest's hashes (open_verified).
  bool verifies_reads() const { return verify_reads_; }
  const std::vector<GoldenEntry>& entries() const { return entries_; }
  const std::vector<StepPlan>& steps() const { return steps_; }
  const std::vector<std::vector<std::int64_t>>& tokens() const { return tokens_; }
  std::int64_t decode_steps() const;
  // The canonical names (`<step>/<module>/<output>`) of every output: those under official/ (every
  // output has its official values; exact/ holds those of exact_coverage()).
  std::vector<std::string> canonical_names() const;
  // Which outputs hold exact values (the manifest's exact_values; all when absent) and whether
  // this one does (exact/<canonical> listed).
  const ExactCoverage& exact_coverage() const { return exact_coverage_; }
  bool has_exact(const std::string& canonical) const { return find("exact/" + canonical) != nullptr; }
  const GoldenEntry* find(const std::string& path) const;
  // The tolerance metadata of a value tensor, or nullptr when the manifest has none for it.
  const GoldenTolerance* tolerance(const std::string& canonical) const;
  // The weights as recorded: {"source": "synthetic", "seed": …} or {"source": "file", …} (JSON text).
  std::string weights_json() const;
  // What computed the official values: "cpu" (the CPU reference; goldens without the manifest's
  // official_device) or the manifest's official_device.device ("gpu": generate --device gpu).
  std::string official_device() const { return official_device_; }
  // The seed of synthetic weights; InputError when the manifest's seed is not a decimal uint64.
  std::optional<std::uint64_t> weights_seed() const;

  // Reads exact/<canonical> or official/<canonical> as double values (int64 widened exactly).
  std::vector<double> values(const std::string& mode, const std::string& canonical) const;
  // Under open_verified, InputError when the data's SHA-256 (or dtype) is not the manifest's, or
  // the dataset is not listed.
  Tensor read(const std::string& path) const;
  // Hdf5File::read_into; InputError when the data's shape is not the manifest's for that path
  // (and, under open_verified, its hash as read()).
  void read_into(const std::string& path, Tensor& into) const;
  const Hdf5File& file() const { return *file_; }

 private:
  Golden() = default;
  static Golden open_with(const std::string& path, bool verify);
  void check_read(const std::string& path, const Tensor& t) const;
  bool verify_reads_ = false;
  std::string path_;
  std::optional<Hdf5File> file_;
  std::string manifest_text_;
  ModelConfig config_;
  std::vector<GoldenEntry> entries_;
  std::map<std::string, std::size_t> by_path_;
  std::map<std::string, GoldenTolerance> tolerance_;
  std::vector<StepPlan> steps_;
  std::vector<std::vector<std::int64_t>> tokens_;
  std::string weights_json_;
  std::string official_device_ = "cpu";
  ExactCoverage exact_coverage_;
};

// A weights seed as dsv4 writes it (the manifest's weights.seed, a `dsv4 run` dump's root attribute
// weights_seed): the decimal digits of a uint64 — no sign, space or leading zero; nullopt for
// anything else (std::stoull took "-1" as 2^64 - 1 and " 7" as 7; fuzz_golden).
std::optional<std::uint64_t> parse_seed_string(std::string_view s);

struct GoldenProblem {
  std::string dataset;  // the dataset (or "manifest", "/" for root attributes)
  std::string what;
};

struct GoldenVerifyResult {
  std::int64_t datasets_checked = 0;
  std::vector<GoldenProblem> problems;
  bool ok() const { return problems.empty(); }
};

// Schema and hashes: every manifest entry exists with its dtype, shape and SHA-256; nothing else is in
// the file; inputs agree with the manifest; the stored official-error figures (GoldenTolerance) are
// those of the data; and what open_verified checks before judging, by the same code: the tokens lie
// in the vocabulary, the steps are the run's plan, exact/ and official/ hold the same names, dtypes
// and shapes.
// Throws InputError only when the file cannot be read as a golden at all (Golden::open's cases, or a
// read error such as truncated data).
GoldenVerifyResult verify_golden(const std::string& path);

// Seals a golden being written: the manifest text as /manifest, the format name and version and the
// manifest's SHA-256 as root attributes, then commits the file. The one way a golden is sealed —
// the generator, and the tests that forge consistent goldens, call it.
void seal_golden(Hdf5File& f, const std::string& manifest_text);

}  // namespace dsv4
