// GpuModel on a run's plan (oracle/golden model_run.hpp): the one loop over the steps that
// `dsv4 run --device gpu`, `dsv4 golden generate --device gpu`, `dsv4 golden verify --recompute
// --device gpu` and the GPU row of `dsv4 audit` share. Host orchestration (g++, dsv4_gpu_model).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dsv4/golden/model_run.hpp"
#include "dsv4/gpu/gpu_model.hpp"

namespace dsv4::gpu {

// The steps of `plan` (plan_steps) on one sequence `tokens`, as run_plan runs them on the
// Transformer: each step's ids, and with StepPlan::mtp the ids shifted left by one for mtp.0.
// Every module output is recorded into `rec` under the step's name. `progress(step, module)` after
// each module as the Transformer's run_plan calls it ("layers.3", "head", "mtp.0"). With `op_times`
// the op calls' times of every step are added into it.
using OpTimes = std::map<std::string, GpuModel::Output::OpTime>;
void run_plan(const GpuModel& model, const std::vector<std::int64_t>& tokens, const std::vector<StepPlan>& plan,
              Recorder& rec, const StepProgressFn& progress = {}, OpTimes* op_times = nullptr);

// The op times as a table, the slowest op first, with each op's share of the total.
std::string op_times_text(const OpTimes& times);

// An OfficialRunner (model_run.hpp) on GpuModel with `backend`: device "gpu" for
// OpBackend::kDevice (the CUDA kernels), "gpu-reference" for OpBackend::kReference (each op's CPU
// reference: the same orchestration on the CPU, what the tests without a GPU run). One sequence
// (max_batch 1): more is an InputError naming --device (check_runner_batch). Constructing the model for kDevice throws
// std::runtime_error without a GPU (check ops::device_available() first). With the environment
// variable DSV4_GPU_OP_TIMES set (not "0") the run prints op_times_text on stderr.
OfficialRunner official_runner(OpBackend backend);

}  // namespace dsv4::gpu
