// How many outputs the tiled linear kernel's dense decision leaves to the warp kernel
// (gpu/src/linear.cu, decide_dense with the bound γ_Kp·S), for the two candidate bounds S of
// Σ_k |x_k w_k| (BENCHMARKS.md, "The tiled DMMA linear"): Cauchy–Schwarz ‖x‖₂‖w‖₂ (the kernel's: row
// norms, one pass) and |x|·|w| (a second DMMA). Inputs as gpu_kernel_bench's linear_bf16: x ~ bf16
// N(0, 1), w ~ bf16 N(0, 1/K). V' is taken as V (a long-double sum: its error, ~K·2^-64·Σ|xw|, is far
// below the bound), the interval [V − γ·S, V + γ·S] rounded at both ends to fp32 (and to bf16 for the
// kBF16 kind); different bits = left over. A CPU estimate of the decision rule's width, not of the
// device's DMMA order.
//   linear_bound_bench [--rows M] [--k K] [--n N] [--seed S]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/numerics/formats.hpp"

namespace {

std::uint32_t bits(float f) {
  std::uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

std::int64_t positive(const char* flag, const char* v) {
  char* end = nullptr;
  const long long r = std::strtoll(v, &end, 10);
  if (*end != '\0' || r < 1 || r > (1LL << 24)) {
    throw std::invalid_argument(std::string(flag) + " wants an integer in [1, 2^24], got '" + v + "'");
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::int64_t rows = 16, k = 4096, n_out = 4096, seed = 1;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument("missing value after '" + a + "'");
      if (a == "--rows") {
        rows = positive("--rows", argv[++i]);
      } else if (a == "--k") {
        k = positive("--k", argv[++i]);
      } else if (a == "--n") {
        n_out = positive("--n", argv[++i]);
      } else if (a == "--seed") {
        seed = positive("--seed", argv[++i]);
      } else {
        throw std::invalid_argument("unknown argument '" + a +
                                    "' (usage: linear_bound_bench [--rows M] [--k K] "
                                    "[--n N] [--seed S])");
      }
    }
    std::mt19937_64 g(static_cast<std::uint64_t>(seed));
    std::normal_distribution<double> d(0.0, 1.0);
    std::vector<double> x(static_cast<std::size_t>(rows * k)), w(static_cast<std::size_t>(n_out * k));
    for (double& v : x) v = dsv4::round_bf16(d(g));
    for (double& v : w) v = dsv4::round_bf16(d(g) / std::sqrt(static_cast<double>(k)));
    const auto norm = [&](const double* r) {
      long double s = 0;
      for (std::int64_t i = 0; i < k; ++i) s += static_cast<long double>(r[i]) * r[i];
      return static_cast<double>(std::sqrt(s));
    };
    // γ_Kp as the kernel: Kp = K rounded up to 32, ·2^-53·(1 + 2^-20).
    const double gamma = static_cast<double>((k + 31) / 32 * 32) * 0x1.00001p-53;
    std::int64_t left32[2] = {0, 0}, left16[2] = {0, 0};
    double ratio = 0.0;
    for (std::int64_t m = 0; m < rows; ++m) {
      const double nx = norm(&x[m * k]);
      for (std::int64_t n = 0; n < n_out; ++n) {
        long double v = 0, a = 0;
        for (std::int64_t i = 0; i < k; ++i) {
          const long double t = static_cast<long double>(x[m * k + i]) * w[n * k + i];
          v += t;
          a += std::fabs(t);
        }
        const double s[2] = {nx * norm(&w[n * k]), static_cast<double>(a)};
        ratio += s[0] / s[1];
        for (int b = 0; b < 2; ++b) {
          const double err = gamma * s[b], vd = static_cast<double>(v);
          const float lo = static_cast<float>(vd - err), hi = static_cast<float>(vd + err);
          left32[b] += bits(lo) != bits(hi) ? 1 : 0;
          left16[b] += bits(dsv4::round_bf16(lo)) != bits(dsv4::round_bf16(hi)) ? 1 : 0;
        }
      }
    }
    const double total = static_cast<double>(rows * n_out);
    std::printf("M=%lld K=%lld N=%lld seed %lld: mean ||x|| ||w|| / sum|xw| = %.3f\n", static_cast<long long>(rows),
                static_cast<long long>(k), static_cast<long long>(n_out), static_cast<long long>(seed), ratio / total);
    const char* name[2] = {"Cauchy-Schwarz ||x|| ||w||", "|x|.|w| (second DMMA)"};
    for (int b = 0; b < 2; ++b) {
      std::printf("%s: left over with an fp32 output %lld of %.0f (%.2f%%), with a bf16 output %lld\n", name[b],
                  static_cast<long long>(left32[b]), total, 100.0 * left32[b] / total,
                  static_cast<long long>(left16[b]));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "linear_bound_bench: %s\n", e.what());
    return 2;
  }
}
