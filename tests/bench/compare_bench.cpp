// Throughput of the certify metrics (oracle/compare/metrics.hpp) in GB/s of candidate data, against
// peers measured in the same run on the same buffers: memcpy of the candidate buffer, and a plain
// streaming read of candidate + reference (the same bytes the metrics read) with the same threads.
// Results and the command: BENCHMARKS.md §"Issue 5: certify metrics throughput".
//
//   compare_bench [--mb 256] [--reps 3] [--threads 0]
//
// The reference is float64 (the golden's exact values); candidates: bf16 (the reference rounded to
// bf16, one element in 8 moved by one ulp) and fp32 (the reference rounded to fp32, perturbed
// likewise by one bf16-level relative error).
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_clock.hpp"
#include "dsv4/compare/metrics.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace {

using namespace dsv4::bench;  // bench_clock.hpp: the clocks, timings and machine notes
using I = std::int64_t;
namespace cmp = dsv4::compare;

// Reference values: a heavy-ish tailed mix of scales, element i a pure function of i (cheap
// integer hash, so that generating 10^8 values takes well under a second per thread).
void fill_reference(std::vector<double>& ref, int threads) {
  const I n = static_cast<I>(ref.size());
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (I i = n * t / threads; i < n * (t + 1) / threads; ++i) {
        std::uint64_t h = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 31;
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        const double u = static_cast<double>(h >> 11) * 0x1.0p-53;  // [0, 1)
        const int e = static_cast<int>((h >> 3) & 15) - 8;
        ref[static_cast<std::size_t>(i)] = std::ldexp(u - 0.5, e);
      }
    });
  }
  for (auto& th : pool) th.join();
}

// The peer: a streaming read of candidate (bf16 or fp32) and reference with 8-lane sums, the
// same threads, the same chunks.
template <class T>
double stream_peer(const T* cand, const double* ref, I n, int threads) {
  std::vector<double> out(static_cast<std::size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      double acc[8] = {};
      const I b = n * t / threads / 8 * 8, e = n * (t + 1) / threads / 8 * 8;
      for (I i = b; i < e; i += 8) {
        for (int l = 0; l < 8; ++l) {
          double c;
          if constexpr (sizeof(T) == 2) {
            c = std::bit_cast<float>(static_cast<std::uint32_t>(cand[i + l]) << 16);
          } else {
            c = cand[i + l];
          }
          acc[l] += c - ref[i + l];
        }
      }
      double s = 0.0;
      for (double v : acc) s += v;
      out[static_cast<std::size_t>(t)] = s;
    });
  }
  for (auto& th : pool) th.join();
  double s = 0.0;
  for (double v : out) s += v;
  return s;
}

struct Row {
  const char* what;
  double gbps;
};

void bench_dtype(const char* name, dsv4::DType dtype, const std::vector<double>& ref, int reps, int threads) {
  const I n = static_cast<I>(ref.size());
  const std::size_t esize = dtype == dsv4::DType::kBF16 ? 2 : 4;
  std::vector<unsigned char> cand(static_cast<std::size_t>(n) * esize);
  for (I i = 0; i < n; ++i) {
    const double r = ref[static_cast<std::size_t>(i)];
    if (dtype == dsv4::DType::kBF16) {
      std::uint16_t b = dsv4::double_to_bf16(r);
      if (i % 8 == 3) b = static_cast<std::uint16_t>(b + 1);  // one ulp away from zero
      std::memcpy(&cand[static_cast<std::size_t>(i) * 2], &b, 2);
    } else {
      float f = static_cast<float>(i % 8 == 3 ? r * (1.0 + 0x1.0p-8) : r);
      std::memcpy(&cand[static_cast<std::size_t>(i) * 4], &f, 4);
    }
  }
  const double cand_gb = static_cast<double>(cand.size()) / 1e9;
  const double total_gb = cand_gb + static_cast<double>(n) * 8.0 / 1e9;

  double best_metrics = 1e30, best_memcpy = 1e30, best_stream = 1e30, best_cpu = 1e30;
  std::vector<unsigned char> dst(cand.size());
  cmp::TensorMetrics m;
  double sink = 0.0;
  for (int rep = 0; rep < reps; ++rep) {
    auto t0 = Clock::now();
    std::memcpy(dst.data(), cand.data(), cand.size());
    best_memcpy = std::min(best_memcpy, seconds_since(t0));
    sink += dst[static_cast<std::size_t>(rep)];
    t0 = Clock::now();
    if (dtype == dsv4::DType::kBF16) {
      sink += stream_peer(reinterpret_cast<const std::uint16_t*>(cand.data()), ref.data(), n, threads);
    } else {
      sink += stream_peer(reinterpret_cast<const float*>(cand.data()), ref.data(), n, threads);
    }
    best_stream = std::min(best_stream, seconds_since(t0));
    t0 = Clock::now();
    const double c0 = cpu_seconds();
    cmp::MetricOptions o;
    o.threads = threads;
    m = cmp::compute_metrics(cmp::CandidateData{dtype, cand.data(), n}, ref, o);
    best_metrics = std::min(best_metrics, seconds_since(t0));
    best_cpu = std::min(best_cpu, cpu_seconds() - c0);
  }
  const double metrics = cand_gb / best_metrics;
  const double mc = cand_gb / best_memcpy;
  const double stream = cand_gb / best_stream;
  std::printf("\n%s candidate: %lld elements, %.1f MB candidate + %.1f MB float64 reference (best of %d)\n", name,
              static_cast<long long>(n), cand_gb * 1e3, (total_gb - cand_gb) * 1e3, reps);
  std::printf("  %-44s %8.3f s  %7.2f GB/s of candidate (%.2f GB/s of all data read)\n", "metrics (compute_metrics)",
              best_metrics, metrics, total_gb / best_metrics);
  std::printf("  %-44s %8.3f s  %7.2f GB/s of candidate per CPU-second (%d threads: %.2f GB/s if unshared)\n",
              "metrics, CPU time of all threads", best_cpu, cand_gb / best_cpu, threads, threads * cand_gb / best_cpu);
  std::printf("  %-44s %8.3f s  %7.2f GB/s of candidate  ratio metrics/peer %.2f\n", "peer: memcpy of the candidate",
              best_memcpy, mc, metrics / mc);
  std::printf("  %-44s %8.3f s  %7.2f GB/s of candidate  ratio metrics/peer %.2f\n",
              "peer: streaming read of candidate+reference", best_stream, stream, metrics / stream);
  std::printf("  check: max_abs %.3g  rms %.3g  cosine_diff %.3g  max_ulp %llu  ulp hist [0]=%lld [1]=%lld\n",
              m.max_abs, m.rms, m.cosine_diff, static_cast<unsigned long long>(m.max_ulp),
              static_cast<long long>(m.ulp_hist[0]), static_cast<long long>(m.ulp_hist[1]));
  if (sink == 12345.678) std::printf(" ");
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 256;
  int reps = 3;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--mb") {
      mb = std::stod(argv[i + 1]);
    } else if (a == "--reps") {
      reps = std::stoi(argv[i + 1]);
    } else if (a == "--threads") {
      threads = std::stoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: compare_bench [--mb 256] [--reps 3] [--threads 0]\n");
      return 2;
    }
  }
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::printf("compare_bench: %s, %u hardware threads, using %d; metric kernel %s\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), threads,
              cmp::metric_kernel_supported(cmp::MetricKernel::kAvx512)
                  ? "avx512"
                  : (cmp::metric_kernel_supported(cmp::MetricKernel::kAvx2) ? "avx2" : "portable"));
  std::printf("load average at start: %s\n", loadavg().c_str());
  const I bytes = static_cast<I>(mb * 1e6);
  {
    std::vector<double> ref(static_cast<std::size_t>(bytes / 2));
    fill_reference(ref, threads);
    bench_dtype("bf16", dsv4::DType::kBF16, ref, reps, threads);
  }
  {
    std::vector<double> ref(static_cast<std::size_t>(bytes / 4));
    fill_reference(ref, threads);
    bench_dtype("fp32", dsv4::DType::kF32, ref, reps, threads);
  }
  std::printf("\nload average at end: %s\n", loadavg().c_str());
  return 0;
}
