// The structure tests of an error field (oracle/compare structure.hpp, issue 15): each finds the
// structure it is named for far below one ulp per element in an engine with its own rounding noise,
// none fires on faithful engines (other rounding noise, or the exact values), and Holm controls the
// family.
#include "dsv4/compare/structure.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "dsv4/numerics/formats.hpp"

namespace dsv4::compare {
namespace {

constexpr double kK = 2.0;

// Exact values of a [rows, cols] field (normal, some large outliers) and their bf16 roundings — the
// output of a faithful bf16 engine.
struct Field {
  std::int64_t rows, cols;
  std::vector<double> exact, faithful;
};

Field make_field(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  Field f{rows, cols, {}, {}};
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, 1.0);
  for (std::int64_t i = 0; i < rows * cols; ++i) {
    const double x = n(rng) * (i % 97 == 0 ? 8.0 : 1.0);
    f.exact.push_back(x);
    f.faithful.push_back(round_bf16(x));
  }
  return f;
}

const StructureStat& stat(const ErrorStructure& s, StructureKind k) {
  for (const StructureStat& x : s.stats)
    if (x.kind == k) return x;
  throw std::logic_error("no such stat");
}

// The candidate against the official values of a faithful bf16 engine (f.faithful).
ErrorStructure judge(const Field& f, const std::vector<double>& cand) {
  return error_structure(cand, f.faithful, f.exact, FieldLayout{f.rows, f.cols}, DType::kBF16, kK);
}

// Another faithful engine: its fp32 values differ from the official's by upstream rounding noise
// (relative σ = 2^-10, a quarter of a bf16 ulp), so its bf16 outputs differ in some elements by one
// ulp, in either direction.
std::vector<double> other_engine(const Field& f, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, 0x1.0p-10);
  std::vector<double> c;
  for (const double x : f.exact) c.push_back(round_bf16(x * (1.0 + n(rng))));
  return c;
}

TEST(Structure, FaithfulEnginesAreNotStructure) {
  // 40 fields, two faithful candidates each (another engine's rounding noise; the exact values
  // themselves, an engine more precise than the official): no p-value below 1e-4 (pure noise; the
  // chance that any of 320 one-sided tests falls below 1e-4 is < 4%).
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    const Field f = make_field(48, 64, seed);
    for (const std::vector<double>& cand : {other_engine(f, seed + 100), f.exact}) {
      const ErrorStructure s = judge(f, cand);
      ASSERT_EQ(s.stats.size(), 4u);
      for (const StructureStat& x : s.stats) {
        ASSERT_TRUE(x.ran) << describe(x);
        EXPECT_GT(x.p, 1e-4) << "seed " << seed << ": " << describe(x);
      }
    }
  }
}

TEST(Structure, IdenticalValuesAreNoStructure) {
  const Field f = make_field(48, 64, 6);
  for (const StructureStat& x : judge(f, f.faithful).stats) {
    EXPECT_EQ(x.estimate, 0.0) << describe(x);
    EXPECT_EQ(x.p, 1.0) << describe(x);
  }
}

TEST(Structure, ScaleFarBelowOneUlpIsFound) {
  // 0.2% is half a bf16 ulp at the top of a binade: the size checks cannot see it, the slope can —
  // in an engine with its own rounding noise.
  const Field f = make_field(48, 64, 7);
  for (const double eps : {0.002, -0.002}) {
    Field scaled = f;
    for (double& x : scaled.exact) x *= 1.0 + eps;
    const StructureStat sc = judge(f, other_engine(scaled, 3)).stats.front();
    EXPECT_NEAR(sc.estimate, eps, 0.0004) << describe(sc);
    EXPECT_LT(sc.p, 1e-12) << describe(sc);
  }
}

TEST(Structure, OffsetIsFound) {
  const Field f = make_field(48, 64, 8);
  Field shifted = f;
  for (double& x : shifted.exact) x += 0.002;
  const StructureStat o = stat(judge(f, other_engine(shifted, 4)), StructureKind::kOffset);
  EXPECT_NEAR(o.estimate, 0.002, 0.0004) << describe(o);
  EXPECT_LT(o.p, 1e-12) << describe(o);
}

TEST(Structure, OneChannelAndOneRowAreFound) {
  const Field f = make_field(48, 64, 9);
  Field col = f, row = f;
  for (std::int64_t i = 0; i < f.rows * f.cols; ++i) {
    if (i % f.cols == 5) col.exact[static_cast<std::size_t>(i)] *= 1.02;   // one channel (a head dim) 2% off
    if (i / f.cols == 11) row.exact[static_cast<std::size_t>(i)] *= 1.02;  // one position 2% off
  }
  const ErrorStructure sc = judge(f, other_engine(col, 5));
  const StructureStat& c = stat(sc, StructureKind::kChannelScale);
  EXPECT_LT(c.p, 1e-8) << describe(c);
  EXPECT_EQ(c.worst_group, 5);
  EXPECT_GT(stat(sc, StructureKind::kRowScale).p, 1e-4) << "a channel is not a row";
  const ErrorStructure sr = judge(f, other_engine(row, 6));
  const StructureStat& r = stat(sr, StructureKind::kRowScale);
  EXPECT_LT(r.p, 1e-8) << describe(r);
  EXPECT_EQ(r.worst_group, 11);
}

TEST(Structure, TheFloorAllowsFaithfulFp32Systematics) {
  // An fp32 output whose values are all 2 fp32 ulp above the official's — a faithful ≤ 2-ulp
  // function applied last — is a systematic scale of ~2^-22: within the 2^-16 floor.
  const Field f = make_field(48, 64, 11);
  std::vector<double> official, cand;
  for (const double x : f.exact) {
    const float v = static_cast<float>(x);
    official.push_back(v);
    cand.push_back(std::nextafter(std::nextafter(v, INFINITY), INFINITY));
  }
  const FieldLayout l{f.rows, f.cols};
  for (const StructureStat& x : error_structure(cand, official, official, l, DType::kF32, kK).stats)
    EXPECT_EQ(x.p, 1.0) << describe(x);
  // 2^-14 (four times the floor) is found.
  std::vector<double> big;
  for (const double x : official) big.push_back(static_cast<float>(x * (1.0 + 0x1.0p-14)));
  EXPECT_LT(error_structure(big, official, official, l, DType::kF32, kK).stats.front().p, 1e-12);
}

TEST(Structure, TheExactRecomputationsOwnStructureIsAllowed) {
  // The official arithmetic has structure of its own: a row scale s close to 1 times a bf16 vector,
  // rounded back to bf16, returns the vector — the official output is the exact one scaled by 1/s
  // per row. An engine more precise than the official (the exact values) shows that structure
  // against the official and passes; a 0.2% scale on top of the official still fails.
  Field f = make_field(48, 64, 21);
  for (std::int64_t r = 0; r < f.rows; ++r) {
    const double s = 1.0 + 0.0008 * static_cast<double>(r % 5 - 2);
    for (std::int64_t j = 0; j < f.cols; ++j) {
      const auto i = static_cast<std::size_t>(r * f.cols + j);
      f.exact[i] = s * round_bf16(f.exact[i]);
      f.faithful[i] = round_bf16(f.exact[i]);
    }
  }
  // (It stands at most exact_sigmas = 3 standard errors beyond its allowance: p ≥ 1.3e-3.)
  const ErrorStructure exact_like = judge(f, f.exact);
  for (const StructureStat& x : exact_like.stats) EXPECT_GT(x.p, 1e-3) << describe(x);
  Field scaled = f;
  for (double& x : scaled.exact) x *= 1.002;
  EXPECT_LT(judge(f, other_engine(scaled, 7)).stats.front().p, 1e-12);
}

TEST(Structure, TooFewElementsAreNotTestedAndSaySo) {
  const Field f = make_field(1, 8, 12);
  const ErrorStructure s = judge(f, f.faithful);
  for (const StructureStat& x : s.stats) {
    EXPECT_FALSE(x.ran);
    EXPECT_FALSE(x.not_run.empty());
    EXPECT_EQ(x.p, 1.0);
  }
  // One nonzero element carries the whole slope: not enough to test it.
  Field h = make_field(1, 64, 13);
  for (std::size_t i = 1; i < h.exact.size(); ++i) h.exact[i] = h.faithful[i] = 0.0;
  EXPECT_FALSE(stat(judge(h, h.faithful), StructureKind::kScale).ran);
  // One row: no row groups; 64 columns of one element: no column groups.
  Field g = make_field(1, 64, 13);
  g.exact[0] /= 8.0;  // no outlier: 64 comparable elements
  g.faithful[0] = round_bf16(g.exact[0]);
  const ErrorStructure t = judge(g, g.faithful);
  EXPECT_TRUE(stat(t, StructureKind::kScale).ran);
  EXPECT_FALSE(stat(t, StructureKind::kChannelScale).ran);
  EXPECT_FALSE(stat(t, StructureKind::kRowScale).ran);
}

TEST(Structure, NonFiniteElementsAreSkipped) {
  Field f = make_field(32, 32, 14);
  std::vector<double> c = other_engine(f, 1);
  f.faithful[3] = -INFINITY;  // a mask
  c[3] = -INFINITY;
  const ErrorStructure s = judge(f, c);
  EXPECT_EQ(s.compared, 32 * 32 - 1);
  for (const StructureStat& x : s.stats) EXPECT_TRUE(std::isfinite(x.estimate)) << describe(x);
}

TEST(Structure, BadLayoutsAreRefused) {
  const Field f = make_field(4, 8, 15);
  EXPECT_THROW(error_structure(f.faithful, f.exact, f.exact, FieldLayout{4, 7}, DType::kBF16, kK),
               std::invalid_argument);
  EXPECT_THROW(error_structure(std::vector<double>(3), f.exact, f.exact, FieldLayout{4, 8}, DType::kBF16, kK),
               std::invalid_argument);
  // An empty output (no compressed entry yet) has nothing to test.
  const ErrorStructure none = error_structure({}, {}, {}, FieldLayout{1, 0}, DType::kBF16, kK);
  ASSERT_EQ(none.stats.size(), 4u);
  for (const StructureStat& x : none.stats) EXPECT_FALSE(x.ran);
  EXPECT_EQ(layout_of({2, 3, 5}).rows, 6);
  EXPECT_EQ(layout_of({2, 3, 5}).cols, 5);
}

TEST(Holm, StepsDownAndStops) {
  // m = 4 at alpha 0.05: thresholds 0.0125, 0.0167, 0.025, 0.05 for the sorted p-values. 0.001 and
  // 0.011 pass theirs, 0.03 > 0.025 stops the procedure: 0.04 (≤ 0.05 on its own) is not rejected.
  const std::vector<double> p{0.04, 0.001, 0.03, 0.011};
  const std::vector<bool> r = holm_reject(p, 0.05);
  EXPECT_EQ(r, (std::vector<bool>{false, true, false, true}));
  const std::vector<bool> r2 = holm_reject(std::vector<double>{0.001, 0.011, 0.024, 0.5}, 0.05);
  EXPECT_EQ(r2, (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(holm_reject(std::vector<double>{}, 0.05).size(), 0u);
  EXPECT_EQ(holm_reject(std::vector<double>{1.0, 1.0}, 0.05), (std::vector<bool>{false, false}));
}

}  // namespace
}  // namespace dsv4::compare
