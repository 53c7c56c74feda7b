// The precision policy (ref/README.md §Precision design): official-mode GEMMs are C1 per element,
// independent of thread count; exact mode is plain double.
#include "dsv4/model/precision.hpp"

#include <gtest/gtest.h>

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
