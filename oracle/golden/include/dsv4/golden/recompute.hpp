// `dsv4 golden verify --recompute` (issue 18 item 2): a golden's official outputs recomputed from
// its own tokens, steps and weights — by the CPU reference (Transformer, official mode) or by an
// OfficialRunner (GpuModel's CUDA backend) — and compared bit for bit with the stored ones. A golden
// whose official values a GPU computed (generate --device gpu) is proved by the CPU this way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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
  std::string device;        // what recomputed: "cpu" or the runner's device
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

// "[0, 3, 17]".
std::string coordinate_text(const std::vector<std::int64_t>& coordinate);

}  // namespace dsv4
