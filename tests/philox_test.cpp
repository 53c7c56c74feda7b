// Philox4x32-10 counter RNG (philox.hpp): Random123 known answers, thread-count independence of
// a filled tensor, and distribution sanity with tolerances derived from the sample size.
#include "dsv4/numerics/philox.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {
namespace {

// Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32_10).
TEST(Philox, Random123KnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}), (PhiloxCounter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}),
            (PhiloxCounter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}),
            (PhiloxCounter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

// CounterRng's documented counter layout: (index lo, index hi, stream lo, stream hi), key = seed.
TEST(Philox, CounterLayout) {
  const std::uint64_t seed = 0x299f31d0a4093822ull;
  const std::uint64_t stream = 0x0370734413198a2eull;
  const std::uint64_t index = 0x85a308d3243f6a88ull;
  EXPECT_EQ(CounterRng(seed, stream).words(index), (PhiloxCounter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
  EXPECT_NE(CounterRng(1, 2).words(3), CounterRng(1, 2).words(4));
  EXPECT_NE(CounterRng(1, 2).words(3), CounterRng(1, 3).words(3));
  EXPECT_NE(CounterRng(1, 2).words(3), CounterRng(2, 2).words(3));
}

// Fill a bf16 tensor with normal samples using `threads` threads over interleaved index blocks.
Tensor fill(unsigned threads) {
  constexpr std::int64_t kN = 12345;
  Tensor t(DType::kBF16, {3, kN});
  auto v = t.values<std::uint16_t>();
  const CounterRng rng(42, stream_id("philox_test.fill"));
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      for (std::size_t i = 64 * w; i < v.size(); i += 64 * threads) {
        for (std::size_t j = i; j < std::min(v.size(), i + 64); ++j) v[j] = double_to_bf16(rng.normal(j));
      }
    });
  }
  for (auto& th : pool) th.join();
  return t;
}

TEST(Philox, FilledTensorIndependentOfThreadCount) {
  const Tensor one = fill(1);
  for (unsigned threads : {2u, 7u}) {
    const Tensor many = fill(threads);
    ASSERT_EQ(one.nbytes(), many.nbytes());
    EXPECT_EQ(std::memcmp(one.bytes(), many.bytes(), one.nbytes()), 0) << threads << " threads";
  }
  // Not a constant fill: plenty of distinct values.
  const auto v = one.values<std::uint16_t>();
  EXPECT_NE(v[0], v[1]);
}

// Sample means within 6 standard errors (sigma/sqrt(n)); a failure is a 1e-9 event.
TEST(Philox, UniformAndNormalSanity) {
  constexpr int kN = 1 << 20;
  const CounterRng rng(7, stream_id("philox_test.stats"));
  double su = 0, su2 = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < kN; ++i) {
    const double u = rng.uniform(static_cast<std::uint64_t>(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    su += u;
    su2 += u * u;
    const double z = rng.normal(static_cast<std::uint64_t>(i));
    ASSERT_TRUE(std::isfinite(z));
    sn += z;
    sn2 += z * z;
  }
  const double n = kN;
  // Uniform: mean 1/2 (sd 1/sqrt(12)), E[u^2] = 1/3 (sd of u^2 is sqrt(4/45)).
  EXPECT_NEAR(su / n, 0.5, 6 * std::sqrt(1.0 / 12.0 / n));
  EXPECT_NEAR(su2 / n, 1.0 / 3.0, 6 * std::sqrt(4.0 / 45.0 / n));
  // Normal: mean 0 (sd 1), E[z^2] = 1 (variance of z^2 is 2).
  EXPECT_NEAR(sn / n, 0.0, 6 * std::sqrt(1.0 / n));
  EXPECT_NEAR(sn2 / n, 1.0, 6 * std::sqrt(2.0 / n));
}

TEST(Philox, StreamIdIsFnv1a) {
  EXPECT_EQ(stream_id(""), 0xcbf29ce484222325ull);   // FNV-1a 64 offset basis
  EXPECT_EQ(stream_id("a"), 0xaf63dc4c8601ec8cull);  // published FNV-1a 64 test vector
}

}  // namespace
}  // namespace dsv4
