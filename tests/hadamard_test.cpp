// Walsh–Hadamard rotation (spec 01 §1.10).
#include "dsv4/model/hadamard.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

Mat random_bf16(std::int64_t r, std::int64_t c, std::uint64_t stream, double scale) {
  return test::random_bf16_matrix(r, c, 11, stream, scale);
}

// Exact mode: the transform of the identity is the orthonormal Sylvester matrix H: H Hᵀ = I and
// H_ij = (−1)^popcount(i&j)/sqrt(N); and H is an involution (H·H = I).
TEST(Hadamard, ExactOrthogonalSylvesterInvolution) {
  const Precision p(Mode::kExact);
  for (std::int64_t n : {1, 2, 8, 128}) {
    const Mat h = hadamard(p, Mat::Identity(n, n));
    EXPECT_LT((h * h.transpose() - Mat::Identity(n, n)).cwiseAbs().maxCoeff(), 1e-14) << n;
    const double inv = 1.0 / std::sqrt(static_cast<double>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        const double sign = (std::popcount(static_cast<unsigned>(i & j)) % 2 == 0) ? 1.0 : -1.0;
        ASSERT_NEAR(h(i, j), sign * inv, 1e-15) << n << " " << i << "," << j;
      }
    }
    const Mat x = random_bf16(3, n, 1, 1.0);
    const Mat back = hadamard(p, hadamard(p, x));
    EXPECT_LT((back - x).cwiseAbs().maxCoeff(), 1e-13 * (1.0 + x.cwiseAbs().maxCoeff())) << n;
  }
}

// An independent fp32 butterfly: blocks of 2h, pairs (j, j+h) within each block, stages in
// increasing order; float variables throughout.
std::vector<float> naive_fp32_wht(std::vector<float> u) {
  const std::size_t n = u.size();
  for (std::size_t h = 1; h < n; h <<= 1) {
    for (std::size_t block = 0; block < n; block += 2 * h) {
      for (std::size_t j = block; j < block + h; ++j) {
        const float a = u[j], b = u[j + h];
        u[j] = a + b;
        u[j + h] = a - b;
      }
    }
  }
  const float scale = static_cast<float>(std::pow(static_cast<double>(n), -0.5));
  for (float& v : u) v = round_bf16(v * scale);
  return u;
}

TEST(Hadamard, OfficialEqualsNaiveFp32Butterfly) {
  const Mat x = random_bf16(6, 2 * 128, 2, 3.0);  // two 128-wide segments per row (indexer heads)
  const Mat y = hadamard(Precision(Mode::kOfficial), x, 128);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (int g = 0; g < 2; ++g) {
      std::vector<float> u(128);
      for (int i = 0; i < 128; ++i) u[static_cast<std::size_t>(i)] = static_cast<float>(x(r, g * 128 + i));
      const std::vector<float> ref = naive_fp32_wht(u);
      for (int i = 0; i < 128; ++i)
        ASSERT_EQ(y(r, g * 128 + i), ref[static_cast<std::size_t>(i)]) << r << "," << g << "," << i;
    }
  }
  // and it is not the two-rounding third-party fallback everywhere: values are bf16 numbers
  for (Eigen::Index i = 0; i < y.size(); ++i) ASSERT_EQ(y.data()[i], static_cast<double>(round_bf16(y.data()[i])));
}

// A unit vector e_k: every output is ±bf16(fl32(N^−1/2)) with sign (−1)^popcount(i&k).
TEST(Hadamard, OfficialUnitVector) {
  const double mag = round_bf16(static_cast<float>(std::pow(128.0, -0.5)));
  for (int k : {0, 5, 127}) {
    Mat x = Mat::Zero(1, 128);
    x(0, k) = 1.0;
    hadamard_inplace(Precision(Mode::kOfficial), x);
    for (int i = 0; i < 128; ++i) {
      const double sign = (std::popcount(static_cast<unsigned>(i & k)) % 2 == 0) ? 1.0 : -1.0;
      ASSERT_EQ(x(0, i), sign * mag) << k << "," << i;
    }
  }
}

TEST(Hadamard, BadSizeThrows) {
  const Precision p(Mode::kOfficial);
  Mat x = Mat::Ones(2, 96);
  EXPECT_THROW(hadamard_inplace(p, x), std::invalid_argument);      // 96 is not a power of two
  EXPECT_THROW(hadamard_inplace(p, x, 64), std::invalid_argument);  // 64 does not divide 96
  EXPECT_THROW(hadamard_inplace(p, x, 3), std::invalid_argument);
  EXPECT_NO_THROW(hadamard_inplace(p, x, 32));
}

}  // namespace
}  // namespace dsv4
