// The KV Compressor (spec 02 §2.6) and the quantiser margins (ref/README.md §Margins).
// Small dims (d = 16, main D = 72 with r_d = 8, indexer D = 32) so every case runs in seconds.
#include "dsv4/model/compressor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/numerics/quant_margin.hpp"

namespace dsv4 {
namespace {

constexpr std::int64_t kDim = 32;
constexpr std::int64_t kRd = 8;
constexpr std::int64_t kMaxSeq = 512;

RopeParams small_rope() {
  RopeParams r;
  r.rope_head_dim = kRd;
  r.base = 160000.0;
  r.factor = 16.0;
  r.original_seq_len = 64;  // YaRN on, with the ramp inside the 4 pairs
  return r;
}

CompressorSpec main_spec(std::int64_t ratio) {
  CompressorSpec s;
  s.ratio = ratio;
  s.dim = kDim;
  s.head_dim = 64 + kRd;  // one FP8 block of nope dims
  s.rope_head_dim = kRd;
  s.rotate = false;
  s.max_seq_len = kMaxSeq;
  s.rope = small_rope();
  return s;
}

CompressorSpec indexer_spec() {
  CompressorSpec s = main_spec(4);
  s.head_dim = 32;  // power of two, one FP4 block
  s.rotate = true;
  return s;
}

const char* kind_name(int kind) { return kind == 0 ? "main4" : kind == 1 ? "main128" : "indexer4"; }
CompressorSpec spec_of(int kind) { return kind == 0 ? main_spec(4) : kind == 1 ? main_spec(128) : indexer_spec(); }

// Tokens: N(0, 1) values, rounded to bf16 (the official input is the bf16 attn_norm output) unless
// `full` — exact mode's input is an unrounded double, which makes the projection's summation order
// visible (a sum of bf16 products in d = 16 terms is often exact in double whatever the order).
Mat tokens(std::int64_t n, std::uint64_t seed, std::int64_t first = 0, bool full = false) {
  const CounterRng rng(seed, stream_id("compressor_test.x"));
  Mat x(n, kDim);
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t c = 0; c < kDim; ++c) {
      const double v = rng.normal(static_cast<std::uint64_t>((first + t) * kDim + c));
      x(t, c) = full ? v : static_cast<double>(round_bf16(v));
    }
  }
  return x;
}

void expect_same(const CompressedEntries& a, const CompressedEntries& b, const std::string& what) {
  ASSERT_EQ(a.first, b.first) << what;
  ASSERT_EQ(a.count(), b.count()) << what;
  ASSERT_EQ(a.entries.cols(), b.entries.cols()) << what;
  for (Eigen::Index i = 0; i < a.entries.size(); ++i) {
    ASSERT_EQ(double_bits(a.entries.data()[i]), double_bits(b.entries.data()[i]))
        << what << " element " << i << ": " << a.entries.data()[i] << " vs " << b.entries.data()[i];
  }
  ASSERT_EQ(a.margins.size(), b.margins.size()) << what;
  for (std::size_t i = 0; i < a.margins.size(); ++i) {
    EXPECT_EQ(a.margins[i].element, b.margins[i].element) << what;
    EXPECT_EQ(a.margins[i].scale, b.margins[i].scale) << what;
  }
}

CompressedEntries row_of(const CompressedEntries& e, std::int64_t i) {
  CompressedEntries r;
  r.first = e.first + i;
  r.entries = e.entries.middleRows(i, 1);
  r.margins = {e.margins.at(static_cast<std::size_t>(i))};
  return r;
}

// ============================ quantiser margins ============================

TEST(QuantMargin, RoundingMarginByHand) {
  // e4m3 near 1: grid 1, 1.125 (quantum 1/8); boundary 1.0625.
  EXPECT_EQ(rounding_margin(kFormatE4M3, 1.0), 0.5);
  EXPECT_EQ(rounding_margin(kFormatE4M3, 1.0625), 0.0);
  EXPECT_EQ(rounding_margin(kFormatE4M3, 1.03125), 0.25);
  EXPECT_EQ(rounding_margin(kFormatE4M3, -1.09375), 0.25);
  EXPECT_EQ(rounding_margin(kFormatE4M3, 448.0), 0.5);
  EXPECT_EQ(rounding_margin(kFormatE4M3, 432.0), 0.0);  // tie between 416 and 448
  // e2m1 grid 0, .5, 1, 1.5, 2, 3, 4, 6.
  EXPECT_EQ(rounding_margin(kFormatE2M1, 2.5), 0.0);
  EXPECT_EQ(rounding_margin(kFormatE2M1, 5.0), 0.0);
  EXPECT_EQ(rounding_margin(kFormatE2M1, 4.5), 0.25);  // quantum 2 between 4 and 6: |4.5 − 5|/2
  EXPECT_EQ(rounding_margin(kFormatE2M1, 0.25), 0.0);
  EXPECT_EQ(rounding_margin(kFormatE2M1, 6.0), 0.5);
}

TEST(QuantMargin, ScaleMarginByHand) {
  // amax = 448 → t = 1 exactly a power of two: the step is at t, margin 0, scale 1.
  std::vector<double> x(64, 0.0);
  x[3] = 448.0;
  QuantMargin m = block_quant_exact_inplace(x, 64, 64, BlockQuant::kFp8Ue8m0);
  EXPECT_EQ(m.scale, 0.0);
  EXPECT_EQ(m.scale_block, 0);
  EXPECT_EQ(x[3], 448.0);
  // amax = 576 → t = 9/7 ∈ (1, 2]: min((2/7)/(9/7), (5/7)/(9/7)) = 2/9, scale 2: 576/2 = 288 on the grid.
  std::fill(x.begin(), x.end(), 0.0);
  x[0] = 576.0;
  x[1] = 2.0 * 1.0625;  // v = 1.0625, a tie → margin 0, rounds to even 1.0 → 2.0
  m = block_quant_exact_inplace(x, 64, 64, BlockQuant::kFp8Ue8m0);
  EXPECT_DOUBLE_EQ(m.scale, 2.0 / 9.0);
  EXPECT_EQ(m.element, 0.0);
  EXPECT_EQ(m.element_index, 1);
  EXPECT_EQ(x[0], 576.0);
  EXPECT_EQ(x[1], 2.0);
  // all-zero FP4 block: the floor is active; every element on the grid.
  std::vector<double> z(32, 0.0);
  m = block_quant_exact_inplace(z, 32, 32, BlockQuant::kFp4);
  EXPECT_EQ(m.element, 0.5);
  EXPECT_EQ(z[0], 0.0);
}

// The exact-mode quantiser on fp32 inputs takes the same decisions as the fp32 kernels (their
// fp32 arithmetic is exact here except amax × fl32(1/qmax)), and reports the same element margins.
TEST(QuantMargin, ExactQuantiserAgreesWithKernelOnFp32Inputs) {
  const CounterRng rng(7, stream_id("quant_margin_test"));
  for (int kind = 0; kind < 2; ++kind) {
    const BlockQuant bq = kind == 0 ? BlockQuant::kFp8Ue8m0 : BlockQuant::kFp4;
    const int block = kind == 0 ? 64 : 32;
    std::vector<float> f(static_cast<std::size_t>(block) * 40);
    for (std::size_t i = 0; i < f.size(); ++i) {
      f[i] = round_bf16(std::ldexp(rng.normal(i), static_cast<int>(i / 64) % 9 - 4));
    }
    std::vector<double> d(f.begin(), f.end());
    const QuantMargin mk = block_quant_margin_fp32(f, block * 4, block, bq);
    if (kind == 0) {
      act_quant_inplace(f, block * 4, block, ScaleFormat::kUE8M0);
    } else {
      fp4_act_quant_inplace(f, block * 4);
    }
    const QuantMargin me = block_quant_exact_inplace(d, block * 4, block, bq);
    for (std::size_t i = 0; i < f.size(); ++i) ASSERT_EQ(static_cast<double>(f[i]), d[i]) << kind << " " << i;
    EXPECT_EQ(mk.element, me.element);
    EXPECT_EQ(mk.element_index, me.element_index);
    EXPECT_NEAR(mk.scale, me.scale, 1e-6);
    EXPECT_GE(me.element, 0.0);
    EXPECT_LE(me.element, 0.5);
  }
}

// ============================ compressor ============================

class CompressorModes : public ::testing::TestWithParam<Mode> {};

// spec 02 §2.6.2: every token identical ⇒ all slots carry the same u, so C = u·Σw = u for any
// softmax weights. With ape = 0 the weights are 1/4, 1/8 or 1/128 (exact), so C = u exactly and
// the entries equal the post-processing of u; with random ape the weights are arbitrary and C = u
// up to the rounding of the weighted sum.
TEST_P(CompressorModes, ConstantInputsPoolToU) {
  const Precision prec(GetParam());
  for (int kind = 0; kind < 3; ++kind) {
    const CompressorSpec s = spec_of(kind);
    CompressorWeights w = CompressorWeights::synthetic(s, 11);
    if (s.overlap()) {  // first half of W_kv (and W_gate) = second half: u_δ = u_{D+δ}
      Mat kv = w.wkv.values(), g = w.wgate.values();
      kv.bottomRows(s.head_dim) = kv.topRows(s.head_dim);
      g.bottomRows(s.head_dim) = g.topRows(s.head_dim);
      w.wkv = LinearWeight::fp32_from(kv);
      w.wgate = LinearWeight::fp32_from(g);
    }
    const Mat x1 = tokens(1, 5);
    const std::int64_t n = 2 * s.ratio + 1;
    Mat x(n, kDim);
    for (std::int64_t t = 0; t < n; ++t) x.row(t) = x1.row(0);
    for (int with_ape = 0; with_ape < 2; ++with_ape) {
      CompressorWeights ww = w;
      if (with_ape == 0) ww.ape.setZero();
      const Compressor comp(prec, s, ww);
      const CompressorProjections p = comp.project(x, 0);
      const RowVec u = p.u.row(0).leftCols(s.head_dim);
      CompressorState st = comp.initial_state();
      const CompressedEntries e = comp.prefill(x, st);
      ASSERT_EQ(e.count(), 2);
      if (with_ape == 0) {
        const CompressedEntries expect = comp.postprocess(Mat(u.replicate(2, 1)), 0);
        expect_same(e, expect, std::string(kind_name(kind)) + " ape = 0");
      }
      // pool() directly with arbitrary scores: C = u within the sum's rounding.
      const std::int64_t slots = s.coff() * s.ratio;
      Mat us = u.replicate(slots, 1);
      Mat zs = p.z_tilde.topRows(slots).leftCols(s.head_dim);
      const RowVec c = comp.pool(us, zs);
      const double tol = prec.official() ? 0x1.0p-20 : 0x1.0p-48;
      for (Eigen::Index j = 0; j < c.size(); ++j) EXPECT_NEAR(c(j), u(j), tol * std::fabs(u(j))) << kind_name(kind);
    }
  }
}

// Hand computation of one ratio-128 entry in exact mode: u, z̃, per-channel softmax, RMSNorm with γ,
// RoPE rotation at position 128 (entry 1) and at 0 (entry 0, the identity), FP8 of the nope dims
// (each output within half a quantum of the hand value, on the grid of its block's scale).
TEST(Compressor, Ratio128EntryByHand) {
  const Precision prec(Mode::kExact);
  const CompressorSpec s = main_spec(128);
  const CompressorWeights w = CompressorWeights::synthetic(s, 3);
  const Compressor comp(prec, s, w);
  const Mat x = tokens(256 + 7, 9);
  CompressorState st = comp.initial_state();
  const CompressedEntries e = comp.prefill(x, st);
  ASSERT_EQ(e.count(), 2);
  const std::vector<double> f = rope_frequencies(prec, s.rope);
  const std::int64_t dd = s.head_dim;
  const Mat wkv = w.wkv.values(), wgate = w.wgate.values();
  for (std::int64_t i = 0; i < 2; ++i) {
    std::vector<double> c(static_cast<std::size_t>(dd));
    for (std::int64_t ch = 0; ch < dd; ++ch) {
      double zmax = -std::numeric_limits<double>::infinity();
      std::vector<double> u(128), z(128);
      for (std::int64_t j = 0; j < 128; ++j) {
        const std::int64_t t = 128 * i + j;
        double uu = 0.0, zz = 0.0;
        for (std::int64_t k = 0; k < kDim; ++k) {
          uu += wkv(ch, k) * x(t, k);
          zz += wgate(ch, k) * x(t, k);
        }
        u[static_cast<std::size_t>(j)] = uu;
        z[static_cast<std::size_t>(j)] = zz + w.ape(j, ch);
        zmax = std::max(zmax, z[static_cast<std::size_t>(j)]);
      }
      double sum = 0.0, acc = 0.0;
      for (std::int64_t j = 0; j < 128; ++j) sum += std::exp(z[static_cast<std::size_t>(j)] - zmax);
      for (std::int64_t j = 0; j < 128; ++j) {
        acc += u[static_cast<std::size_t>(j)] * std::exp(z[static_cast<std::size_t>(j)] - zmax) / sum;
      }
      c[static_cast<std::size_t>(ch)] = acc;
    }
    double ms = 0.0;
    for (const double v : c) ms += v * v;
    const double r = 1.0 / std::sqrt(ms / static_cast<double>(dd) + s.norm_eps);
    std::vector<double> y(static_cast<std::size_t>(dd));
    for (std::int64_t ch = 0; ch < dd; ++ch)
      y[static_cast<std::size_t>(ch)] = w.norm(ch) * c[static_cast<std::size_t>(ch)] * r;
    const double pos = 128.0 * static_cast<double>(i);
    for (std::int64_t p = 0; p < kRd / 2; ++p) {
      const std::size_t a = static_cast<std::size_t>(dd - kRd + 2 * p);
      const double th = pos * f[static_cast<std::size_t>(p)];
      const double re = y[a], im = y[a + 1];
      y[a] = re * std::cos(th) - im * std::sin(th);
      y[a + 1] = re * std::sin(th) + im * std::cos(th);
    }
    for (std::int64_t ch = dd - kRd; ch < dd; ++ch) {
      EXPECT_NEAR(e.entries(i, ch), y[static_cast<std::size_t>(ch)], 1e-12) << "rope dim " << ch << " entry " << i;
    }
    double amax = 0.0;
    for (std::int64_t ch = 0; ch < dd - kRd; ++ch) amax = std::max(amax, std::fabs(y[static_cast<std::size_t>(ch)]));
    const double scale = std::exp2(std::ceil(std::log2(amax / 448.0)));
    for (std::int64_t ch = 0; ch < dd - kRd; ++ch) {
      const double v = y[static_cast<std::size_t>(ch)] / scale;
      const double got = e.entries(i, ch) / scale;
      const double q = std::exp2(std::max(std::floor(std::log2(std::fabs(v))), -6.0) - 3.0);  // e4m3 quantum at v
      EXPECT_LE(std::fabs(got - v), 0.5 * q * (1 + 1e-9)) << "nope dim " << ch << " entry " << i;
      EXPECT_EQ(e4m3_to_float(double_to_e4m3(got)), got) << "not on the FP8 grid";
    }
    EXPECT_GE(e.margins[static_cast<std::size_t>(i)].element, 0.0);
    EXPECT_LE(e.margins[static_cast<std::size_t>(i)].element, 0.5);
  }
}

// spec 02 §2.6.2: entry i depends on tokens 4(i−1)..4i+3 only (overlap), on block i only (128).
TEST_P(CompressorModes, DependenceWindow) {
  const Precision prec(GetParam());
  for (int kind = 0; kind < 3; ++kind) {
    const CompressorSpec s = spec_of(kind);
    const Compressor comp(prec, s, CompressorWeights::synthetic(s, 21));
    const std::int64_t n = s.ratio == 4 ? 26 : 3 * 128;
    const Mat x = tokens(n, 4);
    CompressorState st = comp.initial_state();
    const CompressedEntries base = comp.prefill(x, st);
    ASSERT_EQ(base.count(), n / s.ratio);
    const std::vector<std::int64_t> perturbed = s.ratio == 4
                                                    ? std::vector<std::int64_t>{0, 1, 3, 4, 7, 8, 13, 19, 23, 24, 25}
                                                    : std::vector<std::int64_t>{0, 127, 128, 200, 255, 256, 383};
    for (const std::int64_t t : perturbed) {
      Mat y = x;
      y.row(t) = tokens(1, 99, t).row(0);
      CompressorState st2 = comp.initial_state();
      const CompressedEntries e = comp.prefill(y, st2);
      for (std::int64_t i = 0; i < base.count(); ++i) {
        const bool inside = s.overlap() ? (t >= 4 * (i - 1) && t <= 4 * i + 3) : (t / s.ratio == i);
        const bool same = e.entries.row(i) == base.entries.row(i);
        EXPECT_EQ(same, !inside) << kind_name(kind) << " token " << t << " entry " << i;
      }
    }
  }
}

// spec 02 §2.6.4 step 4: ⌊n/m⌋ entries 0..⌊n/m⌋−1; the state holds the tail.
TEST_P(CompressorModes, CompressedLength) {
  const Precision prec(GetParam());
  for (int kind = 0; kind < 3; ++kind) {
    const CompressorSpec s = spec_of(kind);
    const Compressor comp(prec, s, CompressorWeights::synthetic(s, 2));
    for (const std::int64_t n : {1, 3, 4, 5, 8, 127, 128, 129, 255, 256, 300}) {
      CompressorState st = comp.initial_state();
      const CompressedEntries e = comp.prefill(tokens(n, 1), st);
      EXPECT_EQ(e.count(), n / s.ratio) << kind_name(kind) << " n " << n;
      EXPECT_EQ(e.first, 0);
      EXPECT_EQ(e.entries.cols(), s.head_dim);
      EXPECT_EQ(static_cast<std::int64_t>(e.margins.size()), e.count());
      EXPECT_EQ(st.next_pos, n);
    }
  }
}

// spec 02 §2.6.5 "Prefill/decode equivalence": prefill n then decode to N gives entries
// bit-identical to a prefill of N, in both modes (exact: the same double operations on the same
// (u, z̃) values; official: C1 makes every reduction order-independent). Alignments cross the
// ratio-4 and ratio-128 boundaries; decoding runs across 255 → 256.
TEST_P(CompressorModes, DecodeEqualsPrefill) {
  const Precision prec(GetParam());
  const std::int64_t total = 262;
  const Mat x = tokens(total, 17, 0, !prec.official());
  for (int kind = 0; kind < 3; ++kind) {
    const CompressorSpec s = spec_of(kind);
    const Compressor comp(prec, s, CompressorWeights::synthetic(s, 5));
    CompressorState ref_state = comp.initial_state();
    const CompressedEntries ref = comp.prefill(x, ref_state);
    ASSERT_EQ(ref.count(), total / s.ratio);
    for (const std::int64_t n : {1, 2, 3, 4, 5, 127, 128, 130, 254}) {
      CompressorState st = comp.initial_state();
      const CompressedEntries pre = comp.prefill(x.topRows(n), st);
      for (std::int64_t i = 0; i < pre.count(); ++i) {
        expect_same(row_of(pre, i), row_of(ref, i), std::string(kind_name(kind)) + " prefill " + std::to_string(n));
      }
      std::int64_t next = pre.count();
      for (std::int64_t p = n; p < total; ++p) {
        const CompressedEntries d = comp.decode(x.middleRows(p, 1), p, st);
        if ((p + 1) % s.ratio == 0) {
          ASSERT_EQ(d.count(), 1) << p;
          ASSERT_EQ(d.first, next);
          expect_same(d, row_of(ref, next),
                      std::string(kind_name(kind)) + " n " + std::to_string(n) + " decode at " + std::to_string(p));
          ++next;
        } else {
          ASSERT_EQ(d.count(), 0) << p;
        }
      }
      EXPECT_EQ(next, ref.count());
      // The final states agree on the rows that are live (rows past the tail are stale in decode, as in
      // the official code, and never read before being rewritten).
      const std::int64_t live = (s.overlap() ? s.ratio : 0) + total % s.ratio;
      EXPECT_TRUE(st.kv.topRows(live) == ref_state.kv.topRows(live)) << kind_name(kind) << " n " << n;
      EXPECT_TRUE(st.score.topRows(live) == ref_state.score.topRows(live)) << kind_name(kind) << " n " << n;
    }
  }
}

// Exact mode with a projection large enough to be split over threads (d = 512, 256 tokens): the
// threaded prefill and the one-row decode steps still give bit-identical entries.
TEST(Compressor, ExactThreadedProjectionEqualsDecode) {
  const Precision prec(Mode::kExact);
  CompressorSpec s = main_spec(4);
  s.dim = 512;
  const Compressor comp(prec, s, CompressorWeights::synthetic(s, 61));
  const CounterRng rng(3, stream_id("compressor_test.wide"));
  Mat x(256, s.dim);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = rng.normal(static_cast<std::uint64_t>(i));
  CompressorState a = comp.initial_state();
  const CompressedEntries ref = comp.prefill(x, a);
  CompressorState b = comp.initial_state();
  (void)comp.prefill(x.topRows(3), b);
  for (std::int64_t p = 3; p < 256; ++p) {
    const CompressedEntries d = comp.decode(x.middleRows(p, 1), p, b);
    if (d.count() == 1) expect_same(d, row_of(ref, d.first), "decode at " + std::to_string(p));
  }
}

// spec 02 §2.6.5 reset requirement: a sequence's entries do not depend on what the state held
// before (here a long sequence, then a prompt shorter than m whose first block completes in decode).
TEST_P(CompressorModes, StateResetBetweenSequences) {
  const Precision prec(GetParam());
  for (int kind = 0; kind < 3; ++kind) {
    const CompressorSpec s = spec_of(kind);
    const Compressor comp(prec, s, CompressorWeights::synthetic(s, 8));
    const Mat a = tokens(140, 31);
    const Mat b = tokens(140, 32);
    auto run = [&](CompressorState& st, const Mat& x, std::int64_t n, std::int64_t total) {
      std::vector<CompressedEntries> out{comp.prefill(x.topRows(n), st)};
      for (std::int64_t p = n; p < total; ++p) out.push_back(comp.decode(x.middleRows(p, 1), p, st));
      return out;
    };
    CompressorState fresh = comp.initial_state();
    const auto expect = run(fresh, b, 2, 140);
    CompressorState used = comp.initial_state();
    (void)run(used, a, 133, 140);
    const auto got = run(used, b, 2, 140);
    ASSERT_EQ(got.size(), expect.size());
    for (std::size_t k = 0; k < got.size(); ++k) expect_same(got[k], expect[k], kind_name(kind));
    // reset() alone also restores K = 0, Z = −∞.
    comp.reset(used);
    EXPECT_TRUE(used.kv == fresh.kv.setZero());
    EXPECT_TRUE((used.score.array() == -std::numeric_limits<double>::infinity()).all());
    EXPECT_EQ(used.next_pos, 0);
  }
}

// Batch ≥ 1: sequence A's entries are identical alone and next to different companions.
TEST_P(CompressorModes, BatchIndependence) {
  const Precision prec(GetParam());
  for (int kind = 0; kind < 3; ++kind) {
    const CompressorSpec s = spec_of(kind);
    const Compressor comp(prec, s, CompressorWeights::synthetic(s, 13));
    const std::int64_t n = 6, total = 140;
    const Mat a = tokens(total, 41), b = tokens(total, 42), c = tokens(total, 43);
    auto run = [&](const std::vector<const Mat*>& seqs) {
      std::vector<CompressorState> st(seqs.size(), comp.initial_state());
      std::vector<Mat> x;
      for (const Mat* m : seqs) x.push_back(m->topRows(n));
      std::vector<std::vector<CompressedEntries>> out(seqs.size());
      auto r = comp.forward(x, 0, st);
      for (std::size_t k = 0; k < r.size(); ++k) out[k].push_back(r[k]);
      for (std::int64_t p = n; p < total; ++p) {
        x.clear();
        for (const Mat* m : seqs) x.push_back(m->middleRows(p, 1));
        r = comp.forward(x, p, st);
        for (std::size_t k = 0; k < r.size(); ++k) out[k].push_back(r[k]);
      }
      return out;
    };
    const auto alone = run({&a});
    const auto with_b = run({&a, &b});
    const auto with_c = run({&c, &a});
    for (std::size_t k = 0; k < alone[0].size(); ++k) {
      expect_same(with_b[0][k], alone[0][k], std::string(kind_name(kind)) + " with b");
      expect_same(with_c[1][k], alone[0][k], std::string(kind_name(kind)) + " with c");
    }
    // and the companions really differ
    bool differ = false;
    for (std::size_t k = 0; k < alone[0].size(); ++k) {
      if (with_b[1][k].count() == 1 && !(with_b[1][k].entries == alone[0][k].entries)) differ = true;
    }
    EXPECT_TRUE(differ);
  }
}

// Official mode: every entry value is a bf16 number; the nope dims (main) / all dims (indexer)
// lie on their block's FP8 / FP4 grid.
TEST(Compressor, OfficialEntriesAreBf16) {
  const Precision prec(Mode::kOfficial);
  for (int kind = 0; kind < 3; ++kind) {
    const CompressorSpec s = spec_of(kind);
    const Compressor comp(prec, s, CompressorWeights::synthetic(s, 77));
    CompressorState st = comp.initial_state();
    const CompressedEntries e = comp.prefill(tokens(256, 3), st);
    for (Eigen::Index i = 0; i < e.entries.size(); ++i) {
      ASSERT_EQ(static_cast<double>(round_bf16(e.entries.data()[i])), e.entries.data()[i]) << kind_name(kind);
    }
  }
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument)";
}

TEST(Compressor, BadInputNamesTheField) {
  const Precision prec(Mode::kOfficial);
  const CompressorSpec s = main_spec(4);
  const Compressor comp(prec, s, CompressorWeights::synthetic(s, 1));
  CompressorState st = comp.initial_state();
  EXPECT_NE(message_of([&] { comp.prefill(Mat::Zero(4, kDim + 1), st); }).find("x:"), std::string::npos);
  EXPECT_NE(message_of([&] { comp.prefill(Mat::Zero(kMaxSeq + 1, kDim), st); }).find("max_seq_len"), std::string::npos);
  (void)comp.prefill(tokens(3, 1), st);
  EXPECT_NE(message_of([&] { comp.decode(Mat::Zero(1, kDim - 1), 3, st); }).find("x:"), std::string::npos);
  EXPECT_NE(message_of([&] { comp.decode(Mat::Zero(1, kDim), kMaxSeq, st); }).find("start_pos"), std::string::npos);
  EXPECT_NE(message_of([&] { comp.decode(Mat::Zero(1, kDim), 5, st); }).find("start_pos"), std::string::npos);
  std::vector<CompressorState> states(1, comp.initial_state());
  EXPECT_NE(message_of([&] { comp.forward({Mat::Zero(1, kDim)}, kMaxSeq + 3, states); }).find("start_pos"),
            std::string::npos);
  EXPECT_EQ(st.next_pos, 3);  // a rejected call leaves the state alone

  CompressorSpec bad = s;
  bad.ratio = 5;
  EXPECT_NE(message_of([&] { bad.validate(); }).find("ratio"), std::string::npos);
  bad = s;
  bad.head_dim = 100;  // 100 − 8 not a multiple of the FP8 block 64
  EXPECT_NE(message_of([&] { bad.validate(); }).find("head_dim"), std::string::npos);
  bad = indexer_spec();
  bad.head_dim = 48;  // not a power of two (Hadamard)
  EXPECT_NE(message_of([&] { bad.validate(); }).find("head_dim"), std::string::npos);
  CompressorWeights w = CompressorWeights::synthetic(s, 1);
  w.ape = Mat::Zero(3, s.proj_dim());
  EXPECT_NE(message_of([&] { Compressor(prec, s, w); }).find("ape"), std::string::npos);
  w = CompressorWeights::synthetic(main_spec(128), 1);
  EXPECT_NE(message_of([&] { Compressor(prec, s, w); }).find("wkv"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Modes, CompressorModes, ::testing::Values(Mode::kExact, Mode::kOfficial),
                         [](const ::testing::TestParamInfo<Mode>& i) { return mode_name(i.param); });

}  // namespace
}  // namespace dsv4
