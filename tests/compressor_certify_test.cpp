// Exact-mode certification of the compressor's quantisation decisions (ref/README.md §Precision
// design; bound derivation in ref/model/src/compressor.cpp): random inputs certify almost every
// decision, the bound holds against Mp50 and is not loose by more than 1e6×, decode ≡ prefill.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dsv4/model/compressor.hpp"
#include "dsv4/model/kv_certify.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant_margin.hpp"
#include "support/small_configs.hpp"

namespace dsv4 {
namespace {

using testing_support::compressor_kinds::kDim;
using testing_support::compressor_kinds::kind_name;
using testing_support::compressor_kinds::spec_of;

// Unrounded N(0, 1) doubles (exact mode's input).
Mat tokens(std::int64_t n, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("compressor_certify_test.x"));
  Mat x(n, kDim);
  for (std::int64_t i = 0; i < n * kDim; ++i) x.data()[i] = rng.normal(static_cast<std::uint64_t>(i));
  return x;
}

std::int64_t quantised_dims(const CompressorSpec& s) { return s.rotate ? s.head_dim : s.head_dim - s.rope_head_dim; }

class CompressorCertify : public ::testing::TestWithParam<int> {};

TEST_P(CompressorCertify, RandomInputsCertify) {
  const CompressorSpec s = spec_of(GetParam());
  const Compressor comp(Precision(Mode::kExact), s, CompressorWeights::synthetic(s, 7));
  CompressorState st = comp.initial_state();
  const std::int64_t n = s.ratio == 128 ? 384 : 256;
  const CompressedEntries e = comp.prefill(tokens(n, 11), st);
  ASSERT_EQ(e.count(), n / s.ratio);
  EXPECT_EQ(e.decisions.certified + e.decisions.redecided, e.count() * quantised_dims(s));
  EXPECT_GT(e.decisions.certified, 0);
  EXPECT_LE(e.decisions.redecided * 100, e.decisions.certified) << kind_name(GetParam());
  EXPECT_LE(e.decisions.flipped, e.decisions.redecided);
  std::printf("%s: certified %lld, re-decided %lld (%lld entries), flipped %lld\n", kind_name(GetParam()),
              static_cast<long long>(e.decisions.certified), static_cast<long long>(e.decisions.redecided),
              static_cast<long long>(e.decisions.recomputed), static_cast<long long>(e.decisions.flipped));
}

TEST_P(CompressorCertify, BoundHoldsAgainstMp50AndIsTight) {
  const CompressorSpec s = spec_of(GetParam());
  const Compressor comp(Precision(Mode::kExact), s, CompressorWeights::synthetic(s, 3));
  const std::int64_t n = s.ratio == 128 ? 256 : 24;
  const Mat x = tokens(n, 5);
  for (std::int64_t i = 0; i < n / s.ratio; ++i) {
    const CompressorEntryCheck ck = comp.check_entry(prefill_pool_input(s, x, i), i, true);
    ASSERT_EQ(ck.value.size(), static_cast<std::size_t>(quantised_dims(s)));
    ASSERT_EQ(ck.bound.size(), ck.value.size());
    ASSERT_EQ(ck.error.size(), ck.value.size());
    double max_err = 0.0, max_bound = 0.0;
    for (std::size_t j = 0; j < ck.value.size(); ++j) {
      EXPECT_LE(std::fabs(ck.error[j]), ck.bound[j]) << kind_name(GetParam()) << " entry " << i << " dim " << j;
      max_err = std::max(max_err, std::fabs(ck.error[j]));
      max_bound = std::max(max_bound, ck.bound[j]);
    }
    EXPECT_GT(max_err, 0.0);
    EXPECT_LE(max_bound, 1e6 * max_err) << kind_name(GetParam()) << " entry " << i;
  }
}

TEST_P(CompressorCertify, DecodeEqualsPrefill) {
  const CompressorSpec s = spec_of(GetParam());
  const Compressor comp(Precision(Mode::kExact), s, CompressorWeights::synthetic(s, 9));
  const std::int64_t n = s.ratio == 128 ? 256 : 32;
  const Mat x = tokens(n, 13);
  CompressorState st = comp.initial_state();
  const CompressedEntries all = comp.prefill(x, st);
  CompressorState sd = comp.initial_state();
  (void)comp.prefill(x.topRows(1), sd);
  std::int64_t certified = 0, redecided = 0;
  for (std::int64_t p = 1; p < n; ++p) {
    const CompressedEntries e = comp.decode(x.middleRows(p, 1), p, sd);
    certified += e.decisions.certified;
    redecided += e.decisions.redecided;
    for (std::int64_t r = 0; r < e.count(); ++r) {
      for (std::int64_t c = 0; c < s.head_dim; ++c) {
        ASSERT_EQ(e.entries(r, c), all.entries(e.first + r, c)) << "entry " << e.first + r << " dim " << c;
      }
    }
  }
  EXPECT_EQ(certified, all.decisions.certified);
  EXPECT_EQ(redecided, all.decisions.redecided);
}

// The Mp50 block quantisers agree with the exact double quantiser on double inputs (random values,
// exact grid midpoints included), for FP8 and FP4.
TEST(CompressorCertifyQuantisers, Mp50MatchesDoubleQuantiser) {
  const CounterRng rng(1, stream_id("compressor_certify_test.q"));
  for (const BlockQuant kind : {BlockQuant::kFp8Ue8m0, BlockQuant::kFp4}) {
    const int block = kind == BlockQuant::kFp8Ue8m0 ? 64 : 32;
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<double> v(static_cast<std::size_t>(block));
      for (int j = 0; j < block; ++j) {
        const auto i = static_cast<std::uint64_t>(trial * block + j);
        v[static_cast<std::size_t>(j)] = std::ldexp(rng.normal(i), trial % 7 - 3);
      }
      if (trial % 2 == 1) {  // exact midpoints: the block amax fixes the scale, the others are midpoints
        const double top = kind == BlockQuant::kFp8Ue8m0 ? 448.0 : 6.0;
        v[0] = top;
        const std::vector<double> mids = kind == BlockQuant::kFp8Ue8m0
                                             ? std::vector<double>{0.5 * 0x1.0p-9, 1.0625, 2.125, 3.0 * 0x1.0p-9, 13.0}
                                             : std::vector<double>{0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
        for (std::size_t j = 0; j < mids.size(); ++j) v[1 + j] = (j % 2 == 0 ? 1.0 : -1.0) * mids[j];
      }
      std::vector<Mp50> mp(v.begin(), v.end());
      const std::vector<double> q = block_quant_mp50(mp, kind);
      std::vector<double> d = v;
      (void)block_quant_exact_inplace(d, block, block, kind);
      for (int j = 0; j < block; ++j) {
        ASSERT_EQ(q[static_cast<std::size_t>(j)], d[static_cast<std::size_t>(j)]) << "trial " << trial << " j " << j;
      }
    }
  }
}

// A constructed near-tie: the norm weight of one nope dim of entry 1 is scaled so that its value
// lands (up to a few ulp) on an e4m3 rounding midpoint; the bound cannot decide it, the entry is
// re-decided in Mp50 and holds the Mp50 decisions, and decode still equals prefill.
TEST(CompressorCertifyNearTie, MidpointIsRedecided) {
  const CompressorSpec s = spec_of(0);
  CompressorWeights w = CompressorWeights::synthetic(s, 21);
  const Mat x = tokens(16, 17);
  const std::int64_t entry = 1;
  std::int64_t j = -1;
  double factor = 1.0;
  {
    const Compressor comp(Precision(Mode::kExact), s, w);
    const CompressorEntryCheck ck = comp.check_entry(prefill_pool_input(s, x, entry), entry, false);
    double amax = 0.0;
    for (std::size_t i = 0; i < 64; ++i) amax = std::max(amax, std::fabs(ck.value[i]));
    int k = 0;
    (void)std::frexp(amax / 448.0, &k);
    while (amax <= std::ldexp(448.0, k - 1)) --k;
    while (amax > std::ldexp(448.0, k)) ++k;
    for (std::size_t i = 0; i < 64 && j < 0; ++i) {
      const double t = std::fabs(ck.value[i]) / std::ldexp(1.0, k);
      if (t < 1.0 || t > 200.0) continue;
      int e = 0;
      (void)std::frexp(t, &e);                        // t ∈ [2^(e−1), 2^e)
      const double spacing = std::ldexp(1.0, e - 4);  // e4m3: 3 mantissa bits
      const double mid = (std::floor(t / spacing) + 0.5) * spacing;
      j = static_cast<std::int64_t>(i);
      factor = mid / t;
    }
  }
  ASSERT_GE(j, 0);
  w.norm(j) *= factor;
  const Compressor comp(Precision(Mode::kExact), s, w);
  CompressorState st = comp.initial_state();
  const CompressedEntries all = comp.prefill(x, st);
  EXPECT_GE(all.decisions.redecided, 1);
  EXPECT_GE(all.decisions.recomputed, 1);
  EXPECT_LE(all.decisions.flipped, all.decisions.redecided);
  // the entry holds the Mp50 decisions: exact values value − error (error = value − Mp50 rounded to
  // double, so known to ~1e-31), quantised per 64-block on Mp50
  const CompressorEntryCheck ck = comp.check_entry(prefill_pool_input(s, x, entry), entry, true);
  std::vector<Mp50> exact(ck.value.size());
  for (std::size_t i = 0; i < exact.size(); ++i) exact[i] = Mp50(ck.value[i]) - Mp50(ck.error[i]);
  for (std::size_t b0 = 0; b0 < exact.size(); b0 += 64) {
    const std::vector<double> want = fp8_ue8m0_block_mp50(std::span<const Mp50>(exact.data() + b0, 64));
    for (std::size_t i = 0; i < 64; ++i) {
      EXPECT_EQ(all.entries(entry, static_cast<std::int64_t>(b0 + i)), want[i]) << "dim " << b0 + i;
    }
  }
  CompressorState sd = comp.initial_state();
  (void)comp.prefill(x.topRows(1), sd);
  for (std::int64_t p = 1; p < x.rows(); ++p) {
    const CompressedEntries e = comp.decode(x.middleRows(p, 1), p, sd);
    for (std::int64_t r = 0; r < e.count(); ++r) {
      for (std::int64_t c = 0; c < s.head_dim; ++c) ASSERT_EQ(e.entries(r, c), all.entries(e.first + r, c));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CompressorCertify, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& i) { return std::string(kind_name(i.param)); });

}  // namespace
}  // namespace dsv4
