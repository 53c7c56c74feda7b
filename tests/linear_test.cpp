// Linear layers (spec 01 §1.6 dispatch, §1.7 fp8_gemm, §1.8 fp4_gemm), both modes.
#include "dsv4/model/linear.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/numerics/exact_sum.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

Mat random_bf16(std::int64_t r, std::int64_t c, std::uint64_t stream, double scale) {
  return test::random_bf16_matrix(r, c, 17, stream, scale);
}

// Random e4m3 codes (no NaN) and e8m0 scales 2^-10..2^-5.
LinearWeight random_fp8(std::int64_t n, std::int64_t k, std::uint64_t stream) {
  const CounterRng rng(19, stream);
  Tensor w(DType::kE4M3, {n, k});
  auto codes = w.values<std::uint8_t>();
  for (std::size_t i = 0; i < codes.size(); ++i) {
    std::uint8_t c = static_cast<std::uint8_t>(rng.words(i)[0] & 0xFF);
    if ((c & 0x7F) == 0x7F) c = 0x3F;
    codes[i] = c;
  }
  Tensor s(DType::kE8M0, {(n + 127) / 128, (k + 127) / 128});
  auto sc = s.values<std::uint8_t>();
  for (std::size_t i = 0; i < sc.size(); ++i) sc[i] = static_cast<std::uint8_t>(117 + rng.words(1000000 + i)[0] % 6);
  return LinearWeight::fp8(std::move(w), std::move(s));
}

LinearWeight random_fp4(std::int64_t n, std::int64_t k, std::uint64_t stream) {
  const CounterRng rng(23, stream);
  Tensor w(DType::kE2M1x2, {n, k});
  auto bytes = w.values<std::uint8_t>();
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(rng.words(i)[0] & 0xFF);
  Tensor s(DType::kE8M0, {n, k / 32});
  auto sc = s.values<std::uint8_t>();
  for (std::size_t i = 0; i < sc.size(); ++i) sc[i] = static_cast<std::uint8_t>(118 + rng.words(1000000 + i)[0] % 8);
  return LinearWeight::fp4(std::move(w), std::move(s));
}

// An independent, straightforward §1.7 / §1.8 loop in float variables: quantise each row with
// act_quant, then per output element the block partials (exact in double: ≤ 128 products of
// e4m3 × e4m3 / e4m3 × e2m1 values on a 2^-36.. grid fit 53 bits), rounded once to float.
Mat naive_official(const Mat& x, const LinearWeight& w, ScaleFormat fmt, int block) {
  const std::int64_t m_rows = x.rows(), n_out = w.out_features(), k_in = w.in_features();
  std::vector<float> xf(static_cast<std::size_t>(x.size()));
  for (Eigen::Index i = 0; i < x.size(); ++i) xf[static_cast<std::size_t>(i)] = static_cast<float>(x.data()[i]);
  const Fp8Blocks q = act_quant(xf, k_in, 128, fmt);
  Mat y(m_rows, n_out);
  for (std::int64_t m = 0; m < m_rows; ++m) {
    for (std::int64_t n = 0; n < n_out; ++n) {
      float acc = 0.0f;
      for (std::int64_t kb = 0; kb < k_in / block; ++kb) {
        double partial = 0.0;
        for (std::int64_t k = kb * block; k < (kb + 1) * block; ++k) {
          const double a = e4m3_to_float(q.values[static_cast<std::size_t>(m * k_in + k)]);
          double b = 0.0;
          if (w.kind == WeightKind::kFP8) {
            b = e4m3_to_float(w.weight.values<std::uint8_t>()[static_cast<std::size_t>(n * k_in + k)]);
          } else {
            const std::uint8_t byte = w.weight.values<std::uint8_t>()[static_cast<std::size_t>((n * k_in + k) / 2)];
            b = e2m1_to_float(k % 2 == 0 ? byte & 0xF : byte >> 4);
          }
          partial += a * b;
        }
        const float p = static_cast<float>(partial);
        const float sa = q.scales[static_cast<std::size_t>(m * (k_in / 128) + kb * block / 128)];
        if (w.kind == WeightKind::kFP8) {
          const float sb = e8m0_to_float(
              w.scale.values<std::uint8_t>()[static_cast<std::size_t>((n / 128) * ((k_in + 127) / 128) + kb)]);
          const float sigma = sa * sb;
          acc = acc + p * sigma;
        } else {
          const float sw =
              e8m0_to_float(w.scale.values<std::uint8_t>()[static_cast<std::size_t>(n * (k_in / 32) + kb)]);
          const float t = p * sa;
          acc = acc + t * sw;
        }
      }
      y(m, n) = round_bf16(acc);
    }
  }
  return y;
}

TEST(Linear, Fp8OfficialEqualsNaiveLoop) {
  const Mat x = random_bf16(7, 384, 1, 1.5);
  const LinearWeight w = random_fp8(200, 384, 2);  // N not a multiple of 128: two scale rows
  for (ScaleFormat fmt : {ScaleFormat::kUE8M0, ScaleFormat::kFP32}) {
    const Mat y = linear(Precision(Mode::kOfficial), x, w, fmt);
    const Mat ref = naive_official(x, w, fmt, 128);
    for (Eigen::Index i = 0; i < y.size(); ++i) ASSERT_EQ(y.data()[i], ref.data()[i]) << i;
  }
}

TEST(Linear, Fp4OfficialEqualsNaiveLoop) {
  const Mat x = random_bf16(5, 256, 3, 1.0);
  const LinearWeight w = random_fp4(70, 256, 4);
  for (ScaleFormat fmt : {ScaleFormat::kUE8M0, ScaleFormat::kFP32}) {
    const Mat y = linear(Precision(Mode::kOfficial), x, w, fmt);
    const Mat ref = naive_official(x, w, fmt, 32);
    for (Eigen::Index i = 0; i < y.size(); ++i) ASSERT_EQ(y.data()[i], ref.data()[i]) << i;
  }
}

// Official fp8 vs exact within the derived bound. With x̂ = s_a·q the act_quant value of x
// (power-of-two s_a, |x/s_a| ≤ 448): |x̂_k − x_k| ≤ 2^-4|x_k| + 2^-10 s_a (e4m3: 4 significant bits,
// subnormal step 2^-9). The weight values are exact. fp32 roundings: one per partial p_κσ_κ and
// one per accumulation, each ≤ 2^-24 of a quantity ≤ T = Σ|ŵ_k x̂_k|: ≤ 2^-24·T·2(K/128) in all.
// Then e = Σ_k|w_k|(2^-4|x_k| + 2^-10 s_a) + 2^-23(K/128)·T and |ŷ − y| ≤ e + 2^-8(|y| + e).
TEST(Linear, Fp8OfficialWithinDerivedBoundOfExact) {
  const std::int64_t k_in = 512;
  const Mat x = random_bf16(6, k_in, 5, 1.0);
  const LinearWeight w = random_fp8(130, k_in, 6);
  const Mat wv = w.values();
  const Mat yo = linear(Precision(Mode::kOfficial), x, w);
  const Mat ye = linear(Precision(Mode::kExact), x, w);
  std::vector<float> xf(static_cast<std::size_t>(x.size()));
  for (Eigen::Index i = 0; i < x.size(); ++i) xf[static_cast<std::size_t>(i)] = static_cast<float>(x.data()[i]);
  const Fp8Blocks q = act_quant(xf, k_in, 128, ScaleFormat::kUE8M0);
  double worst = 0.0;
  for (Eigen::Index m = 0; m < x.rows(); ++m) {
    for (Eigen::Index n = 0; n < yo.cols(); ++n) {
      double eq = 0.0, t = 0.0;
      for (std::int64_t k = 0; k < k_in; ++k) {
        const double sa = q.scales[static_cast<std::size_t>(m * (k_in / 128) + k / 128)];
        const double aw = std::abs(wv(n, k));
        eq += aw * (0x1.0p-4 * std::abs(x(m, k)) + 0x1.0p-10 * sa);
        t += aw * (std::abs(x(m, k)) * (1 + 0x1.0p-4) + 0x1.0p-10 * sa);
      }
      const double e = eq + 0x1.0p-23 * (k_in / 128.0) * t + 1e-12 * t;
      const double bound = e + 0x1.0p-8 * (std::abs(ye(m, n)) + e);
      const double err = std::abs(yo(m, n) - ye(m, n));
      ASSERT_LE(err, bound) << m << "," << n;
      worst = std::max(worst, err / bound);
    }
  }
  EXPECT_GT(worst, 0.0);
}

// Official bf16 / fp32 weights: C1 per element (exact sum of exact products, one fp32 rounding),
// then bf16 for bf16 weights.
TEST(Linear, Bf16AndFp32OfficialAreC1) {
  const Mat x = random_bf16(4, 200, 7, 1.0);
  const Mat wm = random_bf16(9, 200, 8, 0.1);
  const LinearWeight wb = LinearWeight::bf16_from(wm);
  Mat wf = wm;
  for (Eigen::Index i = 0; i < wf.size(); ++i) wf.data()[i] = static_cast<float>(wf.data()[i] * (1.0 + 1.0 / 3.0));
  const LinearWeight w32 = LinearWeight::fp32_from(wf);
  const Precision p(Mode::kOfficial);
  const Mat yb = linear(p, x, wb), y32 = linear(p, x, w32);
  for (Eigen::Index m = 0; m < x.rows(); ++m) {
    for (Eigen::Index n = 0; n < wm.rows(); ++n) {
      std::vector<double> tb, t32;
      for (Eigen::Index k = 0; k < x.cols(); ++k) {
        tb.push_back(x(m, k) * wm(n, k));
        t32.push_back(x(m, k) * wf(n, k));
      }
      ASSERT_EQ(yb(m, n), static_cast<double>(round_bf16(exact_sum_to_fp32(tb))));
      ASSERT_EQ(y32(m, n), static_cast<double>(exact_sum_to_fp32(t32)));
    }
  }
}

// Exact mode uses the exact dequantisation: cross-check against the numerics library's
// dequant_fp8_weight / dequant_fp4_weight, and a hand case for the fp4 nibble order.
TEST(Linear, ExactUsesExactDequantisation) {
  const LinearWeight w8 = random_fp8(130, 256, 9);
  const Tensor d8 = dequant_fp8_weight(w8.weight, w8.scale);
  EXPECT_TRUE((w8.values().array() == d8.matrix<float>().cast<double>().array()).all());
  const LinearWeight w4 = random_fp4(33, 128, 10);
  const Tensor d4 = dequant_fp4_weight(w4.weight, w4.scale);
  EXPECT_TRUE((w4.values().array() == d4.matrix<float>().cast<double>().array()).all());

  Tensor w(DType::kE2M1x2, {1, 128});
  w.values<std::uint8_t>()[0] = 0x42;  // element 0: code 2 (1.0), element 1: code 4 (2.0)
  Tensor s(DType::kE8M0, {1, 4});
  for (auto& b : s.values<std::uint8_t>()) b = 128;  // 2^1
  const LinearWeight lw = LinearWeight::fp4(std::move(w), std::move(s));
  Mat x = Mat::Zero(1, 128);
  x(0, 0) = 3.0;
  x(0, 1) = 5.0;
  EXPECT_EQ(linear(Precision(Mode::kExact), x, lw)(0, 0), 2.0 * (3.0 * 1.0 + 5.0 * 2.0));
  EXPECT_EQ(linear(Precision(Mode::kOfficial), x, lw)(0, 0), 26.0);  // 3 and 5 are e4m3 values × pow2 scale
}

TEST(Linear, DeterministicAcrossThreadCounts) {
  const Mat x = random_bf16(33, 256, 11, 1.0);
  const LinearWeight w8 = random_fp8(150, 256, 12);
  const LinearWeight wb = LinearWeight::bf16_from(random_bf16(150, 256, 13, 0.1));
  for (Mode mode : {Mode::kExact, Mode::kOfficial}) {
    const Precision p(mode);
    Eigen::setNbThreads(1);
    const Mat a8 = linear(p, x, w8), ab = linear(p, x, wb);
    Eigen::setNbThreads(2);
    const Mat b8 = linear(p, x, w8), bb = linear(p, x, wb);
    Eigen::setNbThreads(0);
    EXPECT_EQ(0, std::memcmp(a8.data(), b8.data(), sizeof(double) * static_cast<std::size_t>(a8.size())));
    EXPECT_EQ(0, std::memcmp(ab.data(), bb.data(), sizeof(double) * static_cast<std::size_t>(ab.size())));
    // batch invariance: a row alone gives the same bits as inside the batch
    const Mat row = linear(p, x.middleRows(17, 1), w8);
    EXPECT_TRUE((row.array() == a8.middleRows(17, 1).array()).all());
  }
}

// A legitimate engine variant of the catalogue (ref/README.md §Deliberate deviations) that needs no
// Deviation: FP8 weights dequantised first (ŵ = code × 2^e, exact) and each 128-block partial
// summed over ŵ, then scaled by s_a alone — instead of the partial over the codes scaled by
// fl32(s_a · s_b) (spec 01 §1.7). The power-of-two s_b commutes with every fp32 rounding (no
// subnormal or overflow here), so the bits are the official ones by construction.
TEST(Linear, Fp8WeightsDequantisedFirstGiveTheSameBits) {
  const std::int64_t k_in = 384;
  const Mat x = random_bf16(5, k_in, 14, 2.0);
  const LinearWeight w = random_fp8(200, k_in, 15);
  const Mat wv = w.values();
  for (ScaleFormat fmt : {ScaleFormat::kUE8M0, ScaleFormat::kFP32}) {
    const Mat y = linear(Precision(Mode::kOfficial), x, w, fmt);
    std::vector<float> xf(static_cast<std::size_t>(x.size()));
    for (Eigen::Index i = 0; i < x.size(); ++i) xf[static_cast<std::size_t>(i)] = static_cast<float>(x.data()[i]);
    const Fp8Blocks q = act_quant(xf, k_in, 128, fmt);
    bool scales_differ = false;  // the order matters only if s_b is not 1
    for (Eigen::Index m = 0; m < x.rows(); ++m) {
      for (Eigen::Index n = 0; n < w.out_features(); ++n) {
        float acc = 0.0f;
        for (std::int64_t kb = 0; kb < k_in / 128; ++kb) {
          std::vector<double> terms;
          for (std::int64_t k = kb * 128; k < (kb + 1) * 128; ++k)
            terms.push_back(e4m3_to_float(q.values[static_cast<std::size_t>(m * k_in + k)]) * wv(n, k));
          const float partial = exact_sum_to_fp32(terms);
          acc = acc + partial * q.scales[static_cast<std::size_t>(m * (k_in / 128) + kb)];
          scales_differ =
              scales_differ ||
              wv(n, kb * 128) !=
                  e4m3_to_float(w.weight.values<std::uint8_t>()[static_cast<std::size_t>(n * k_in + kb * 128)]);
        }
        ASSERT_EQ(y(m, n), static_cast<double>(round_bf16(acc))) << m << "," << n;
      }
    }
    EXPECT_TRUE(scales_differ);
  }
}

TEST(Linear, BadInputNamesTheDimension) {
  Tensor w(DType::kE4M3, {128, 100});
  Tensor s(DType::kE8M0, {1, 1});
  try {
    LinearWeight::fp8(std::move(w), std::move(s));
    FAIL() << "K = 100 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("in_features K = 100"), std::string::npos) << e.what();
  }
  EXPECT_THROW(LinearWeight::fp8(Tensor(DType::kE4M3, {128, 128}), Tensor(DType::kE8M0, {2, 1})),
               std::invalid_argument);
  EXPECT_THROW(LinearWeight::fp4(Tensor(DType::kE2M1x2, {4, 96}), Tensor(DType::kE8M0, {4, 3})), std::invalid_argument);
  EXPECT_THROW(LinearWeight::bf16(Tensor(DType::kF32, {4, 4})), std::invalid_argument);
  const LinearWeight wb = LinearWeight::bf16_from(Mat::Ones(3, 8));
  EXPECT_THROW(linear(Precision(Mode::kExact), Mat::Ones(2, 7), wb), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
