// `dsv4 run`: the whole reference model on a token file — prefill, then decode steps — with every
// module output dumped to HDF5 under its canonical name (oracle/README.md §Dump convention).
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "commands.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/config/resource_limits.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/golden/dump.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/gpu/gpu_model.hpp"
#include "dsv4/gpu/gpu_model_run.hpp"
#include "dsv4/io/atomic_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kFooter = R"(
Example:
  dsv4 run --config tiny --seed 1 --tokens t.npy --decode-steps 2 --mode official --dump out.h5

Tokens: a .npy of int32 or int64 ids, shape [b, L] (b sequences of L tokens) or [L]. The first
L - N tokens are the prefill, then N decode steps (N = --decode-steps) each take the next token.
With an MTP block in the config, mtp.0 runs with the ids shifted left by one in every step whose
positions all have their next token in the file (all steps but the last).

Weights: --seed S (seeded synthetic weights, the default is --seed 0) or --weights W.safetensors
(a checkpoint in the official inference naming or the Hugging Face naming).

The dump: every module output as an HDF5 dataset named by its canonical path, e.g.
prefill/layers.3.attn/out, decode0/layers.3.ffn.gate/out1; floats as float64, integer outputs
(top-k indices, expert ids; -1 = no entry) as int64. Root attributes: dsv4_format, config (JSON),
mode, weights source and hash, weights_content_sha256 (the weights' content hash, which certify and
diff compare with the golden's), tokens, steps. See oracle/README.md (Dump convention).
Progress goes to stderr, one line per layer and step.

Device: --device cpu (default) runs the CPU reference; --device gpu runs GpuModel (gpu/README.md,
GpuModel): every module through the op registry's CUDA kernels, bit-identical with --device cpu
--mode official, host steps for the modules without a kernel yet. It needs a GPU (without one: exit
2, "no GPU"), --mode official and one sequence.

Exit status: 0 written; 2 bad input (one line on stderr naming it; nothing written).)";

struct RunArgs {
  std::string config, weights, tokens, mode = "exact", dump, device = "cpu";
  std::optional<std::uint64_t> seed;
  std::int64_t decode_steps = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run(const RunArgs& a) {
  if (a.dump.empty()) throw InputError("--dump", "is required (the output .h5 file)");
  if (!a.weights.empty() && a.seed) throw InputError("--weights", "give either --weights or --seed, not both");
  check_output_paths({{"--dump", a.dump}}, {{"--config", a.config}, {"--weights", a.weights}, {"--tokens", a.tokens}});
  if (a.device != "cpu" && a.device != "gpu")
    throw InputError("--device", "must be cpu or gpu, not '" + a.device + "'");
  const bool gpu = a.device == "gpu";
  const Mode mode = mode_from_name(a.mode);
  if (gpu && mode != Mode::kOfficial) throw InputError("--device", "gpu runs the official mode only (--mode official)");
  if (gpu && !ops::device_available()) throw InputError("--device", "no GPU: " + ops::device_unavailable_reason());
  const ModelConfig cfg = load_config(a.config);
  const auto tokens = read_tokens_npy(a.tokens, cfg.vocab_size);
  if (gpu && tokens.size() != 1) throw InputError("--tokens", "--device gpu runs one sequence ([L] or [1, L])");
  const auto plan = plan_steps(cfg, static_cast<std::int64_t>(tokens.size()),
                               static_cast<std::int64_t>(tokens.front().size()), a.decode_steps);
  {  // before any work: refused with the estimate and what to lower when the machine has too little memory
    const std::string what = "dsv4 run of " + std::to_string(tokens.size()) + " x " +
                             std::to_string(tokens.front().size()) + " tokens on config " + cfg.name;
    const MemoryEstimate est = estimate_run_memory(cfg, static_cast<std::int64_t>(tokens.size()),
                                                   static_cast<std::int64_t>(tokens.front().size()), 1);
    check_memory(est, what);
    note_memory_estimate(what, est.total());
  }
  WeightsSpec ws;
  if (a.weights.empty())
    ws.seed = a.seed.value_or(0);
  else
    ws.file = a.weights;

  const auto t0 = std::chrono::steady_clock::now();
  // The weights and the content hash the dump declares (certify and diff compare it with the golden's).
  RunWeights rw = make_run_weights(cfg, ws);
  const std::string content_sha = std::move(rw.content_sha256);
  MemoryRecorder rec;
  if (gpu) {
    const gpu::GpuModel model(cfg, rw.weights, gpu::OpBackend::kDevice);
    std::fprintf(stderr, "dsv4 run: %s weights ready on the GPU (%.2f s)\n", ws.seed ? "synthetic" : a.weights.c_str(),
                 seconds_since(t0));
    auto t_step = std::chrono::steady_clock::now();
    gpu::run_plan(model, tokens.front(), plan, rec, [&](const std::string& step, const std::string& module) {
      std::fprintf(stderr, "dsv4 run: %s %s on the GPU (%.2f s)\n", step.c_str(), module.c_str(),
                   seconds_since(t_step));
      t_step = std::chrono::steady_clock::now();
    });
  } else {
    const Transformer model(Precision(mode), cfg, std::move(rw.weights));
    std::fprintf(stderr, "dsv4 run: %s weights ready (%.2f s)\n", ws.seed ? "synthetic" : a.weights.c_str(),
                 seconds_since(t0));
    auto t_mod = std::chrono::steady_clock::now();
    run_plan(model, tokens, plan, rec, [&](const std::string& step, const std::string& module) {
      std::fprintf(stderr, "dsv4 run: %s %s (%.2f s)\n", step.c_str(), module.c_str(), seconds_since(t_mod));
      t_mod = std::chrono::steady_clock::now();
    });
  }

  write_run_dump(a.dump, RunDumpInfo{cfg, mode, ws, tokens, a.decode_steps, plan}, rec, content_sha);
  std::fprintf(stderr, "dsv4 run: wrote %zu tensors to %s (%.2f s in all)\n", rec.entries().size(), a.dump.c_str(),
               seconds_since(t0));
  return 0;
}

}  // namespace

void register_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  auto* cmd =
      app.add_subcommand("run", "Run the reference model (prefill + decode steps) and dump every module output");
  cmd->add_option("--config", a->config, "built-in config name (tiny, flash-slice, …) or a config.json")->required();
  cmd->add_option("--weights", a->weights, "safetensors checkpoint (official or Hugging Face naming)");
  cmd->add_option("--seed", a->seed, "seed of the synthetic weights (default 0 when --weights is not given)");
  cmd->add_option("--tokens", a->tokens, ".npy of int32/int64 token ids, [b, L] or [L]")->required();
  cmd->add_option("--decode-steps", a->decode_steps, "number of decode steps N (the last N tokens)")
      ->capture_default_str();
  cmd->add_option("--mode", a->mode, "precision mode: exact or official")->capture_default_str();
  cmd->add_option("--dump", a->dump, "output HDF5 file")->required();
  cmd->add_option("--device", a->device, "cpu (the reference) or gpu (GpuModel: the CUDA kernels, official mode)")
      ->capture_default_str();
  cmd->footer(kFooter);
  cmd->callback([a]() { set_exit_code(run_guarded("run", [&] { return run(*a); })); });
}

}  // namespace dsv4::cli
