// Recorded outputs → HDF5 datasets (oracle/README.md §Dump convention): the canonical name
// `<step>/<module path>/<output>` is the dataset's path (nested groups: `prefill` /
// `layers.3.attn` / `out`), under an optional prefix (goldens: `exact/`, `official/`).
// Float outputs are float64, integral outputs (top-k indices, expert ids; −1 = no entry) int64.
#pragma once

#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/model/recorder.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

// kF64, or kI64 for an integral output (its values are exact integers by the recorder's contract).
Tensor recorded_to_tensor(const RecordedTensor& r);

// Writes every entry of `rec` at `prefix + name`; returns the number of datasets written.
std::size_t write_recorded(Hdf5File& f, const std::string& prefix, const MemoryRecorder& rec,
                           const Hdf5WriteOptions& opts = {});

// What a run dump records about its run (root attributes).
struct RunDumpInfo {
  ModelConfig config;
  Mode mode = Mode::kExact;
  WeightsSpec weights;
  std::vector<std::vector<std::int64_t>> tokens;
  std::int64_t decode_steps = 0;
  std::vector<StepPlan> plan;
};

// Writes the dump of one run atomically: every recorded tensor at its canonical name, root
// attributes dsv4_format = "dsv4-dump", dsv4_format_version = 1, config (JSON), mode, weights
// ("synthetic" + weights_seed + weights_generator_version, or "file" + weights_file +
// weights_sha256), tokens (flat int64) + tokens_shape, decode_steps, steps (JSON), and, when
// `content_sha256` is not empty, weights_content_sha256 = it (the weights' content hash,
// weights_content_sha256 in model_run.hpp): the declaration certify and diff compare with the
// golden's weights (oracle/README.md, what a dump may declare).
void write_run_dump(const std::string& path, const RunDumpInfo& info, const MemoryRecorder& rec,
                    const std::string& content_sha256 = "");

}  // namespace dsv4
