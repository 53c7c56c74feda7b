// The op registry's benchmark (gpu/ops): for every registered op with a device function, its
// largest case timed on the GPU (the host entry point: upload, kernel, download, host recompute of
// undecided rows) against the CPU reference on the same case, measured in the same run — the
// speed-up of the device path over the reference that certify and golden generation would
// otherwise run. Without a GPU it times the reference alone and says so.
//   ninja -C build ops_bench && build/bin/ops_bench
#include <algorithm>
#include <cstdio>
#include <vector>

#include "bench_clock.hpp"
#include "dsv4/ops/registry.hpp"

namespace {

using dsv4::bench::Clock;
using dsv4::bench::seconds_since;

// Median wall seconds of `runs` calls (after one warm-up call).
double median_seconds(const dsv4::ops::Fn& fn, const dsv4::ops::Call& call, int runs) {
  (void)fn(call);
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    (void)fn(call);
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::int64_t elements(const dsv4::ops::Call& c) {
  std::int64_t e = 0;
  for (const auto& a : c.inputs) e += a.elements();
  return e;
}

}  // namespace

int main() {
  const bool gpu = dsv4::ops::device_available();
  std::printf("ops_bench: CPU %s, load %s; device: %s\n", dsv4::bench::cpu_model().c_str(),
              dsv4::bench::loadavg().c_str(), gpu ? dsv4::ops::device_text().c_str() : "none (reference only)");
  std::printf("%-18s %-40s %12s %12s %9s\n", "op", "largest case", "reference ms", "device ms", "speed-up");
  for (const dsv4::ops::Op& op : dsv4::ops::all_ops()) {
    const std::vector<dsv4::ops::Case> cases = op.cases(1);
    const auto largest = std::max_element(
        cases.begin(), cases.end(), [](const auto& a, const auto& b) { return elements(a.call) < elements(b.call); });
    const double ref = median_seconds(op.reference, largest->call, 3);
    if (gpu && op.device) {
      const double dev = median_seconds(op.device, largest->call, 11);
      std::printf("%-18s %-40s %12.3f %12.3f %8.1fx\n", op.stem.c_str(), largest->label.c_str(), 1e3 * ref, 1e3 * dev,
                  ref / dev);
    } else {
      std::printf("%-18s %-40s %12.3f %12s %9s\n", op.stem.c_str(), largest->label.c_str(), 1e3 * ref, "-", "-");
    }
  }
  return 0;
}
