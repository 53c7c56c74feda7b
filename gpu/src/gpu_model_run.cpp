// GpuModel on a run's plan (gpu_model_run.hpp).
#include "dsv4/gpu/gpu_model_run.hpp"

namespace dsv4::gpu {

void run_plan(const GpuModel& model, const std::vector<std::int64_t>& tokens, const std::vector<StepPlan>& plan,
              Recorder& rec, const StepProgressFn& progress) {
  GpuModel::Sequence seq = model.new_sequence();
  for (const StepPlan& st : plan) {
    const auto first = tokens.begin() + st.start_pos;
    const std::vector<std::int64_t> ids(first, first + st.length),
        next(first + 1, first + 1 + (st.mtp ? st.length : 0));
    model.forward(ids, st.start_pos, seq, &rec, st.name, st.mtp ? &next : nullptr);
    if (progress) progress(st.name, "head");
  }
}

OfficialRunner official_runner(OpBackend backend) {
  OfficialRunner r;
  const bool device = backend == OpBackend::kDevice;
  r.device = device ? "gpu" : "gpu-reference";
  r.description = device ? "GpuModel, CUDA backend: every op with a kernel on the GPU (gpu/README.md, GpuModel)"
                         : "GpuModel, reference backend: the GpuModel orchestration with each op's CPU reference";
  r.max_batch = 1;
  r.run = [backend, limits = r](const ModelConfig& c, const ModelWeights& w,
                                const std::vector<std::vector<std::int64_t>>& tokens, const std::vector<StepPlan>& plan,
                                Recorder& rec, const StepProgressFn& progress) {
    check_runner_batch(limits, static_cast<std::int64_t>(tokens.size()));
    const GpuModel model(c, w, backend);
    run_plan(model, tokens.front(), plan, rec, progress);
  };
  return r;
}

}  // namespace dsv4::gpu
