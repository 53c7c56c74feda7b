// Official mode at the positions of spec 02 §2.11.4: a query at t < n_win − 1 after a prefill of
// s < n_win tokens sees a window part of width s, where decode (and a prefill of ≥ n_win tokens)
// sees width n_win; its compressed entries then fall into other 64-chunks of the sparse-attention
// kernel and may round differently. Everything downstream of sparse attention — o (inverse RoPE),
// o_a (grouped wo_a), out (wo_b with its FP8 activation quantisation) — is compared against a
// bound propagated through those stages (derivation above propagate_bounds), once from the derived
// sparse-attention bound B₁ + B₂ and once from the measured sparse-attention difference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/attention.hpp"
#include "dsv4/model/sparse_attention.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/quant.hpp"
#include "support/mat_bits.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

using test::bit_equal;

// ---- A bound on |X¹ − X²| for two official evaluations of o, o_a and out ----
// Path 1 (the reference: decode, or a prefill of ≥ n_win tokens) supplies every magnitude; path 2 is
// only known to have sparse-attention outputs within d of path 1's. u = 2^-24 (fp32), u_b = 2^-8
// (bf16), γ_k = ku/(1 − ku).
// (R) RNE to a format of unit roundoff v gives fl(y) = y/(1 + δ), |δ| ≤ v, so |fl(y) − y| ≤ v|fl(y)|.
//     Two roundings of y¹, y² thus differ by ≤ |y¹ − y²| + v(|fl(y¹)| + |fl(y²)|) — at most one ulp
//     of flip in total — and with |fl(y²)| ≤ |fl(y¹)| + D for the D sought:
//       D ≤ (E + 2v|fl(y¹)|)/(1 − v),   E a bound of |y¹ − y²|.                             (*)
//     (R) is for results in the normal range; below it fp32 and bf16 round with an absolute error
//     ≤ 2^-134, covered by an absolute 2^-130 added to every D.
// (Z) Every stage is a deterministic function of its inputs: an output none of whose inputs can
//     differ (d = 0) is the same in both paths, D = 0.
// 1. o = inverse RoPE (spec 02 §2.10; rope.cpp): dims [0, c − r_d) are copied, D = d. A pair (a, b)
//    at the query position (the same in both paths) with the table's c, s becomes
//    bf16(fl32(fl32(a c) + fl32(b s))) and bf16(fl32(fl32(b c) − fl32(a s))): the exact rotations
//    differ by |c|d_a + |s|d_b, each fp32 evaluation errs by ≤ γ_2(|a c| + |b s|) with
//    |a²| ≤ |a¹| + d_a, |b²| ≤ |b¹| + d_b, and (*) with v = u_b:
//      D = (|c|d_a + |s|d_b + γ_2(|c|(2|a¹| + d_a) + |s|(2|b¹| + d_b)) + 2u_b|o¹|)/(1 − u_b)
//    (the second component with |c| and |s| swapped).
// 2. o_a = wo_a per group (bf16 weights; official bf16(fl32(S)), S = Σ_j o_j w_j summed exactly, C1):
//    |S¹ − S²| ≤ Σ|w|d, the fp32 rounding errs by ≤ u|S^k| ≤ u Σ|w||o^k|, and (*) for the bf16 cast:
//      D = (Σ|w|d + u(2Σ|w||o¹| + Σ|w|d) + 2u_b|o_a¹|)/(1 − u_b).
// 3. out = wo_b (FP8 weights, spec 01 §1.4 and §1.7, scale_fmt ue8m0). X = o_a is act_quant'ed in
//    1×128 blocks: σ = pow2(log2ceil(fl32(max(amax, fl32(1e-4)) × fl32(1/448)))), a power of two
//    non-decreasing in amax; Q = σ·E(X/σ), E = e4m3 RNE with the ±448 clamp (X/σ is exact for a
//    bf16 X), non-decreasing. Path 2's block amax lies in [max_j(|X¹_j| − d_j)⁺, max_j(|X¹_j| + d_j)],
//    so its scale σ² is one of the powers of two in [σ_lo, σ_hi], and for each such σ
//      Q²_j ∈ [σ E((X¹_j − d_j)/σ), σ E((X¹_j + d_j)/σ)]   (E monotone),
//    so d_Q,j = max over those σ and both ends of |σ E(·) − Q¹_j|: 0 when the interval rounds to
//    Q¹'s grid value at the one possible scale (the decision is certain), one quantum of the grid at
//    the element's scale when a rounding can flip, more when the scale can step.
//    The fp8_gemm per output: p_κ = fl32(P_κ) (C1 block sum), t_κ = fl32(p_κ σ_κ),
//    acc ← fl32(acc + t_κ) over n_b = K/128 blocks, so |acc − Σ_j Q_j W_j| ≤ γ_{n_b+2} Σ_j|Q_j||W_j|
//    (two roundings per term, n_b − 1 additions), with |Q²_j| ≤ |Q¹_j| + d_Q,j; then (*) for the
//    bf16 cast:
//      D = (Σ|W|d_Q + γ_{n_b+2}(2Σ|W||Q¹| + Σ|W|d_Q) + 2u_b|out¹|)/(1 − u_b).
// The bound is evaluated in double: sums of at most a few thousand non-negative terms, relative
// error < 2^-40, covered by the factor (1 + 2^-30) on every stage.
constexpr double kUb = 0x1.0p-8;
constexpr double kU32 = 0x1.0p-24;
constexpr double kEvalSlack = 1.0 + 0x1.0p-30;
constexpr double kUnderflow = 0x1.0p-130;
constexpr std::int64_t kActBlock = 128;

double gamma32(std::int64_t k) { return static_cast<double>(k) * kU32 / (1.0 - static_cast<double>(k) * kU32); }

// The official act_quant scale of a block whose amax is `amax` (a double; rounded to fp32 upward
// or downward so that the true scale is bracketed).
double act_scale(double amax, bool round_up) {
  auto f = static_cast<float>(amax);
  if (round_up && static_cast<double>(f) < amax) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  if (!round_up && static_cast<double>(f) > amax) f = std::nextafter(f, 0.0f);
  return round_scale(std::max(f, kActQuantAmaxFloor), kInvFp8Max);
}

double e4m3_round(double v) { return decode_minifloat(kFormatE4M3, double_to_e4m3(v)); }

// Stage 1: d [rows, H·c] on the sparse-attention output, a1 and o1 path 1's attn and o; row r is
// at position r.
Mat inverse_rope_bound(const Mat& d, const Mat& a1, const Mat& o1, const RopeTable& table, std::int64_t c) {
  const std::int64_t rd = table.rope_head_dim(), heads = d.cols() / c;
  const double g2 = gamma32(2);
  Mat D = d;
  for (std::int64_t r = 0; r < d.rows(); ++r) {
    for (std::int64_t h = 0; h < heads; ++h) {
      for (std::int64_t i = 0; i < table.n_pairs(); ++i) {
        const std::int64_t ja = h * c + c - rd + 2 * i, jb = ja + 1;
        const double da = d(r, ja), db = d(r, jb);
        if (da == 0.0 && db == 0.0) continue;  // (Z)
        const double cs = std::fabs(table.cos(r, i)), sn = std::fabs(table.sin(r, i));
        const double a = std::fabs(a1(r, ja)), b = std::fabs(a1(r, jb));
        D(r, ja) = (cs * da + sn * db + g2 * (cs * (2 * a + da) + sn * (2 * b + db)) + 2 * kUb * std::fabs(o1(r, ja))) /
                       (1 - kUb) * kEvalSlack +
                   kUnderflow;
        D(r, jb) = (sn * da + cs * db + g2 * (sn * (2 * a + da) + cs * (2 * b + db)) + 2 * kUb * std::fabs(o1(r, jb))) /
                       (1 - kUb) * kEvalSlack +
                   kUnderflow;
      }
    }
  }
  return D;
}

// Stage 2: d on o [rows, G·per_group], o1 and oa1 path 1's o and o_a, wo_a [G·d_g, per_group].
Mat wo_a_bound(const Mat& d, const Mat& o1, const Mat& oa1, const Mat& wo_a, std::int64_t groups) {
  const std::int64_t pg = d.cols() / groups, dg = wo_a.rows() / groups;
  Mat D = Mat::Zero(d.rows(), wo_a.rows());
  for (std::int64_t r = 0; r < d.rows(); ++r) {
    for (std::int64_t g = 0; g < groups; ++g) {
      const auto dr = d.row(r).segment(g * pg, pg);
      if ((dr.array() == 0.0).all()) continue;  // (Z)
      const auto orow = o1.row(r).segment(g * pg, pg);
      for (std::int64_t k = 0; k < dg; ++k) {
        const auto w = wo_a.row(g * dg + k);
        const double lin = w.cwiseAbs().dot(dr), mag = w.cwiseAbs().dot(orow.cwiseAbs());
        D(r, g * dg + k) =
            (lin + kU32 * (2 * mag + lin) + 2 * kUb * std::fabs(oa1(r, g * dg + k))) / (1 - kUb) * kEvalSlack +
            kUnderflow;
      }
    }
  }
  return D;
}

// Stage 3: d on o_a [rows, K], x1 and out1 path 1's o_a and out, W [d, K] the exact wo_b values.
// `uncertain` counts the activation elements whose FP8 decision the bound leaves open.
Mat wo_b_bound(const Mat& d, const Mat& x1, const Mat& out1, const Mat& W, std::int64_t& uncertain) {
  const std::int64_t K = d.cols(), nb = K / kActBlock;
  const double g = gamma32(nb + 2);
  Mat D = Mat::Zero(d.rows(), W.rows());
  RowVec dq(K), q1(K);
  for (std::int64_t r = 0; r < d.rows(); ++r) {
    bool scales_certain = true;
    for (std::int64_t b = 0; b < nb; ++b) {
      double amax = 0.0, lo = 0.0, hi = 0.0;
      for (std::int64_t j = b * kActBlock; j < (b + 1) * kActBlock; ++j) {
        const double v = std::fabs(x1(r, j));
        amax = std::max(amax, v);
        lo = std::max(lo, v - d(r, j));
        hi = std::max(hi, v + d(r, j));
      }
      const double s1 = act_scale(amax, true), s_lo = act_scale(lo, false), s_hi = act_scale(hi, true);
      scales_certain = scales_certain && s_lo == s_hi;
      for (std::int64_t j = b * kActBlock; j < (b + 1) * kActBlock; ++j) {
        const double x = x1(r, j);
        q1(j) = s1 * e4m3_round(x / s1);
        dq(j) = 0.0;
        for (double sigma = s_lo; sigma <= s_hi; sigma *= 2) {
          dq(j) = std::max({dq(j), std::fabs(sigma * e4m3_round((x - d(r, j)) / sigma) - q1(j)),
                            std::fabs(sigma * e4m3_round((x + d(r, j)) / sigma) - q1(j))});
        }
        uncertain += dq(j) > 0.0 ? 1 : 0;
      }
    }
    if (scales_certain && (dq.array() == 0.0).all()) continue;  // (Z): same codes and scales in both paths
    for (std::int64_t n = 0; n < W.rows(); ++n) {
      const double lin = W.row(n).cwiseAbs().dot(dq), m = W.row(n).cwiseAbs().dot(q1.cwiseAbs());
      D(r, n) = (lin + g * (2 * m + lin) + 2 * kUb * std::fabs(out1(r, n))) / (1 - kUb) * kEvalSlack + kUnderflow;
    }
  }
  return D;
}

struct StageBounds {
  Mat o, o_a, out;
  std::int64_t fp8_uncertain = 0;
};

StageBounds propagate_bounds(const Mat& d_attn, const AttentionOutput& ref, std::int64_t rows,
                             const AttentionWeights& w, const ModelConfig& cfg, const RopeTable& table) {
  StageBounds b;
  b.o = inverse_rope_bound(d_attn, ref.attn.topRows(rows), ref.o.topRows(rows), table, cfg.head_dim);
  b.o_a = wo_a_bound(b.o, ref.o.topRows(rows), ref.o_a.topRows(rows), w.wo_a.values(), cfg.o_groups);
  b.out = wo_b_bound(b.o_a, ref.o_a.topRows(rows), ref.out.topRows(rows), w.wo_b.values(), b.fp8_uncertain);
  return b;
}

// Elements of |x1 − x2| above the bound, and how many differ at all.
struct Check {
  std::int64_t over = 0, differ = 0;
  double max_ratio = 0.0;  // max |x1 − x2| / bound over the differing elements
};
Check check(const Mat& x1, const Mat& x2, const Mat& bound) {
  Check c;
  for (std::int64_t i = 0; i < bound.size(); ++i) {
    const double diff = std::fabs(x1.data()[i] - x2.data()[i]);
    if (diff == 0.0) continue;
    ++c.differ;
    c.over += diff > bound.data()[i] ? 1 : 0;
    c.max_ratio = std::max(c.max_ratio, diff / bound.data()[i]);
  }
  return c;
}

double rms(const Mat& m) { return std::sqrt(m.squaredNorm() / static_cast<double>(m.size())); }

// window 64, CSA (layer 2) with top-k 8: a prefill of n = 40 tokens puts the compressed part of
// its lists at list position 40 (chunk 0), a prefill of 80 — and decode — at 64 (chunk 1). Rows
// t < 40 therefore round differently in official mode. Path 1 = prefill of 80 (its rows 20..39
// are checked bit-equal to decode steps after a prefill of 20), path 2 = prefill of 40.
TEST(AttentionOfficialLayoutChange, DownstreamWithinPropagatedBound) {
  ModelConfig cfg = builtin_config("tiny");
  cfg.n_heads = 4;
  cfg.o_groups = 2;
  cfg.window_size = 64;
  cfg.max_seq_len = 96;
  ASSERT_EQ(cfg.scale_fmt, "ue8m0");  // stage 3 assumes power-of-two activation scales
  const Precision prec(Mode::kOfficial);
  const AttentionWeights w = AttentionWeights::synthetic(cfg, 2, 42);
  const Attention attn(prec, cfg, 2, w);
  const std::int64_t n = 40, n_dec = 20, total = 80, H = cfg.n_heads, c = cfg.head_dim;
  const Mat x = test::random_bf16_matrix(total, cfg.dim, 5, 300, 1.0);
  AttentionState fs = attn.initial_state(), st = attn.initial_state(), sd = attn.initial_state();
  const AttentionOutput full = attn.prefill(x, fs);
  const AttentionOutput pre = attn.prefill(x.topRows(n), st);

  // decode after a shorter prefill has the long prefill's layout: bit-identical at every stage
  (void)attn.prefill(x.topRows(n_dec), sd);
  for (std::int64_t p = n_dec; p < n; ++p) {
    const AttentionOutput d = attn.decode(x.row(p), p, sd);
    EXPECT_TRUE(bit_equal(d.attn, full.attn.row(p)) && bit_equal(d.o, full.o.row(p)) &&
                bit_equal(d.o_a, full.o_a.row(p)) && bit_equal(d.out, full.out.row(p)))
        << "p = " << p;
  }
  // rows n..total−1: decode after the prefill of n has the long prefill's layout too
  for (std::int64_t p = n; p < total; ++p) {
    const AttentionOutput d = attn.decode(x.row(p), p, st);
    EXPECT_TRUE(bit_equal(d.attn, full.attn.row(p))) << "p = " << p;
    EXPECT_TRUE(bit_equal(d.out, full.out.row(p))) << "p = " << p;
  }

  // the sparse-attention bound of each layout, rows t < n (same q, same KV entries in both paths)
  Mat kv_full(total + full.compressed.count(), c), kv_pre(n + pre.compressed.count(), c);
  kv_full << full.kv, full.compressed.entries;
  kv_pre << pre.kv, pre.compressed.entries;
  ASSERT_TRUE(bit_equal(pre.q, full.q.topRows(n)));
  ASSERT_TRUE(bit_equal(kv_pre.topRows(n), kv_full.topRows(n)));
  ASSERT_TRUE(bit_equal(pre.compressed.entries, full.compressed.entries.topRows(pre.compressed.count())));
  const double scale = 1.0 / std::sqrt(static_cast<double>(c));
  Mat d_bound(n, H * c), d_measured(n, H * c);
  for (std::int64_t t = 0; t < n; ++t) {
    IndexLists lf(1, full.lists.width), lp(1, pre.lists.width);
    for (std::int64_t j = 0; j < lf.width; ++j) lf.at(0, j) = full.lists.at(t, j);
    for (std::int64_t j = 0; j < lp.width; ++j) lp.at(0, j) = pre.lists.at(t, j);
    const Mat qt = Eigen::Map<const Mat>(full.q.row(t).data(), H, c);
    const Mat b = sparse_attention_official_bound(qt, H, kv_full, w.attn_sink, lf, scale) +
                  sparse_attention_official_bound(qt, H, kv_pre, w.attn_sink, lp, scale);
    for (std::int64_t i = 0; i < H * c; ++i) {
      d_bound(t, i) = b(i / c, i % c);
      d_measured(t, i) = std::fabs(full.attn(t, i) - pre.attn(t, i)) * (1.0 + 0x1.0p-52);
    }
  }
  const Check ca = check(full.attn.topRows(n), pre.attn, d_bound);
  EXPECT_EQ(ca.over, 0);
  EXPECT_GT(ca.differ, 0) << "the layout change no longer changes any rounding: the test lost its subject";

  const double rms_out = rms(full.out.topRows(n));
  for (const bool from_measured : {false, true}) {
    const char* name = from_measured ? "measured attn difference" : "derived bound B1 + B2";
    SCOPED_TRACE(name);
    const StageBounds b = propagate_bounds(from_measured ? d_measured : d_bound, full, n, w, cfg, attn.rope_table());
    const Check co = check(full.o.topRows(n), pre.o, b.o);
    const Check coa = check(full.o_a.topRows(n), pre.o_a, b.o_a);
    const Check cout = check(full.out.topRows(n), pre.out, b.out);
    EXPECT_EQ(co.over, 0);
    EXPECT_EQ(coa.over, 0);
    EXPECT_EQ(cout.over, 0);
    std::printf("from %s: FP8 decisions of o_a left open %lld of %lld\n", name, static_cast<long long>(b.fp8_uncertain),
                static_cast<long long>(b.o_a.size()));
    const char* names[] = {"o", "o_a", "out"};
    const Mat* bounds[] = {&b.o, &b.o_a, &b.out};
    const Mat refs[] = {full.o.topRows(n), full.o_a.topRows(n), full.out.topRows(n)};
    const Check checks[] = {co, coa, cout};
    for (int i = 0; i < 3; ++i) {
      std::printf(
          "  %-3s: %5lld of %lld differ, max |diff|/bound %.3g; rms(bound)/rms = %.3g, max bound/max|x| = %.3g\n",
          names[i], static_cast<long long>(checks[i].differ), static_cast<long long>(refs[i].size()),
          checks[i].max_ratio, rms(*bounds[i]) / rms(refs[i]), bounds[i]->maxCoeff() / refs[i].cwiseAbs().maxCoeff());
    }
    // From B₁ + B₂ the bound holds but is not informative at out (≈ 7 rms(out) here): it allows
    // every attention element its worst case, and two sums over 256 terms align all their signs.
    if (!from_measured) continue;
    // Not vacuous: propagated from the measured attention difference the bound stays well below
    // |out| (0.30 rms(out) here; a vacuous bound would be ≥ rms(out)).
    EXPECT_LT(rms(b.out), 0.5 * rms_out);
    // Able to fail: a path with a wrong output weight has the same sparse-attention output as
    // path 2, so the same propagated bound, and must violate it — wo_a with its first row negated
    // (o_a column 0), wo_b with its first 128×128 tile scale doubled (out).
    AttentionWeights wa = w, wb = w;
    Mat wo_a_bad = w.wo_a.values();
    wo_a_bad.row(0) *= -1.0;
    wa.wo_a = LinearWeight::bf16_from(wo_a_bad);
    Tensor bad_scale = w.wo_b.scale;
    bad_scale.values<std::uint8_t>()[0] += 1;
    wb.wo_b = LinearWeight::fp8(w.wo_b.weight, bad_scale);
    for (const AttentionWeights* wbug : {&wa, &wb}) {
      const bool wrong_wo_a = wbug == &wa;
      const Attention attn_bug(prec, cfg, 2, *wbug);
      AttentionState sb = attn_bug.initial_state();
      const AttentionOutput bug = attn_bug.prefill(x.topRows(n), sb);
      ASSERT_TRUE(bit_equal(bug.o, pre.o));
      const Check cbug =
          wrong_wo_a ? check(full.o_a.topRows(n), bug.o_a, b.o_a) : check(full.out.topRows(n), bug.out, b.out);
      EXPECT_GE(cbug.over, wrong_wo_a ? n / 2 : cbug.differ / 4) << "a wrong output weight must be detected";
      std::printf("wrong %s: %lld elements of %s beyond the bound\n", wrong_wo_a ? "wo_a row" : "wo_b tile scale",
                  static_cast<long long>(cbug.over), wrong_wo_a ? "o_a" : "out");
    }
  }
}

}  // namespace
}  // namespace dsv4
