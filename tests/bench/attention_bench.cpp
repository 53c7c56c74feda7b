// Benchmark of issue 3 (results in BENCHMARKS.md): one flash-slice CSA attention layer, prefill
// of 4,096 tokens, exact mode.
//   (a) the machine's measured double-FMA peak on all cores (the peer);
//   (b) the deterministic GEMM (dsv4/numerics/gemm.hpp) on every projection shape of the layer,
//       GFLOP/s and fraction of the peer; Eigen's product on the same shapes as a second peer;
//   (c) the full exact-mode prefill of layer 1 (CSA): wall time and peak RSS (child process).
//
// attention_bench [--tokens N] [--eigen-rows R] [--reps N] [--skip-layer] [--skip-eigen] [--skip-gemm]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_clock.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/gemm.hpp"

#if __has_include("dsv4/model/attention.hpp")
#include "dsv4/model/attention.hpp"
#define DSV4_BENCH_HAVE_ATTENTION 1
#else
#define DSV4_BENCH_HAVE_ATTENTION 0
#endif

namespace dsv4::bench {
double fma_peak_avx2(long iters, double seed);
double fma_peak_avx512(long iters, double seed);
}  // namespace dsv4::bench

namespace {

using dsv4::Mat;
using dsv4::bench::Clock;
using dsv4::bench::cpu_model;
using dsv4::bench::loadavg;
using dsv4::bench::seconds_since;
using I = std::int64_t;

// Peak GFLOP/s of `fn` on `threads` threads (best of 3 runs of about 0.5 s).
double peak(double (*fn)(long, double), double flops_per_iter, int threads) {
  const long iters = 20'000'000;
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> sink(static_cast<std::size_t>(threads));
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] { sink[static_cast<std::size_t>(t)] = fn(iters, 1.0 + t); });
    }
    for (auto& th : pool) th.join();
    const double s = seconds_since(t0);
    double guard = 0.0;
    for (double v : sink) guard += v;
    if (guard == 12345.0) std::printf(" ");  // keeps the results alive
    best = std::max(best, flops_per_iter * static_cast<double>(iters) * threads / s / 1e9);
  }
  return best;
}

Mat random_mat(I rows, I cols, std::uint64_t seed) {
  Mat m(rows, cols);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (I i = 0; i < m.size(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    m.data()[i] = static_cast<double>(static_cast<std::int64_t>(s >> 11) - (std::int64_t{1} << 52)) * 0x1.0p-52;
  }
  return m;
}

struct Shape {
  const char* name;
  I n, k, count;  // y[M, n] = x[M, k] · W[n, k]ᵀ, `count` times per layer
};

}  // namespace

int main(int argc, char** argv) {
  I tokens = 4096;
  I eigen_rows = 1024;
  int reps = 2;
  bool skip_layer = false, skip_eigen = false, skip_gemm = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tokens" && i + 1 < argc) {
      tokens = std::atoll(argv[++i]);
    } else if (a == "--eigen-rows" && i + 1 < argc) {
      eigen_rows = std::atoll(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--skip-layer") {
      skip_layer = true;
    } else if (a == "--skip-eigen") {
      skip_eigen = true;
    } else if (a == "--skip-gemm") {
      skip_gemm = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--tokens N] [--eigen-rows R] [--reps N] [--skip-layer] [--skip-eigen] [--skip-gemm]\n",
                   argv[0]);
      return 2;
    }
  }
  const int threads = dsv4::gemm_threads();
  std::printf("machine: %s, %u hardware threads; GEMM kernel %s, %d threads\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), dsv4::gemm_kernel_name(dsv4::gemm_kernel()), threads);
  std::printf("load average at start: %s\n\n", loadavg().c_str());

  // (a) peak
  double peer = 0.0;
  std::printf("(a) double-FMA peak, %d threads (many independent FMA chains per thread)\n", threads);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    const double p = peak(&dsv4::bench::fma_peak_avx2, 96.0, threads);
    std::printf("    AVX2 256-bit FMA     %8.1f GFLOP/s\n", p);
    peer = std::max(peer, p);
  }
  if (__builtin_cpu_supports("avx512f")) {
    const double p = peak(&dsv4::bench::fma_peak_avx512, 384.0, threads);
    std::printf("    AVX-512 512-bit FMA  %8.1f GFLOP/s\n", p);
    peer = std::max(peer, p);
  }
  std::printf("    peer (machine double-FMA peak) = %.1f GFLOP/s\n\n", peer);

  // (c) the layer, in a child process so that its peak RSS is its own
#if DSV4_BENCH_HAVE_ATTENTION
  if (!skip_layer) {
    const dsv4::bench::ChildRun r = dsv4::bench::run_in_child([&] {
      const dsv4::ModelConfig cfg = dsv4::builtin_config("flash-slice");
      const I layer = 1;
      std::printf("(c) flash-slice layer %lld (compress ratio %lld), exact-mode prefill of %lld tokens\n",
                  static_cast<long long>(layer), static_cast<long long>(cfg.compress_ratio(layer)),
                  static_cast<long long>(tokens));
      auto t0 = Clock::now();
      const dsv4::Attention attn(dsv4::Precision(dsv4::Mode::kExact), cfg, layer,
                                 dsv4::AttentionWeights::synthetic(cfg, layer, 42));
      std::printf("    weights (synthetic) and module set-up: %.2f s\n", seconds_since(t0));
      const Mat x = random_mat(tokens, cfg.dim, 7);
      dsv4::AttentionState st = attn.initial_state();
      std::fflush(stdout);
      t0 = Clock::now();
      const dsv4::AttentionOutput out = attn.prefill(x, st);
      const double s = seconds_since(t0);
      double check = 0.0;
      for (I i = 0; i < out.out.size(); ++i) check += out.out.data()[i];
      std::printf("    prefill wall time: %.2f s  (output checksum %.17g)\n", s, check);
      return 0;
    });
    std::printf("    peak RSS of the layer process (weights + activations + state): %.1f MiB; exit status %d\n\n",
                r.peak_rss_mib, r.status);
  }
#else
  if (!skip_layer) std::printf("(c) skipped: dsv4/model/attention.hpp is not in this build\n\n");
#endif

  // (b) projections
  if (!skip_gemm) {
    const dsv4::ModelConfig c = dsv4::builtin_config("flash-slice");
    const I hc = c.n_heads * c.head_dim;
    const std::vector<Shape> shapes = {
        {"wq_a", c.q_lora_rank, c.dim, 1},
        {"wq_b", hc, c.q_lora_rank, 1},
        {"wkv", c.head_dim, c.dim, 1},
        {"wo_a (one group)", c.o_lora_rank, hc / c.o_groups, c.o_groups},
        {"wo_b", c.dim, c.o_groups * c.o_lora_rank, 1},
        {"compressor wkv|wgate", 2 * c.head_dim, c.dim, 2},
        {"indexer wq_b", c.index_n_heads * c.index_head_dim, c.q_lora_rank, 1},
        {"indexer compr. wkv|wgate", 2 * c.index_head_dim, c.dim, 2},
        {"indexer weights_proj", c.index_n_heads, c.dim, 1},
    };
    std::printf(
        "(b) projections, M = %lld tokens: deterministic GEMM (%s, %d threads, best of %d) vs peer %.1f GFLOP/s;\n",
        static_cast<long long>(tokens), dsv4::gemm_kernel_name(dsv4::gemm_kernel()), threads, reps, peer);
    std::printf("    Eigen 3.4 x*w.transpose() (1 thread, its own blocking) on the first %lld rows\n",
                static_cast<long long>(std::min(tokens, eigen_rows)));
    std::printf("    %-26s %7s %7s %4s %9s %9s %7s %9s %7s\n", "shape", "N", "K", "x", "GFLOP", "seconds", "GF/s",
                "%peak", "Eigen");
    double total_flop = 0.0, total_s = 0.0;
    std::uint64_t seed = 100;
    for (const Shape& sh : shapes) {
      const Mat x = random_mat(tokens, sh.k, seed++);
      const Mat w = random_mat(sh.n, sh.k, seed++);
      Mat y = Mat::Zero(tokens, sh.n);
      const double flop = 2.0 * static_cast<double>(tokens) * static_cast<double>(sh.n) * static_cast<double>(sh.k);
      double s = 1e300;  // best of `reps` runs
      for (int rep = 0; rep < reps; ++rep) {
        const auto t0 = Clock::now();
        dsv4::gemm_nt(tokens, sh.n, sh.k, x.data(), sh.k, w.data(), sh.k, y.data(), sh.n);
        s = std::min(s, seconds_since(t0));
      }
      const double gf = flop / s / 1e9;
      total_flop += flop * static_cast<double>(sh.count);
      total_s += s * static_cast<double>(sh.count);
      double eigen_gf = 0.0;
      if (!skip_eigen) {
        const I r = std::min(tokens, eigen_rows);
        Mat ye(r, sh.n);
        const auto t1 = Clock::now();
        ye.noalias() = x.topRows(r) * w.transpose();
        const double se = seconds_since(t1);
        eigen_gf = 2.0 * static_cast<double>(r) * static_cast<double>(sh.n) * static_cast<double>(sh.k) / se / 1e9;
        // sanity: the two products agree to rounding
        const double diff = (ye - y.topRows(r)).cwiseAbs().maxCoeff();
        if (!(diff <= 1e-9 * static_cast<double>(sh.k))) std::printf("    MISMATCH vs Eigen: %g\n", diff);
      }
      std::printf("    %-26s %7lld %7lld %4lld %9.1f %9.3f %7.1f %8.1f%% %7.1f\n", sh.name,
                  static_cast<long long>(sh.n), static_cast<long long>(sh.k), static_cast<long long>(sh.count),
                  flop / 1e9, s, gf, 100.0 * gf / peer, eigen_gf);
      std::fflush(stdout);
    }
    std::printf("    all projections of the layer: %.1f GFLOP in %.2f s = %.1f GFLOP/s = %.1f%% of peak\n\n",
                total_flop / 1e9, total_s, total_flop / total_s / 1e9, 100.0 * total_flop / total_s / 1e9 / peer);
  }
  std::printf("load average at end: %s\n", loadavg().c_str());
  return 0;
}
