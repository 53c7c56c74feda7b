// `dsv4 golden verify --recompute` (issue 18 item 2): a golden's official outputs recomputed from
// its own tokens, steps and weights — by the CPU reference (Transformer, official mode) or by an
// OfficialRunner (GpuModel's CUDA backend) — and compared bit for bit with the stored ones. A golden
// whose official values a GPU computed (generate --device gpu) is proved by the CPU this way.
// `--recompute-only` spot-checks named modules instead: each recomputed from the golden's own
// recorded official inputs (teacher-forced, no forward of the model), so that a golden too large
// for a CPU forward (V4-Flash widths) is proved module by module.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/golden/glob.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"

namespace dsv4 {

// The first official output, in execution order, whose recomputed bits differ from the stored ones.
struct RecomputeMismatch {
  std::string output;                    // canonical name (the dataset is official/<output>)
  std::vector<std::int64_t> coordinate;  // of the first differing element, in the dataset's shape
  double stored = 0, recomputed = 0;     // int64 outputs widened exactly
  std::int64_t differing = 0;            // elements of the output whose bits differ
  // Empty for differing values; else why the output cannot be compared element by element
  // ("not recomputed", "recomputed but not in the golden", "shape … recomputed, … stored").
  std::string what;
};

struct GoldenRecomputeResult {
  std::string device;  // what recomputed: "cpu" or the runner's device
  // Spot checks (recompute_official_selected): the official outputs of the golden that were
  // selected and compared, in execution order; and how many others were not checked.
  std::vector<std::string> checked;
  std::int64_t not_checked = 0;
  std::int64_t outputs = 0;  // official outputs compared
  std::int64_t values = 0;   // their elements
  std::int64_t differing_outputs = 0;
  std::optional<RecomputeMismatch> first;
  bool ok() const { return !first && differing_outputs == 0; }
};

// Recomputes every official/ output of `g` (not train/: the training step's exact values are
// checked by golden verify's schema) from its tokens and steps with the weights `w`
// (diff::golden_weights gives the golden's own), adds the gates' choice scores as generate does, and
// compares each output's bits with the stored dataset's. `runner` null: the CPU reference. Reads go
// through `g` (hash-checked when it was opened with Golden::open_verified). InputError naming
// --device when the golden holds more sequences than the runner runs.
GoldenRecomputeResult recompute_official(const Golden& g, const ModelWeights& w, const OfficialRunner* runner = nullptr,
                                         const StepProgressFn& progress = {});

// `--recompute-only`: comma-separated selectors [STEP/]MODULE (glob.hpp ModuleSelection: "layers.3"
// selects every module of layer 3, "prefill/layers.*.ffn" the gates and MoE combines of every layer
// in the prefill, "layers.1,layers.5,head" those modules in every step).
using RecomputeSelection = ModuleSelection;
// InputError naming --recompute-only for an empty selector or one with more than one '/'.
RecomputeSelection parse_recompute_selection(const std::string& text);
bool recompute_selects(const RecomputeSelection::Selector& s, const std::string& canonical);
// The official outputs of `g` the selection selects, in execution order (and, when asked, how many
// official outputs the golden holds); InputError naming --recompute-only and the selector when one
// selects none.
std::vector<std::string> recompute_selected_outputs(const Golden& g, const RecomputeSelection& selection,
                                                    std::int64_t* official_outputs = nullptr);

// The spot check: every official output of `g` that `selection` selects, recomputed in official
// mode on the CPU reference from the golden's own official values of its module's inputs (the
// output table's site inputs: the previous module's output, the block input, the indexer's lists
// that the attention takes, the routing the MoE combine takes; the embedding from the tokens) —
// no forward of the model — and compared bit for bit as recompute_official compares. A selected
// attention in a decode step needs the layer's cache: that layer's attention is recomputed in every
// earlier step too (from the golden's inputs, not compared unless selected). InputError naming
// --recompute-only: a selector that selects no official output of the golden, or selected modules
// whose inputs the golden lacks (every missing input named).
GoldenRecomputeResult recompute_official_selected(const Golden& g, const ModelWeights& w,
                                                  const RecomputeSelection& selection,
                                                  const StepProgressFn& progress = {});

// "[0, 3, 17]".
std::string coordinate_text(const std::vector<std::int64_t>& coordinate);

}  // namespace dsv4
