// Deterministic GEMM (ref/numerics/include/dsv4/numerics/gemm.hpp): bit-identical to the naive
// sequential loop that defines it, for every kernel, thread count and batch size.
#include "dsv4/numerics/gemm.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "dsv4/model/sparse_attention.hpp"

namespace dsv4 {
namespace {

using I = std::int64_t;

// The specification: s = +0.0; s = fl(s + fl(a·b)) for k = 0 … K−1. volatile keeps the two
// roundings visible even to a compiler that would contract (the build forbids it anyway).
std::vector<double> naive_nt(I M, I N, I K, const std::vector<double>& a, I lda, const std::vector<double>& b, I ldb,
                             bool abs_ops = false) {
  std::vector<double> c(static_cast<std::size_t>(M * N));
  for (I i = 0; i < M; ++i) {
    for (I j = 0; j < N; ++j) {
      double s = 0.0;
      for (I k = 0; k < K; ++k) {
        double x = a[static_cast<std::size_t>(i * lda + k)];
        double y = b[static_cast<std::size_t>(j * ldb + k)];
        if (abs_ops) {
          x = std::fabs(x);
          y = std::fabs(y);
        }
        volatile double p = x * y;
        s = s + p;
      }
      c[static_cast<std::size_t>(i * N + j)] = s;
    }
  }
  return c;
}

// Values spread over many binades with cancellation, so any change of order changes bits.
std::vector<double> random_values(std::size_t n, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<int> e(-20, 20);
  std::vector<double> v(n);
  for (auto& x : v) x = std::ldexp(u(rng), e(rng));
  return v;
}

bool same_bits(const std::vector<double>& x, const std::vector<double>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
}

std::vector<GemmKernel> supported_kernels() {
  std::vector<GemmKernel> ks;
  for (GemmKernel k : {GemmKernel::kPortable, GemmKernel::kAvx2, GemmKernel::kAvx512}) {
    if (gemm_kernel_supported(k)) ks.push_back(k);
  }
  return ks;
}

struct KernelGuard {
  ~KernelGuard() {
    set_gemm_kernel(GemmKernel::kAuto);
    set_gemm_threads(0);
  }
};

TEST(Gemm, MatchesNaiveSequentialOrderAllShapesKernelsThreads) {
  KernelGuard guard;
  const std::vector<I> dims = {1, 3, 7, 8, 9, 24, 64, 129, 300};
  const std::vector<I> depths = {1, 3, 7, 64, 255, 256, 257, 300, 600};
  std::uint32_t seed = 1;
  for (I M : dims) {
    for (I N : dims) {
      for (I K : depths) {
        if (M * N * K > 3'000'000) continue;
        const auto a = random_values(static_cast<std::size_t>(M * K), seed++);
        const auto b = random_values(static_cast<std::size_t>(N * K), seed++);
        const auto want = naive_nt(M, N, K, a, K, b, K);
        for (GemmKernel kern : supported_kernels()) {
          set_gemm_kernel(kern);
          for (int threads : {1, 2, 3}) {
            std::vector<double> c(static_cast<std::size_t>(M * N), std::nan(""));
            gemm_nt(M, N, K, a.data(), K, b.data(), K, c.data(), N, threads);
            ASSERT_TRUE(same_bits(c, want)) << "M=" << M << " N=" << N << " K=" << K << " kernel "
                                            << gemm_kernel_name(kern) << " threads " << threads;
          }
        }
      }
    }
  }
}

TEST(Gemm, LargeProductAllPathsIdentical) {
  // Big enough for the thread split and several K / M / N cache blocks with ragged edges.
  KernelGuard guard;
  const I M = 397, N = 3203, K = 777;
  const auto a = random_values(static_cast<std::size_t>(M * K), 11);
  const auto b = random_values(static_cast<std::size_t>(N * K), 12);
  const auto want = naive_nt(M, N, K, a, K, b, K);
  for (GemmKernel kern : supported_kernels()) {
    set_gemm_kernel(kern);
    for (int threads : {1, 2}) {
      std::vector<double> c(static_cast<std::size_t>(M * N));
      gemm_nt(M, N, K, a.data(), K, b.data(), K, c.data(), N, threads);
      EXPECT_TRUE(same_bits(c, want)) << gemm_kernel_name(kern) << " threads " << threads;
    }
  }
}

TEST(Gemm, GlobalThreadSetterGivesSameBits) {
  KernelGuard guard;
  const I M = 200, N = 150, K = 513;
  const auto a = random_values(static_cast<std::size_t>(M * K), 21);
  const auto b = random_values(static_cast<std::size_t>(N * K), 22);
  std::vector<double> c1(static_cast<std::size_t>(M * N)), c2(c1.size());
  set_gemm_threads(1);
  EXPECT_EQ(gemm_threads(), 1);
  gemm_nt(M, N, K, a.data(), K, b.data(), K, c1.data(), N);
  set_gemm_threads(2);
  EXPECT_EQ(gemm_threads(), 2);
  gemm_nt(M, N, K, a.data(), K, b.data(), K, c2.data(), N);
  EXPECT_TRUE(same_bits(c1, c2));
  EXPECT_TRUE(same_bits(c1, naive_nt(M, N, K, a, K, b, K)));
}

TEST(Gemm, BatchInvariance) {
  // A row computed alone equals the same row inside a large M (and any sub-batch).
  KernelGuard guard;
  const I M = 301, N = 517, K = 1030;
  const auto a = random_values(static_cast<std::size_t>(M * K), 31);
  const auto b = random_values(static_cast<std::size_t>(N * K), 32);
  for (GemmKernel kern : supported_kernels()) {
    set_gemm_kernel(kern);
    std::vector<double> big(static_cast<std::size_t>(M * N));
    gemm_nt(M, N, K, a.data(), K, b.data(), K, big.data(), N, 2);
    for (I r : {I{0}, I{5}, I{150}, I{300}}) {
      std::vector<double> row(static_cast<std::size_t>(N));
      gemm_nt(1, N, K, a.data() + r * K, K, b.data(), K, row.data(), N, 2);
      EXPECT_EQ(std::memcmp(row.data(), big.data() + r * N, static_cast<std::size_t>(N) * sizeof(double)), 0)
          << "row " << r << " kernel " << gemm_kernel_name(kern);
    }
    // A 13-row window from the middle
    std::vector<double> sub(static_cast<std::size_t>(13 * N));
    gemm_nt(13, N, K, a.data() + 100 * K, K, b.data(), K, sub.data(), N, 1);
    EXPECT_EQ(std::memcmp(sub.data(), big.data() + 100 * N, sub.size() * sizeof(double)), 0);
  }
}

TEST(Gemm, StridesNnAndAbs) {
  KernelGuard guard;
  const I M = 37, N = 45, K = 300, lda = K + 5, ldb = K + 3, ldc = N + 7;
  const auto a = random_values(static_cast<std::size_t>(M * lda), 41);
  const auto b = random_values(static_cast<std::size_t>(N * ldb), 42);
  const auto want = naive_nt(M, N, K, a, lda, b, ldb);
  const auto want_abs = naive_nt(M, N, K, a, lda, b, ldb, true);
  // B transposed into [K, N] with stride N + 2 for gemm_nn.
  const I ldbt = N + 2;
  std::vector<double> bt(static_cast<std::size_t>(K * ldbt), 0.0);
  for (I j = 0; j < N; ++j) {
    for (I k = 0; k < K; ++k) bt[static_cast<std::size_t>(k * ldbt + j)] = b[static_cast<std::size_t>(j * ldb + k)];
  }
  for (GemmKernel kern : supported_kernels()) {
    set_gemm_kernel(kern);
    for (int threads : {1, 2}) {
      std::vector<double> c(static_cast<std::size_t>(M * ldc), -7.0), cn(c.size(), -7.0), ca(c.size(), -7.0);
      gemm_nt(M, N, K, a.data(), lda, b.data(), ldb, c.data(), ldc, threads);
      gemm_nn(M, N, K, a.data(), lda, bt.data(), ldbt, cn.data(), ldc, threads);
      gemm_nt(M, N, K, a.data(), lda, b.data(), ldb, ca.data(), ldc, threads, true);
      for (I i = 0; i < M; ++i) {
        for (I j = 0; j < ldc; ++j) {
          const auto at = static_cast<std::size_t>(i * ldc + j);
          if (j >= N) {  // padding of C untouched
            EXPECT_EQ(c[at], -7.0);
            EXPECT_EQ(cn[at], -7.0);
            continue;
          }
          const auto w = static_cast<std::size_t>(i * N + j);
          EXPECT_EQ(std::memcmp(&c[at], &want[w], sizeof(double)), 0) << i << "," << j;
          EXPECT_EQ(std::memcmp(&cn[at], &want[w], sizeof(double)), 0) << i << "," << j;
          EXPECT_EQ(std::memcmp(&ca[at], &want_abs[w], sizeof(double)), 0) << i << "," << j;
        }
      }
    }
  }
}

TEST(Gemm, SpecialValuesAndSignedZero) {
  KernelGuard guard;
  // Products of -0.0 only: the sequential sum starting at +0.0 is +0.0. Subnormal products are
  // kept (no flush to zero); inf and NaN propagate as in the naive loop.
  const I M = 9, N = 11, K = 5;
  std::vector<double> a(static_cast<std::size_t>(M * K), -0.0), b(static_cast<std::size_t>(N * K), 1.0);
  a[0] = 0x1.0p-1060;
  b[0] = 0x1.0p-10;  // subnormal product
  a[static_cast<std::size_t>(2 * K + 1)] = std::numeric_limits<double>::infinity();
  b[static_cast<std::size_t>(3 * K + 1)] = 0.0;  // inf · 0 = NaN in (2, 3)
  const auto want = naive_nt(M, N, K, a, K, b, K);
  for (GemmKernel kern : supported_kernels()) {
    set_gemm_kernel(kern);
    std::vector<double> c(static_cast<std::size_t>(M * N));
    gemm_nt(M, N, K, a.data(), K, b.data(), K, c.data(), N, 1);
    for (std::size_t t = 0; t < c.size(); ++t) {
      if (std::isnan(want[t])) {
        EXPECT_TRUE(std::isnan(c[t])) << t;
      } else {
        EXPECT_EQ(std::memcmp(&c[t], &want[t], sizeof(double)), 0) << t << " " << c[t] << " vs " << want[t];
      }
    }
    EXPECT_FALSE(std::signbit(c[static_cast<std::size_t>(5 * N + 5)]));
    EXPECT_EQ(c[0], 0x1.0p-1070);
  }
}

// The exact sparse attention runs its logits and numerators through the GEMM; by the defined
// order it must equal the plain loops (acc += q·v over d; o += w·v over the list) bit for bit.
TEST(Gemm, SparseAttentionExactEqualsPlainLoops) {
  KernelGuard guard;
  std::mt19937_64 rng(5);
  std::normal_distribution<double> nd;
  const std::int64_t H = 16, c = 67, rows = 21, nkv = 90, width = 40;
  Mat q(rows * H, c), kv(nkv, c);
  for (Eigen::Index i = 0; i < q.size(); ++i) q.data()[i] = 3.0 * nd(rng);
  for (Eigen::Index i = 0; i < kv.size(); ++i) kv.data()[i] = nd(rng);
  std::vector<double> sink(static_cast<std::size_t>(H));
  for (auto& z : sink) z = nd(rng);
  sink[1] = -std::numeric_limits<double>::infinity();
  IndexLists lists(rows, width, -1);
  std::uniform_int_distribution<int> pick(0, nkv - 1), keep(0, 3);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < width; ++j) {
      if (j == 0 || keep(rng) != 0) lists.at(r, j) = pick(rng);
    }
  }
  const double scale = 0.125;
  Mat want(q.rows(), c);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::vector<std::int32_t> valid;
    for (std::int32_t i : lists.row(r)) {
      if (i != -1) valid.push_back(i);
    }
    for (std::int64_t h = 0; h < H; ++h) {
      std::vector<double> s(valid.size());
      double m = -std::numeric_limits<double>::infinity();
      for (std::size_t j = 0; j < valid.size(); ++j) {
        double acc = 0.0;
        for (std::int64_t d = 0; d < c; ++d) acc += q(r * H + h, d) * kv(valid[j], d);
        s[j] = scale * acc;
        m = std::max(m, s[j]);
      }
      std::vector<double> o(static_cast<std::size_t>(c), 0.0);
      double den = 0.0;
      for (std::size_t j = 0; j < valid.size(); ++j) {
        const double w = std::exp(s[j] - m);
        den += w;
        for (std::int64_t d = 0; d < c; ++d) o[static_cast<std::size_t>(d)] += w * kv(valid[j], d);
      }
      den += std::exp(sink[static_cast<std::size_t>(h)] - m);
      for (std::int64_t d = 0; d < c; ++d) want(r * H + h, d) = o[static_cast<std::size_t>(d)] / den;
    }
  }
  const Precision p(Mode::kExact);
  for (GemmKernel kern : supported_kernels()) {
    set_gemm_kernel(kern);
    for (int threads : {1, 2}) {
      set_gemm_threads(threads);
      const Mat got = sparse_attention(p, q, H, kv, sink, lists, scale);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), static_cast<std::size_t>(want.size()) * sizeof(double)), 0)
          << gemm_kernel_name(kern) << " threads " << threads;
    }
  }
}

TEST(Gemm, EmptyAndBadInput) {
  std::vector<double> c(6, 5.0);
  const double one = 1.0;
  gemm_nt(2, 3, 0, &one, 0, &one, 0, c.data(), 3);  // K = 0: zeros
  for (double v : c) EXPECT_EQ(v, 0.0);
  gemm_nt(0, 3, 4, nullptr, 4, nullptr, 4, nullptr, 3);  // nothing to do
  EXPECT_THROW(gemm_nt(2, 3, 4, &one, 3, &one, 4, c.data(), 3), std::invalid_argument);
  EXPECT_THROW(gemm_nt(-1, 3, 4, &one, 4, &one, 4, c.data(), 3), std::invalid_argument);
  EXPECT_THROW(gemm_nn(2, 3, 4, &one, 4, &one, 2, c.data(), 3), std::invalid_argument);
  EXPECT_STREQ(gemm_kernel_name(GemmKernel::kPortable), "portable");
  EXPECT_TRUE(gemm_kernel_supported(GemmKernel::kPortable));
  EXPECT_NE(gemm_kernel(), GemmKernel::kAuto);
}

}  // namespace
}  // namespace dsv4
