// GpuModel (issue 18 item 2): the whole V4 forward composed from the op registry's kernels
// (gpu/README.md §GpuModel). Host orchestration in C++20 — the one header of include/dsv4/gpu that
// includes the reference's headers (it is compiled by g++ into dsv4_gpu_model, never by nvcc).
//
// Every step with a registered kernel runs through the op's implementation of the chosen backend:
// OpBackend::kDevice calls each op's `device` function (the CUDA kernel, bit-exact with the
// reference by the registry's harness), OpBackend::kReference calls each op's `reference`
// function (the CPU reference, official mode, on the same flat arrays). The orchestration is the
// same code for both, so the CPU backend equal to Transformer::forward (official mode) bit for bit
// proves the composition, and the device backend differs only in which op implementation runs.
// What runs on the host between the op calls (data movement, the recorded margins) is listed in
// gpu/README.md §GpuModel.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/recorder.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/ops/op.hpp"
#include "dsv4/ops/resident.hpp"

namespace dsv4::gpu {

enum class OpBackend : std::uint8_t {
  kReference,  // each op's CPU reference (official mode)
  kDevice,     // each op's CUDA kernel (needs a build with CUDA and a GPU)
};

class GpuModel {
 public:
  // Throws std::invalid_argument on weights that do not fit the config (the checks of the
  // reference's constructors) and std::runtime_error for kDevice in a build without CUDA or on a
  // machine without a GPU.
  GpuModel(const ModelConfig& cfg, const ModelWeights& weights, OpBackend backend);
  ~GpuModel();
  GpuModel(const GpuModel&) = delete;
  GpuModel& operator=(const GpuModel&) = delete;

  // One sequence's caches between calls: per layer the reference's AttentionState (the window
  // ring, the compressed rows, the compressor and indexer states; host memory) and the next position.
  struct Sequence {
    std::vector<AttentionState> layers;
    std::vector<AttentionState> mtp;  // the MTP blocks' (n_mtp_layers)
    std::int64_t next_pos = 0;
  };
  Sequence new_sequence() const;

  // One step of one sequence (spec 05 §5.1–§5.3): prefill (start_pos 0, s ≥ 1 tokens; resets the
  // sequence) or decode (start_pos = seq.next_pos > 0, one token). Records every module output the
  // official Transformer::forward records for the step (names `<step>/...`, shapes [1, ...]) and
  // returns the last position's logits [1, vocab]. With `mtp_ids` (the next token of every
  // position, as Transformer::forward takes them) the first MTP block runs too (spec 05 §5.5).
  // `progress(module)` after each module as Transformer::forward calls it ("layers.3", "head",
  // "mtp.0"): per-layer progress of long runs.
  struct Output {
    Mat logits;      // [1, vocab]
    Mat mtp_logits;  // [1, vocab]; empty without mtp_ids
    // The bytes of the step's op inputs (ops::call_bytes): the weights taken from their device copy
    // made once (resident: every weight of the model is marked resident, and the ops with
    // Op::resident_inputs take them so), and what the device backend copies to the device per call.
    ops::CallBytes bytes;
    // Per op stem: calls and host wall seconds of this step's op calls (the device backend's
    // include the transfers and the host recomputation of undecided elements); every op call is
    // timed (two clock reads a call; gpu_model_run.hpp op_times_text renders them).
    struct OpTime {
      std::int64_t calls = 0;
      double seconds = 0;
    };
    std::map<std::string, OpTime> op_times;
  };
  Output forward(const std::vector<std::int64_t>& ids, std::int64_t start_pos, Sequence& seq, Recorder* rec,
                 const std::string& step, const std::vector<std::int64_t>* mtp_ids = nullptr,
                 const ProgressFn& progress = {}) const;

  OpBackend backend() const { return backend_; }

  // From now on, every call of the registered op `stem` runs `fn` instead of the backend's
  // implementation (a foreign kernel, or a deliberately broken one: tests/gpu_model_test's break
  // checks prove that a wrong step is caught and named). Throws std::invalid_argument for a stem
  // the registry does not hold.
  void replace_op(const std::string& stem, ops::Fn fn);

 private:
  struct Impl;
  OpBackend backend_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4::gpu
