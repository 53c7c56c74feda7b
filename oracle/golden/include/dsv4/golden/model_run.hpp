// One run of the reference model as `dsv4 run`, golden generation and `dsv4 demo` perform it
// (oracle/README.md §Dump convention): the tokens T [b, L] of b sequences, a prefill of the first
// L − N tokens, then N decode steps taking the next tokens from T. Every module output is recorded
// under its canonical name `<step>/<module path>/<output>` (ref/model recorder.hpp).
//
// MTP (configs with n_mtp_layers > 0): mtp.0 runs with the ids shifted left by one — position p is
// paired with token T[p + 1] — in every step where that next token is in T for every position of
// the step: the prefill and decode steps 0 … N − 2 (not the last step, whose next token is not in
// T; with N = 0 not even the prefill, so MTP does not run). MTP thus runs in a prefix of the steps
// and its cache never has a gap.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/recorder.hpp"
#include "dsv4/model/transformer.hpp"

namespace dsv4 {

// Where the weights come from: seeded synthetic weights (ModelWeights::synthetic) or a safetensors
// checkpoint (official or Hugging Face naming).
struct WeightsSpec {
  std::optional<std::uint64_t> seed;
  std::string file;  // used when seed is empty
};

// The version of the synthetic weight generator (ModelWeights::synthetic and the distributions of
// synthetic_weights.hpp): goldens record it; bump it whenever those distributions change.
// 2: wo_a on the FP8 grid (an FP8 weight with 128×128 E8M0 scales dequantised to bf16, as the
// published checkpoint's), so the Hugging Face export stores it in FP8 exactly.
inline constexpr std::int64_t kSyntheticWeightsVersion = 2;

// Loads or synthesises the weights. A checkpoint problem throws CheckpointError naming the tensor,
// a malformed file InputError.
ModelWeights make_weights(const ModelConfig& c, const WeightsSpec& w);

// The weights of a run that writes a dump (dsv4 run --dump, dsv4 demo's candidate) and their
// content hash (weights_content_sha256, hashed in place), which write_run_dump declares.
struct RunWeights {
  ModelWeights weights;
  std::string content_sha256;
};
RunWeights make_run_weights(const ModelConfig& c, const WeightsSpec& w);

// SHA-256 over every parameter in the official naming and checkpoint order of
// visit_model_parameters: for each tensor its name, dtype name, shape and raw little-endian bytes
// (each field length-prefixed). The same weights give the same hash whatever file they came from.
// The first form reads `w` in place (no copy of the weights: golden generate), the second copies it.
std::string weights_content_sha256(const ModelConfig& c, ModelWeights& w);
std::string weights_content_sha256(const ModelConfig& c, const ModelWeights& w);

// Token ids [b][L] from a .npy of int32 or int64, shape [b, L] or [L] (one sequence). Throws
// InputError naming the file and the first bad entry: another dtype, rank, an empty sequence, an
// id outside [0, vocab_size).
std::vector<std::vector<std::int64_t>> read_tokens_npy(const std::string& path, std::int64_t vocab_size);
// Same checks on tokens already in memory (`where` names their source in messages).
void check_tokens(const std::vector<std::vector<std::int64_t>>& tokens, std::int64_t vocab_size,
                  const std::string& where);

// Seeded token ids [1][n] uniform in [0, vocab_size) (Philox; golden generate --prompt-len).
std::vector<std::vector<std::int64_t>> synthetic_tokens(std::int64_t n, std::int64_t vocab_size, std::uint64_t seed);

struct StepPlan {
  std::string name;  // "prefill" or "decode<i>"
  std::int64_t start_pos = 0;
  std::int64_t length = 0;  // tokens per sequence in this step
  bool mtp = false;         // mtp.0 runs in this step
};

// The steps of a run; InputError (where = "--decode-steps" / "--tokens") when N < 0, N ≥ L, the batch
// exceeds max_batch_size or L exceeds max_seq_len.
std::vector<StepPlan> plan_steps(const ModelConfig& c, std::int64_t batch, std::int64_t length,
                                 std::int64_t decode_steps);

// The plan as JSON: [{"step": "prefill", "start_pos": 0, "length": 138, "mtp": true}, …].
std::string steps_json(const std::vector<StepPlan>& plan);

// Called with the step name and the module just finished ("layers.3", "head", "mtp.0").
using StepProgressFn = std::function<void(const std::string& step, const std::string& module)>;

// Runs the plan on `model`, recording into `rec`.
void run_plan(const Transformer& model, const std::vector<std::vector<std::int64_t>>& tokens,
              const std::vector<StepPlan>& plan, Recorder& rec, const StepProgressFn& progress = {});

// The official mode's forward computed by another implementation than the CPU reference's
// Transformer — GpuModel's CUDA backend (gpu/include/dsv4/gpu/gpu_model_run.hpp makes one) — for
// `dsv4 golden generate --device gpu`, `dsv4 golden verify --recompute --device gpu` and the GPU
// row of `dsv4 audit`. `run` runs the plan on the tokens with the weights and records every module
// output Transformer::forward records in official mode (the same names and shapes; the oracle
// compares them bit for bit). It throws InputError for what the implementation cannot run (more
// than one sequence: `max_batch` says how many it takes).
struct OfficialRunner {
  std::string device;       // "gpu": the golden's manifest official_device.device
  std::string description;  // what computes the values, for the manifest and reports
  std::int64_t max_batch = 1;
  std::function<void(const ModelConfig& c, const ModelWeights& w, const std::vector<std::vector<std::int64_t>>& tokens,
                     const std::vector<StepPlan>& plan, Recorder& rec, const StepProgressFn& progress)>
      run;
};
// InputError naming --device when `batch` sequences are more than `r` runs (max_batch).
void check_runner_batch(const OfficialRunner& r, std::int64_t batch);

}  // namespace dsv4
