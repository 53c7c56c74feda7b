// GpuModel on a run's plan (gpu_model_run.hpp).
#include "dsv4/gpu/gpu_model_run.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace dsv4::gpu {

void run_plan(const GpuModel& model, const std::vector<std::int64_t>& tokens, const std::vector<StepPlan>& plan,
              Recorder& rec, const StepProgressFn& progress, OpTimes* op_times) {
  GpuModel::Sequence seq = model.new_sequence();
  for (const StepPlan& st : plan) {
    const auto first = tokens.begin() + st.start_pos;
    const std::vector<std::int64_t> ids(first, first + st.length),
        next(first + 1, first + 1 + (st.mtp ? st.length : 0));
    const ProgressFn p = progress ? ProgressFn([&](const std::string& m) { progress(st.name, m); }) : ProgressFn();
    const GpuModel::Output out = model.forward(ids, st.start_pos, seq, &rec, st.name, st.mtp ? &next : nullptr, p);
    if (op_times != nullptr)
      for (const auto& [stem, t] : out.op_times) {
        GpuModel::Output::OpTime& sum = (*op_times)[stem];
        sum.calls += t.calls;
        sum.seconds += t.seconds;
      }
  }
}

std::string op_times_text(const OpTimes& times) {
  std::vector<std::pair<std::string, GpuModel::Output::OpTime>> v(times.begin(), times.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double total = 0;
  for (const auto& [stem, t] : v) total += t.seconds;
  std::string s;
  char line[160];
  std::snprintf(line, sizeof line, "op times (host wall, transfers and host recomputation included): %.3f s in all\n",
                total);
  s += line;
  for (const auto& [stem, t] : v) {
    std::snprintf(line, sizeof line, "  %-20s %8lld calls %10.3f s %5.1f%%\n", stem.c_str(),
                  static_cast<long long>(t.calls), t.seconds, total > 0 ? 100.0 * t.seconds / total : 0.0);
    s += line;
  }
  return s;
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
    OpTimes times;
    run_plan(model, tokens.front(), plan, rec, progress, &times);
    // DSV4_GPU_OP_TIMES set (and not "0"): the run's op times on stderr (which op dominates).
    if (const char* e = std::getenv("DSV4_GPU_OP_TIMES"); e != nullptr && std::string(e) != "0")
      std::fprintf(stderr, "%s", op_times_text(times).c_str());
  };
  return r;
}

}  // namespace dsv4::gpu
