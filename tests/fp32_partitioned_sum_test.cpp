// FP32-partitioned reductions (spec 06 §6.14) and the official-style linear backward built on them
// (ref/train fp32_partitioned_sum.hpp, linear_backward_fp32.hpp): bit-identical for 1, 2 and 4
// threads and over reruns; equal to a naive single-threaded transcription of the documented rule
// (written out below, not calling the library); within a derived fp32 error bound of the exact
// (double) dW; and a mutated reduction order gives different bits, so the equality can fail.
#include "dsv4/train/fp32_partitioned_sum.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "dsv4/numerics/gemm.hpp"
#include "dsv4/train/embedding_backward_fp32.hpp"
#include "dsv4/train/linear_backward.hpp"
#include "dsv4/train/linear_backward_fp32.hpp"
#include "dsv4/train/rmsnorm_backward_fp32.hpp"
#include "support/fp32_rule_port.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

// The shared §6.14 test pieces (fp32_rule_port.hpp) and the random matrices (random_matrix.hpp).
using namespace test;

struct Shape {
  std::int64_t m, k, n, chunk;
};
// Partition counts 0, 1, 2, 3, 5, 8, 43, 143 and shorter last partitions.
const Shape kShapes[] = {{0, 4, 3, 4},    {1, 5, 3, 128}, {7, 6, 5, 4},    {12, 4, 6, 4},   {129, 8, 7, 128},
                         {300, 9, 5, 64}, {300, 3, 4, 7}, {1000, 4, 3, 7}, {257, 16, 8, 32}};

enum class Order { kRule, kReversedSequential, kAscendingSequential, kMirroredTree };

// The rule of spec 06 §6.14 written plainly (single thread): P buffers of N·K zeros, partition p's
// rows ascending by fmaf, then the pairwise tree over p. The mutations replace step 3.
std::vector<float> naive_dweight(const std::vector<float>& x, const std::vector<float>& dy, const Shape& s,
                                 Order order = Order::kRule) {
  const std::int64_t p_count = (s.m + s.chunk - 1) / s.chunk;
  std::vector<std::vector<float>> buf(static_cast<std::size_t>(p_count), std::vector<float>(s.n * s.k, 0.0f));
  for (std::int64_t p = 0; p < p_count; ++p) {
    for (std::int64_t r = p * s.chunk; r < std::min(s.m, (p + 1) * s.chunk); ++r) {
      for (std::int64_t o = 0; o < s.n; ++o) {
        for (std::int64_t i = 0; i < s.k; ++i) {
          float& acc = buf[p][o * s.k + i];
          acc = std::fma(dy[r * s.n + o], x[r * s.k + i], acc);
        }
      }
    }
  }
  std::vector<float> out(static_cast<std::size_t>(s.n * s.k), 0.0f);
  if (p_count == 0) return out;
  if (order == Order::kRule || order == Order::kMirroredTree) {
    for (std::int64_t step = 1; step < p_count; step *= 2) {
      for (std::int64_t i = 0; i + step < p_count; i += 2 * step) {
        for (std::int64_t e = 0; e < s.n * s.k; ++e) {
          // the mirror adds the same pairs with the operands swapped
          buf[i][e] = order == Order::kRule ? buf[i][e] + buf[i + step][e] : buf[i + step][e] + buf[i][e];
        }
      }
    }
    return buf[0];
  }
  for (std::int64_t e = 0; e < s.n * s.k; ++e) {
    float acc = 0.0f;
    if (order == Order::kReversedSequential) {
      for (std::int64_t p = p_count - 1; p >= 0; --p) acc = acc + buf[p][e];
    } else {
      for (std::int64_t p = 0; p < p_count; ++p) acc = acc + buf[p][e];
    }
    out[e] = acc;
  }
  return out;
}

struct Data {
  std::vector<float> x, dy;
  Mat xd, dyd;
};
// bf16 values (what a bf16 engine's activations and gradients hold), magnitudes far from fp32's
// underflow: the error model below needs no subnormal term.
Data make_data(const Shape& s, std::uint64_t seed) {
  Data d;
  d.xd = test::random_bf16_matrix(s.m, s.k, seed, 1, 1.0);
  d.dyd = test::random_bf16_matrix(s.m, s.n, seed, 2, 0.01);
  d.x = to_floats(d.xd);
  d.dy = to_floats(d.dyd);
  return d;
}

TEST(Fp32PartitionedSum, RuleArithmetic) {
  const PartitionRule rule{7};
  EXPECT_EQ(rule.partitions(0), 0);
  EXPECT_EQ(rule.partitions(1), 1);
  EXPECT_EQ(rule.partitions(7), 1);
  EXPECT_EQ(rule.partitions(8), 2);
  EXPECT_EQ(rule.tree_depth(7), 0);
  EXPECT_EQ(rule.tree_depth(14), 1);
  EXPECT_EQ(rule.tree_depth(15), 2);    // P = 3
  EXPECT_EQ(rule.tree_depth(1000), 8);  // P = 143
  EXPECT_THROW((void)PartitionRule{0}.partitions(4), std::invalid_argument);
  EXPECT_THROW((void)rule.partitions(-1), std::invalid_argument);
  EXPECT_EQ(PartitionRule{}.chunk_rows, kTokenChunkRows);
}

// The library equals the naive transcription, for 1, 2 and 4 threads and over three reruns each.
TEST(Fp32PartitionedSum, DweightEqualsNaiveRuleForAnyThreadCount) {
  ThreadGuard guard;
  for (const Shape& s : kShapes) {
    const Data d = make_data(s, 11);
    const std::vector<float> want = naive_dweight(d.x, d.dy, s);
    for (int threads : {1, 2, 4}) {
      set_gemm_threads(threads);
      for (int rerun = 0; rerun < 3; ++rerun) {
        const std::vector<float> got = linear_dweight_fp32(d.x, d.dy, s.m, s.k, s.n, PartitionRule{s.chunk});
        EXPECT_TRUE(same_bits(got, want)) << "M " << s.m << " C " << s.chunk << " threads " << threads;
      }
    }
  }
}

// The equality above can fail: sequential partition orders (reversed or ascending) give other bits
// on some case; the mirrored tree (the same pairs, operands swapped) agrees, fp32 + commuting.
TEST(Fp32PartitionedSum, MutatedOrderGivesOtherBits) {
  int reversed_differs = 0, ascending_differs = 0;
  for (const Shape& s : kShapes) {
    const Data d = make_data(s, 11);
    const std::vector<float> got = linear_dweight_fp32(d.x, d.dy, s.m, s.k, s.n, PartitionRule{s.chunk});
    reversed_differs += !same_bits(got, naive_dweight(d.x, d.dy, s, Order::kReversedSequential));
    ascending_differs += !same_bits(got, naive_dweight(d.x, d.dy, s, Order::kAscendingSequential));
    EXPECT_TRUE(same_bits(got, naive_dweight(d.x, d.dy, s, Order::kMirroredTree)));
  }
  EXPECT_GT(reversed_differs, 0);
  EXPECT_GT(ascending_differs, 0);
  // A different partition constant is a different rule: other bits on the largest case.
  const Shape s = kShapes[7];
  const Data d = make_data(s, 11);
  EXPECT_FALSE(same_bits(linear_dweight_fp32(d.x, d.dy, s.m, s.k, s.n, PartitionRule{s.chunk}),
                         linear_dweight_fp32(d.x, d.dy, s.m, s.k, s.n, PartitionRule{s.chunk + 1})));
}

// Error bound (no underflow, see make_data). Element (o, i) of dW is S = Σ_r t_r, t_r = dy[r,o]·x[r,i],
// A = Σ_r |t_r|. In its partition a term passes through at most c = min(C, M) fmaf roundings (the one
// that brings it in and one per later row), then through D = ⌈log₂ P⌉ tree additions, so
// |dW_fp32 − S| ≤ γ₃₂(c + D)·A (Higham, Accuracy and Stability §4.2, each term's factor a product
// of at most c + D factors (1 + δ), |δ| ≤ 2⁻²⁴). The exact backward's double GEMM is within
// γ₆₄(M)·A of S, and A computed in double is within γ₆₄(M)·A of itself (nonnegative terms).
TEST(Fp32PartitionedSum, DweightWithinDerivedBoundOfExact) {
  for (const Shape& s : kShapes) {
    if (s.m == 0) continue;
    for (std::uint64_t seed : {3u, 4u}) {
      const Data d = make_data(s, seed);
      const std::vector<float> got = linear_dweight_fp32(d.x, d.dy, s.m, s.k, s.n, PartitionRule{s.chunk});
      const Mat exact = linear_backward(d.xd, Mat::Zero(s.n, s.k), d.dyd).dweight;
      const PartitionRule rule{s.chunk};
      const double c = static_cast<double>(std::min(s.chunk, s.m));
      const double depth = static_cast<double>(rule.tree_depth(s.m));
      const double g64 = gamma(static_cast<double>(s.m), kU64);
      double worst = 0.0;
      for (std::int64_t o = 0; o < s.n; ++o) {
        for (std::int64_t i = 0; i < s.k; ++i) {
          double a = 0.0;
          for (std::int64_t r = 0; r < s.m; ++r) a += std::abs(d.dyd(r, o) * d.xd(r, i));
          a *= 1.0 + g64;
          const double bound = gamma(c + depth, kU32) * a + g64 * a;
          const double err = std::abs(static_cast<double>(got[o * s.k + i]) - exact(o, i));
          EXPECT_LE(err, bound) << "M " << s.m << " C " << s.chunk << " element " << o << "," << i;
          if (bound > 0.0) worst = std::max(worst, err / bound);
        }
      }
      RecordProperty("worst_fraction_of_bound_M" + std::to_string(s.m) + "_C" + std::to_string(s.chunk),
                     std::to_string(worst));
    }
  }
}

// dx: per row, fmaf over o ascending; independent of the thread count; within γ₃₂(N)·Σ|dy·W| of exact.
TEST(Fp32PartitionedSum, DxPerRowAndThreadInvariant) {
  ThreadGuard guard;
  const Shape s{300, 9, 37, 0};
  const Data d = make_data(s, 5);
  const Mat wd = test::random_bf16_matrix(s.n, s.k, 5, 3, 0.05);
  const std::vector<float> w = to_floats(wd);
  std::vector<float> want(static_cast<std::size_t>(s.m * s.k), 0.0f);
  for (std::int64_t r = 0; r < s.m; ++r)
    for (std::int64_t o = 0; o < s.n; ++o)
      for (std::int64_t i = 0; i < s.k; ++i)
        want[r * s.k + i] = std::fma(d.dy[r * s.n + o], w[o * s.k + i], want[r * s.k + i]);
  for (int threads : {1, 2, 4}) {
    set_gemm_threads(threads);
    EXPECT_TRUE(same_bits(linear_dx_fp32(d.dy, w, s.m, s.k, s.n), want)) << threads << " threads";
  }
  const Mat exact = linear_backward(d.xd, wd, d.dyd).dx;
  for (std::int64_t r = 0; r < s.m; ++r) {
    for (std::int64_t i = 0; i < s.k; ++i) {
      double a = 0.0;
      for (std::int64_t o = 0; o < s.n; ++o) a += std::abs(d.dyd(r, o) * wd(o, i));
      a *= 1.0 + gamma(static_cast<double>(s.n), kU64);
      const double bound = (gamma(static_cast<double>(s.n), kU32) + gamma(static_cast<double>(s.n), kU64)) * a;
      EXPECT_LE(std::abs(static_cast<double>(want[r * s.k + i]) - exact(r, i)), bound);
    }
  }
}

// The catalogue's legitimate variant (PartitionRule::shuffled, Deviation::kReductionShuffled): one
// fp32 buffer, the rows in the order r = i·σ mod M (σ the smallest stride ≥ ⌊M/2⌋+1 coprime with M,
// written out here), each row's terms in the site's order; other bits than the rule on some case
// (so a variant that fell back to the rule would fail), the same bits for any thread count.
TEST(Fp32PartitionedSum, ShuffledScheduleIsOneSequentialSumInStrideOrder) {
  ThreadGuard guard;
  int differs = 0;
  for (const Shape& s : kShapes) {
    const Data d = make_data(s, 11);
    std::int64_t stride = s.m > 2 ? s.m / 2 + 1 : 1;
    while (s.m > 2 && std::gcd(stride, s.m) != 1) ++stride;
    std::vector<float> want(static_cast<std::size_t>(s.n * s.k), 0.0f);
    for (std::int64_t i = 0; i < s.m; ++i) {
      const std::int64_t r = (i * stride) % s.m;
      for (std::int64_t o = 0; o < s.n; ++o)
        for (std::int64_t k = 0; k < s.k; ++k)
          want[o * s.k + k] = std::fma(d.dy[r * s.n + o], d.x[r * s.k + k], want[o * s.k + k]);
    }
    PartitionRule shuffled{s.chunk};
    shuffled.shuffled = true;
    for (int threads : {1, 2, 4}) {
      set_gemm_threads(threads);
      EXPECT_TRUE(same_bits(linear_dweight_fp32(d.x, d.dy, s.m, s.k, s.n, shuffled), want))
          << "M " << s.m << " threads " << threads;
    }
    differs += !same_bits(want, naive_dweight(d.x, d.dy, s));
  }
  EXPECT_GT(differs, 0);
}

// The RMSNorm gain site (rmsnorm_backward_fp32.hpp) is the linear site's diagonal, and the gather
// site (embedding_backward_fp32.hpp: embedding, ape) the linear site with one-hot input rows
// (fmaf(dh, 0, acc) = acc: a buffer never holds −0.0), transposed: both against the naive
// transcription above, for the rule and the shuffled schedule; fp32 per-row values (ape's dz) make
// the partition visible.
TEST(Fp32PartitionedSum, NormGainAndGatherSitesAreTheLinearSite) {
  int norm_differs = 0, gather_differs = 0;
  for (const Shape& s : kShapes) {
    const Mat xr = test::random_normal_matrix(s.m, s.k, 13, 4, 1.0);
    const std::vector<float> xf = to_floats(xr);
    const std::vector<float> dy = to_floats(test::random_normal_matrix(s.m, s.k, 13, 5, 0.01));
    const Shape diag{s.m, s.k, s.k, s.chunk};
    const std::vector<float> full = naive_dweight(xf, dy, diag);
    std::vector<float> want(static_cast<std::size_t>(s.k));
    for (std::int64_t i = 0; i < s.k; ++i) want[i] = full[i * s.k + i];
    const std::vector<float> got = rmsnorm_dweight_fp32(dy, xf, s.m, s.k, PartitionRule{s.chunk});
    EXPECT_TRUE(same_bits(got, want)) << "rmsnorm M " << s.m << " C " << s.chunk;
    PartitionRule shuffled{s.chunk};
    shuffled.shuffled = true;
    const std::vector<float> lin = linear_dweight_fp32(xf, dy, s.m, s.k, s.k, shuffled);
    std::vector<float> want_shuffled(static_cast<std::size_t>(s.k));
    for (std::int64_t i = 0; i < s.k; ++i) want_shuffled[i] = lin[i * s.k + i];
    EXPECT_TRUE(same_bits(rmsnorm_dweight_fp32(dy, xf, s.m, s.k, shuffled), want_shuffled));
    norm_differs += !same_bits(got, want_shuffled);
    // gather: table rows V = n + 1 (one never named), ids repeating
    const std::int64_t v = s.n + 1, dim = s.k;
    std::vector<std::int64_t> ids(static_cast<std::size_t>(s.m));
    std::vector<float> onehot(static_cast<std::size_t>(s.m * v), 0.0f);
    for (std::int64_t t = 0; t < s.m; ++t) {
      ids[t] = (t * 7 + t / 3) % s.n;
      onehot[t * v + ids[t]] = 1.0f;
    }
    const std::vector<float> dh = to_floats(test::random_normal_matrix(s.m, dim, 13, 6, 1.0));
    for (const bool sh : {false, true}) {
      PartitionRule rule{s.chunk};
      rule.shuffled = sh;
      const std::vector<float> lt = sh ? linear_dweight_fp32(onehot, dh, s.m, v, dim, rule)
                                       : naive_dweight(onehot, dh, Shape{s.m, v, dim, s.chunk});
      std::vector<float> want_g(static_cast<std::size_t>(v * dim));
      for (std::int64_t r = 0; r < v; ++r)
        for (std::int64_t i = 0; i < dim; ++i) want_g[r * dim + i] = lt[i * v + r];
      const std::vector<float> got_g = embedding_dtable_fp32(ids, dh, v, dim, rule);
      EXPECT_TRUE(same_bits(got_g, want_g)) << "gather M " << s.m << " C " << s.chunk << " shuffled " << sh;
      if (sh) gather_differs += !same_bits(got_g, embedding_dtable_fp32(ids, dh, v, dim, PartitionRule{s.chunk}));
    }
  }
  EXPECT_GT(norm_differs, 0);
  EXPECT_GT(gather_differs, 0);
  EXPECT_THROW((void)rmsnorm_dweight_fp32(std::vector<float>(6), std::vector<float>(4), 2, 3), std::invalid_argument);
  const std::vector<std::int64_t> bad_id{0, 3};
  EXPECT_THROW((void)embedding_dtable_fp32(bad_id, std::vector<float>(4), 3, 2), std::invalid_argument);
  EXPECT_THROW((void)embedding_dtable_fp32(bad_id, std::vector<float>(3), 4, 2), std::invalid_argument);
}

TEST(Fp32PartitionedSum, RefusesBadSizes) {
  const std::vector<float> x(12), dy(6);
  EXPECT_THROW((void)linear_dweight_fp32(x, dy, 3, 4, 3), std::invalid_argument);
  EXPECT_THROW((void)linear_dx_fp32(dy, x, 2, 4, 2), std::invalid_argument);
  EXPECT_THROW((void)fp32_partitioned_sum(4, -1, {}, [](std::int64_t, std::int64_t, std::span<float>) {}),
               std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
