// `dsv4 demo` section 4: every op of the registry that has a CUDA kernel (gpu/ops), checked by the
// registry's harness on the device — bits == the CPU reference on every case, batch invariance,
// reruns — when this build has CUDA and a GPU is present; otherwise one line saying why the
// section is skipped.
#include "demo_gpu.hpp"

#include "dsv4/ops/harness.hpp"
#include "dsv4/ops/registry.hpp"

namespace dsv4::cli {

std::vector<SelfCheckLine> run_gpu_selfcheck(std::uint64_t seed, std::string& skipped_because) {
  skipped_because = ops::device_unavailable_reason();
  if (!skipped_because.empty()) return {};
  ops::HarnessOptions opt;
  opt.seed = seed;
  std::vector<SelfCheckLine> lines;
  for (const ops::Op& op : ops::all_ops()) {
    if (!op.device) continue;
    for (SelfCheckLine& l : ops::check_op(op, op.device, "device", true, opt)) lines.push_back(std::move(l));
  }
  return lines;
}

std::string gpu_device_text() { return ops::device_text(); }

}  // namespace dsv4::cli
