// The precision policy (ref/README.md §Precision design): official-mode GEMMs are C1 per element,
// independent of thread count; exact mode is plain double.
#include "dsv4/model/precision.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <tuple>

#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

Mat random_bf16(std::int64_t r, std::int64_t c, std::uint64_t stream, double scale) {
  return test::random_bf16_matrix(r, c, 1, stream, scale);
}

TEST(Precision, OfficialMatmulIsC1PerElement) {
  const Mat x = random_bf16(9, 300, 1, 1.0);
  const Mat w = random_bf16(13, 300, 2, 0.05);
  const Precision p(Mode::kOfficial);
  const Mat y = p.matmul_nt(x, w);
  for (Eigen::Index i = 0; i < y.rows(); ++i) {
    for (Eigen::Index j = 0; j < y.cols(); ++j) {
      std::vector<double> terms;
      for (Eigen::Index k = 0; k < x.cols(); ++k) terms.push_back(x(i, k) * w(j, k));
      ASSERT_EQ(y(i, j), static_cast<double>(exact_sum_to_fp32(terms))) << i << "," << j;
    }
  }
}

TEST(Precision, OfficialMatmulIsBatchAndThreadInvariant) {
  const Mat x = random_bf16(64, 256, 3, 1.0);
  const Mat w = random_bf16(32, 256, 4, 0.05);
  const Precision p(Mode::kOfficial);
  Eigen::setNbThreads(1);
  const Mat y1 = p.matmul_nt(x, w);
  Eigen::setNbThreads(2);
  const Mat y2 = p.matmul_nt(x, w);
  EXPECT_TRUE((y1.array() == y2.array()).all());
  // Row 17 alone gives the same bits as inside the batch.
  const Mat row = p.matmul_nt(x.row(17), w);
  EXPECT_TRUE((row.array() == y1.row(17).array()).all());
}

// The fp32-order yardstick (Deviation::kSumSequential, spec 01 C1's sequential fp32 variant): every
// element of its GEMM is the chain s <- fmaf(x_ik, w_jk, s) over k ascending — whatever path
// computes it (the eight-lane one, four rows at a time, or Precision::dot's). Shapes cover partial
// lanes (N % 8 != 0) and rows (M % 4 != 0); unrounded operands make the float conversions matter.
TEST(Precision, SequentialFp32MatmulIsTheFmafChainPerElement) {
  const Precision p(Mode::kOfficial, Deviation::kSumSequential);
  for (const auto& [M, N, K] :
       {std::tuple<std::int64_t, std::int64_t, std::int64_t>{7, 13, 300}, {16, 8, 64}, {3, 21, 1}, {33, 5, 517}}) {
    const Mat x = test::random_normal_matrix(M, K, 1, 5, 1.0);
    const Mat w = test::random_normal_matrix(N, K, 1, 6, 0.05);
    for (const int threads : {1, 0}) {
      const Mat y = p.matmul_nt(x, w, threads);
      const Mat yn = p.matmul_nn(x, w.transpose(), threads);
      for (Eigen::Index i = 0; i < M; ++i) {
        for (Eigen::Index j = 0; j < N; ++j) {
          float s = 0.0f;  // the C library's fmaf, term by term
          for (Eigen::Index k = 0; k < K; ++k)
            s = std::fma(static_cast<float>(x(i, k)), static_cast<float>(w(j, k)), s);
          ASSERT_EQ(std::bit_cast<std::uint64_t>(y(i, j)), std::bit_cast<std::uint64_t>(static_cast<double>(s)))
              << M << "x" << N << "x" << K << " threads " << threads << " at " << i << "," << j;
          ASSERT_EQ(std::bit_cast<std::uint64_t>(yn(i, j)), std::bit_cast<std::uint64_t>(static_cast<double>(s)));
          ASSERT_EQ(std::bit_cast<std::uint64_t>(p.dot(x.row(i).data(), w.row(j).data(), K)),
                    std::bit_cast<std::uint64_t>(static_cast<double>(s)));
        }
      }
    }
  }
}

TEST(Precision, ExactModeStoresNoRounding) {
  const Precision e(Mode::kExact);
  const double v = 1.0 + 0x1.0p-40;
  EXPECT_EQ(e.bf16(v), v);
  EXPECT_EQ(e.fp32(v), v);
  const Precision o(Mode::kOfficial);
  EXPECT_EQ(o.bf16(v), 1.0);
  EXPECT_EQ(o.fp32(v), 1.0);
}

TEST(Precision, ModeNames) {
  EXPECT_EQ(mode_from_name("exact"), Mode::kExact);
  EXPECT_EQ(mode_from_name("official"), Mode::kOfficial);
  EXPECT_THROW(mode_from_name("fast"), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
