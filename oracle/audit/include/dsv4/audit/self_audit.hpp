// `dsv4 audit`: proof that our own stack is bit-stable (issue 17 item 1). The reference is run
// once as the yardstick — the sequence alone, every GEMM thread — and again in a matrix of
// variants: repeats, thread counts, batch compositions (the sequence at given rows of batches
// with random companions) and prefill against decode. Every module output of the sequence is
// compared bit for bit with the yardstick's (its SHA-256 is reported); any difference is a
// failure naming the first module in execution order, the first differing element, both values
// and their ULP distance in the output's official number format. Where a GPU is present, one more
// row compares GpuModel's CUDA backend (an OfficialRunner, model_run.hpp) with the official
// yardstick; without one that row is reported as skipped, with the reason.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/audit/tensor_move.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/recorder.hpp"

namespace dsv4::audit {

struct AuditOptions {
  ModelConfig config;
  std::uint64_t weights_seed = 1;
  std::uint64_t tokens_seed = 7;  // the audited sequence; companions from other streams
  std::int64_t prompt_len = 20;
  std::int64_t decode_steps = 2;
  std::vector<Mode> modes = {Mode::kOfficial, Mode::kExact};
  int repeats = 1;                              // runs identical to the yardstick's
  std::vector<int> threads = {1, 2};            // GEMM thread counts (the yardstick: all)
  std::vector<std::int64_t> batch_sizes = {4};  // the sequence inside batches of these sizes …
  std::vector<std::int64_t> rows = {0, 3};      // … at these rows (those inside the batch)
  bool prefill_vs_decode = true;                // decode<i> ≡ prefill row prompt_len + i (position-wise outputs)
  // The row "GPU vs CPU official": the sequence alone run by `gpu` (dsv4 audit: GpuModel's CUDA
  // backend when a GPU is present) against the official yardstick, every module output bit for
  // bit. Without it the row is skipped, its note "skipped: " + gpu_unavailable.
  std::optional<OfficialRunner> gpu;
  std::string gpu_unavailable = "no GPU runner";
};
// The quick matrix (what CI runs) and the full one (issue 17: batches of 4, 7, 64 at rows 0, 3, 63;
// threads 1, 2; 3 repeats).
AuditOptions quick_options(const ModelConfig& c);
AuditOptions full_options(const ModelConfig& c);

// The first difference of a variant from the yardstick, in execution order.
struct Mismatch {
  std::string output;        // canonical name
  std::int64_t element = 0;  // row-major index within the sequence's slice
  double yardstick = 0, variant = 0;
  std::string grid;        // the number format of the ULP distance (the output's official dtype)
  std::uint64_t ulps = 0;  // ULP distance in that grid (integers: |a − b|)
  std::int64_t differing_elements = 0;
  std::int64_t differing_outputs = 0;  // outputs of the variant whose bits differ
};

struct VariantResult {
  std::string mode;     // "official" / "exact"
  std::string variant;  // "repeat 1", "threads 1", "batch 4 row 3", "prefill vs decode"
  std::int64_t compared = 0;
  std::string sha256;  // of the variant's outputs of the sequence, in execution order
  std::optional<Mismatch> mismatch;
  std::vector<TensorMove> moved;  // every output whose bits differ, execution order (front: mismatch's)
  std::string note;               // what was excluded and why (a skipped row: why it did not run)
  bool skipped = false;           // not run (no GPU; a prefill shorter than the window): neither passed nor failed
  double seconds = 0;
};

struct AuditReport {
  std::string config;
  std::int64_t layers = 0;  // the config's main layers (the SVG's x range)
  std::vector<VariantResult> variants;
  std::vector<std::string> yardstick_sha256;  // per mode, of the yardstick's outputs
  bool pass() const;
};

using AuditProgress = std::function<void(const std::string& mode, const std::string& variant)>;
// Throws InputError on bad options (rows, batch sizes past what the options allow).
AuditReport run_self_audit(const AuditOptions& o, const AuditProgress& progress = {});

// Every output of the yardstick (sequence in batch row 0) against the variant's batch row `row`, in
// the yardstick's recording order (execution order): the comparison each variant of the audit runs.
VariantResult compare_runs(const MemoryRecorder& yardstick, const MemoryRecorder& variant, std::int64_t row, Mode mode,
                           const std::string& variant_name);

std::string audit_text(const AuditReport& r);  // the verdict first, one line per variant
nlohmann::json audit_json(const AuditReport& r);
// Where bits first move, per layer and module, over every variant (tensor_move.hpp
// where_bits_move_svg): a passing audit draws no series.
std::string audit_svg(const AuditReport& r);

// The outputs defined per position (row-wise math, spec 05 §5.6): equal bit for bit whether a
// position was computed in a prefill or in a decode step (block-relative names: ".attn/out", "/out").
const std::vector<std::string>& positionwise_outputs();

}  // namespace dsv4::audit
