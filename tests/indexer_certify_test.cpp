// Certification of the exact-mode FP4 decisions of the Lightning Indexer (spec 02 §2.7 step 1 and
// its compressor, §2.6.3; indexer.hpp, compressor.hpp, kv_certify.hpp): (a) random inputs certify
// almost everything, (b) the query bound holds against Mp50 and is not vacuous, (c) the FP4
// certifier and Mp50 quantiser on a constructed block, (d) a query element and (e) a compressor key
// element constructed 1e-20 relative from an FP4 rounding boundary, forced through Indexer::prefill
// and decode: re-decided in Mp50, the correct side on both sides of the boundary.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/model/hadamard.hpp"
#include "dsv4/model/indexer.hpp"
#include "dsv4/model/kv_certify.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/quant_margin.hpp"
#include "support/certify_fixtures.hpp"
#include "support/mat_bits.hpp"
#include "support/random_matrix.hpp"

namespace dsv4 {
namespace {

const Precision kExactP(Mode::kExact);
constexpr std::uint64_t kInputSeed = 41;

struct Fixture {
  ModelConfig c;
  std::shared_ptr<const RopeTable> table;
  IndexerWeights w;
};

Fixture make_setup() {
  Fixture st;
  st.c = builtin_config("tiny");
  st.c.max_seq_len = 64;
  st.table = std::make_shared<const RopeTable>(rope_table_for_layer(kExactP, st.c, 0));
  st.w = IndexerWeights::synthetic(st.c, 5);
  return st;
}

// The exact-mode double pipeline of the indexer query before the FP4 quantiser (spec 02 §2.7
// step 1): q_lin = qr·wq_bᵀ, RoPE at positions start..start+s−1, Hadamard per head.
struct DoubleQuery {
  Mat q_lin, q_rope, q_pre;  // q_pre [s·n_I, c_I]
};
DoubleQuery double_query(const Fixture& su, const Mat& qr, std::int64_t start) {
  const std::int64_t cI = su.c.index_head_dim;
  DoubleQuery d;
  d.q_lin = kExactP.matmul_nt(qr, su.w.wq_b.values());
  d.q_rope = d.q_lin;
  apply_rope_inplace(kExactP, *su.table, d.q_rope, start, cI);
  d.q_pre = Eigen::Map<const Mat>(d.q_rope.data(), qr.rows() * su.c.index_n_heads, cI);
  hadamard_inplace(kExactP, d.q_pre, cI);
  return d;
}

// (a) through Indexer::prefill: every element is counted, almost all are certified.
TEST(IndexerCertify, RandomInputsCertify) {
  const Fixture su = make_setup();
  const Indexer idx(kExactP, su.c, su.w, su.table);
  IndexerState st = idx.initial_state();
  const std::int64_t s = 48;
  const Mat x = test::random_normal_matrix(s, su.c.dim, kInputSeed, 1, 1.0);
  const Mat qr = test::random_normal_matrix(s, su.c.q_lora_rank, kInputSeed, 2, 1.0);
  const IndexerOutput out = idx.prefill(x, qr, st, s);
  test::expect_mostly_certified("indexer q", s * su.c.index_n_heads * su.c.index_head_dim, out.q_decisions.certified,
                                out.q_decisions.redecided, out.q_decisions.recomputed, out.q_decisions.flipped);
  // the Mp50 decisions agree with the output everywhere (certified or re-decided)
  const std::int64_t cI = su.c.index_head_dim;
  for (std::int64_t t = 0; t < s; t += 7) {
    for (std::int64_t h = 0; h < su.c.index_n_heads; ++h) {
      const std::vector<Mp50> mp = indexer_q_head_mp50(qr, t, su.w.wq_b.values(), *su.table, t, h, cI);
      for (std::int64_t b0 = 0; b0 < cI; b0 += 32) {
        const std::vector<double> qb = block_quant_mp50(std::span<const Mp50>(mp.data() + b0, 32), BlockQuant::kFp4);
        for (std::int64_t j = 0; j < 32; ++j)
          EXPECT_EQ(out.q(t * su.c.index_n_heads + h, b0 + j), qb[static_cast<std::size_t>(j)]);
      }
    }
  }
  // decode ≡ prefill on the last token, counters included for that row
  IndexerState st2 = idx.initial_state();
  (void)idx.prefill(x.topRows(s - 1), qr.topRows(s - 1), st2, s - 1);
  const IndexerOutput dec = idx.decode(x.bottomRows(1), qr.bottomRows(1), s - 1, st2, 0);
  const std::int64_t nI = su.c.index_n_heads;
  for (std::int64_t h = 0; h < nI; ++h) {
    for (std::int64_t j = 0; j < su.c.index_head_dim; ++j) EXPECT_EQ(dec.q(h, j), out.q((s - 1) * nI + h, j));
  }
}

// (b) the bound holds against Mp50 and is usable: mean bound ≤ 1e6 × mean actual error.
TEST(IndexerCertify, BoundHoldsAndIsNotVacuous) {
  const Fixture su = make_setup();
  const std::int64_t s = 24, cI = su.c.index_head_dim, nI = su.c.index_n_heads, start = 17;
  const Mat qr = test::random_normal_matrix(s, su.c.q_lora_rank, kInputSeed, 3, 1.0);
  const Mat& wv = su.w.wq_b.values();
  const DoubleQuery dq = double_query(su, qr, start);
  const Mat& qh = dq.q_pre;
  const Vec b = indexer_q_error_bound(qr, wv, dq.q_lin, dq.q_rope, *su.table, start, cI);
  double sum_bound = 0.0, sum_err = 0.0, max_ratio = 0.0;
  for (std::int64_t t = 0; t < s; ++t) {
    for (std::int64_t h = 0; h < nI; ++h) {
      const std::vector<Mp50> mp = indexer_q_head_mp50(qr, t, wv, *su.table, start + t, h, cI);
      for (std::int64_t j = 0; j < cI; ++j) {
        const double err = static_cast<double>(abs(Mp50(qh(t * nI + h, j)) - mp[static_cast<std::size_t>(j)]));
        EXPECT_LE(err, b(t * nI + h)) << t << "," << h << "," << j;
        sum_bound += b(t * nI + h);
        sum_err += err;
        max_ratio = std::max(max_ratio, err / b(t * nI + h));
      }
    }
  }
  std::printf("indexer q: mean bound / mean error = %.3g (largest error/bound %.3g)\n", sum_bound / sum_err, max_ratio);
  EXPECT_GT(sum_err, 0.0);
  EXPECT_LE(sum_bound, 1e6 * sum_err);
}

// (c) FP4 certification of a constructed row: one element within 1e-15 relative of an e2m1
// midpoint is uncertified under a bound of 1e-14 relative, the others are certified; the Mp50
// quantiser decides the tie's two sides apart.
TEST(IndexerCertify, Fp4NearTie) {
  std::vector<double> v(32, 0.0), bnd(32, 1e-14);
  for (int j = 0; j < 32; ++j) v[static_cast<std::size_t>(j)] = 0.1 * (j % 7) - 0.25;
  v[0] = 5.5;                 // amax: scale 2^0 (5.5 ≤ 6)
  v[3] = 1.25 * (1 + 1e-15);  // midpoint of 1 and 1.5
  std::vector<char> ok = block_decisions_certified(v, bnd, 32, BlockQuant::kFp4);
  const auto undecided = std::count(ok.begin(), ok.end(), char{0});
  EXPECT_EQ(ok[3], 0);
  EXPECT_EQ(ok[0], 1);
  EXPECT_GE(undecided, 1);
  std::vector<Mp50> mp(32);
  for (int j = 0; j < 32; ++j) mp[static_cast<std::size_t>(j)] = Mp50(v[static_cast<std::size_t>(j)]);
  mp[3] = Mp50(1.25) * (1 + Mp50(1e-30));
  EXPECT_EQ(block_quant_mp50(mp, BlockQuant::kFp4)[3], 1.5);
  mp[3] = Mp50(1.25) * (1 - Mp50(1e-30));
  EXPECT_EQ(block_quant_mp50(mp, BlockQuant::kFp4)[3], 1.0);
  mp[3] = Mp50(1.25);  // exact tie: even mantissa (1.0)
  EXPECT_EQ(block_quant_mp50(mp, BlockQuant::kFp4)[3], 1.0);
  mp[3] = Mp50(-1.75);  // tie between 1.5 and 2: even (2)
  EXPECT_EQ(block_quant_mp50(mp, BlockQuant::kFp4)[3], -2.0);
  // a scale boundary: amax at 6 ± tiny is uncertified for every element of the block
  v[0] = 6.0;
  ok = block_decisions_certified(v, bnd, 32, BlockQuant::kFp4);
  EXPECT_EQ(ok[1], 0);
  mp[0] = Mp50(6) * (1 + Mp50(1e-30));  // scale 2^1
  EXPECT_EQ(block_quant_mp50(mp, BlockQuant::kFp4)[0], 6.0);
  EXPECT_EQ(block_quant_mp50(mp, BlockQuant::kFp4)[3], -2.0);
}

// ---- (d), (e): FP4 near-ties forced through the whole module ----

// e2m1 magnitudes (spec 01 §1.1): a value, in units of its block scale, rounds at the midpoints.
constexpr std::array<double, 8> kE2m1Grid = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};

struct Fp4Tie {
  std::int64_t j = -1;                                    // element of the row
  Mp50 beta;                                              // the rounding boundary, signed (midpoint × block scale)
  double dist = std::numeric_limits<double>::infinity();  // |v_j − β|
};

// For every element of the exact row v (blocks of 32) that is not its block's amax and lies within
// [0.2, 5.5] block scales: the nearest e2m1 rounding midpoint, at the exact quantiser's block
// scale 2^⌈log2(amax/6)⌉ (spec 01 §1.5).
std::vector<Fp4Tie> fp4_ties(const std::vector<Mp50>& v) {
  std::vector<Fp4Tie> out;
  for (std::size_t b0 = 0; b0 < v.size(); b0 += 32) {
    std::size_t arg = b0;
    for (std::size_t i = b0; i < b0 + 32; ++i) {
      if (abs(v[i]) > abs(v[arg])) arg = i;
    }
    const int k = static_cast<int>(std::ceil(std::log2(static_cast<double>(abs(v[arg])) / 6.0)));
    const Mp50 scale = Mp50(std::ldexp(1.0, k));
    for (std::size_t i = b0; i < b0 + 32; ++i) {
      const double a = static_cast<double>(abs(v[i]) / scale);
      if (i == arg || a < 0.2 || a > 5.5) continue;
      double mid = 0.0;
      for (std::size_t g = 0; g + 1 < kE2m1Grid.size(); ++g) {
        const double m = (kE2m1Grid[g] + kE2m1Grid[g + 1]) / 2;
        if (std::fabs(a - m) < std::fabs(a - mid)) mid = m;
      }
      Fp4Tie t;
      t.j = static_cast<std::int64_t>(i);
      t.beta = (v[i] < 0 ? -1 : 1) * Mp50(mid) * scale;
      t.dist = static_cast<double>(abs(v[i] - t.beta));
      out.push_back(t);
    }
  }
  return out;
}

bool same_tie_present(const std::vector<Mp50>& v, const Fp4Tie& tie) {
  for (const Fp4Tie& t : fp4_ties(v)) {
    if (t.j == tie.j && t.beta == tie.beta) return true;
  }
  return false;
}

// The FP4 decisions (block 32) of a row taken on its exact Mp50 values, and by the double quantiser.
std::vector<double> fp4_mp50_decisions(const std::vector<Mp50>& v) {
  std::vector<double> q;
  for (std::size_t b0 = 0; b0 < v.size(); b0 += 32) {
    const std::vector<double> qb = block_quant_mp50(std::span<const Mp50>(v.data() + b0, 32), BlockQuant::kFp4);
    q.insert(q.end(), qb.begin(), qb.end());
  }
  return q;
}
std::vector<double> fp4_double_decisions(std::vector<double> v) {
  (void)block_quant_exact_inplace(v, static_cast<std::int64_t>(v.size()), 32, BlockQuant::kFp4);
  return v;
}

// Secant steps on a double knob so that eval() approaches target.
template <class Eval>
void solve_knob(double& knob, const Mp50& target, int steps, Eval eval) {
  for (int it = 0; it < steps; ++it) {
    const double k0 = knob;
    const Mp50 v0 = eval();
    knob = k0 + std::ldexp(std::fabs(k0), -20);
    const Mp50 slope = (eval() - v0) / (Mp50(knob) - Mp50(k0));
    knob = static_cast<double>(Mp50(k0) + (target - v0) / slope);
  }
}

// The offset ρ of the constructed value from the boundary β: far below the double pipeline's
// resolution and error bound (~1e-16 relative and more), far above the Mp50 precision (1e-50).
constexpr double kTieOffset = 1e-20;

// (d) One element of the query of (token t0, head h) placed kTieOffset relative above, then below,
// an e2m1 rounding midpoint by tuning two entries of qr in Mp50: coarse qr(t0, 0), fine qr(t0, 1),
// a tiny entry (2^-40) whose tuning stays below the double resolution, so the double pipeline
// computes the same bits on both sides. Indexer::prefill (and decode) must re-decide the row in
// Mp50 and return the correct side on both; the double decision is the same on both sides, so on
// one of them the module's result differs from it (a flip the bound was needed for).
TEST(IndexerCertifyNearTie, QueryFp4MidpointThroughTheModule) {
  const Fixture su = make_setup();
  const std::int64_t s = 8, t0 = s - 1, nI = su.c.index_n_heads, cI = su.c.index_head_dim, kc = 0, kf = 1;
  const Mat x = test::random_normal_matrix(s, su.c.dim, kInputSeed, 4, 1.0);
  Mat qr = test::random_normal_matrix(s, su.c.q_lora_rank, kInputSeed, 5, 1.0);
  qr(t0, kf) = 0x1.0p-40;
  auto exact = [&](const Mat& q, std::int64_t h) {
    return indexer_q_head_mp50(q, t0, su.w.wq_b.values(), *su.table, t0, h, cI);
  };
  // the query is linear in qr: its derivative by qr(t0, k) is the query of the unit row e_k
  auto slope = [&](std::int64_t h, std::int64_t k) {
    Mat e = Mat::Zero(s, qr.cols());
    e(t0, k) = 1.0;
    return exact(e, h);
  };
  std::int64_t h0 = -1;
  Fp4Tie tie;
  double cost = std::numeric_limits<double>::infinity();  // the coarse move of qr(t0, kc) it needs
  for (std::int64_t h = 0; h < nI; ++h) {
    const std::vector<Mp50> v = exact(qr, h), g = slope(h, kc);
    for (const Fp4Tie& t : fp4_ties(v)) {
      const double c = t.dist / std::fabs(static_cast<double>(g[static_cast<std::size_t>(t.j)]));
      if (c < cost) {
        cost = c;
        h0 = h;
        tie = t;
      }
    }
  }
  ASSERT_GE(h0, 0);
  const auto j = static_cast<std::size_t>(tie.j);
  const std::vector<Mp50> g_c = slope(h0, kc), g_f = slope(h0, kf);
  qr(t0, kc) = static_cast<double>(Mp50(qr(t0, kc)) + (tie.beta - exact(qr, h0)[j]) / g_c[j]);
  const std::int64_t row = t0 * nI + h0;
  std::vector<double> result, naive;
  std::vector<Mat> doubles;
  for (const double rho : {kTieOffset, -kTieOffset}) {
    SCOPED_TRACE("rho " + std::to_string(rho));
    Mat q = qr;
    const Mp50 target = tie.beta * (1 + Mp50(rho));
    q(t0, kf) = static_cast<double>(Mp50(q(t0, kf)) + (target - exact(q, h0)[j]) / g_f[j]);
    const std::vector<Mp50> v = exact(q, h0);
    ASSERT_LT(abs(v[j] - target), abs(tie.beta) * Mp50(1e-25)) << "construction failed";
    ASSERT_TRUE(same_tie_present(v, tie)) << "the block scale or the boundary moved";
    const std::vector<double> want = fp4_mp50_decisions(v);
    const Mat q_double = double_query(su, q, 0).q_pre.row(row);
    const std::vector<double> dec_double =
        fp4_double_decisions(std::vector<double>(q_double.data(), q_double.data() + cI));

    const Indexer idx(kExactP, su.c, su.w, su.table);
    IndexerState st = idx.initial_state();
    const IndexerOutput out = idx.prefill(x, q, st, s);
    EXPECT_GE(out.q_decisions.redecided, 1);
    EXPECT_GE(out.q_decisions.recomputed, 1);
    for (std::int64_t i = 0; i < cI; ++i) EXPECT_EQ(out.q(row, i), want[static_cast<std::size_t>(i)]) << i;
    if (dec_double[j] != want[j]) {
      EXPECT_GE(out.q_decisions.flipped, 1);
    }
    // decode of t0 after a prefill of t0 tokens: the same re-decision
    IndexerState sd = idx.initial_state();
    (void)idx.prefill(x.topRows(t0), q.topRows(t0), sd, t0);
    const IndexerOutput dec = idx.decode(x.bottomRows(1), q.bottomRows(1), t0, sd, 0);
    EXPECT_GE(dec.q_decisions.redecided, 1);
    for (std::int64_t i = 0; i < cI; ++i) EXPECT_EQ(dec.q(h0, i), want[static_cast<std::size_t>(i)]) << i;
    std::printf("query near-tie rho %+g: head %lld element %zu, Mp50 %g, double %g; re-decided %lld, flipped %lld\n",
                rho, static_cast<long long>(h0), j, want[j], dec_double[j],
                static_cast<long long>(out.q_decisions.redecided), static_cast<long long>(out.q_decisions.flipped));
    result.push_back(out.q(row, tie.j));
    naive.push_back(dec_double[j]);
    doubles.push_back(q_double);
  }
  EXPECT_NE(result[0], result[1]);                       // the module tells the two sides apart
  EXPECT_TRUE(test::bit_equal(doubles[0], doubles[1]));  // the double pipeline cannot
  EXPECT_EQ(naive[0], naive[1]);
  EXPECT_TRUE(result[0] != naive[0] || result[1] != naive[1]);  // so one side is a flip
}

// (e) The same for a key of the indexer compressor (spec 02 §2.6.3: Hadamard + FP4 of all dims):
// entry 1 of a prefill of 8 tokens. Coarse knob: the compressor's norm weight γ_0 (the rotated
// entry is affine in it, every element moving by the same amount, so the nearest tie needs the
// smallest move); fine knob: a tiny input x(5, 0) of a token of the entry's block. The exact entry
// is Compressor::check_entry's value − error (error = value − Mp50, rounded to double: |error| is
// ~1e-15, so the exact value is known to ~1e-31, far below the offset).
TEST(IndexerCertifyNearTie, CompressorKeyFp4MidpointThroughTheModule) {
  const Fixture su = make_setup();
  const std::int64_t s = 8, entry = 1, tk = 5, kf = 0, jc = 0;
  const CompressorSpec spec = CompressorSpec::indexer(su.c);
  Mat x = test::random_normal_matrix(s, su.c.dim, kInputSeed, 6, 1.0);
  x(tk, kf) = 0x1.0p-40;
  const Mat qr = test::random_normal_matrix(s, su.c.q_lora_rank, kInputSeed, 7, 1.0);
  IndexerWeights w = su.w;
  auto check = [&](const Mat& xx) {
    const Compressor comp(kExactP, spec, w.compressor, su.table);
    return comp.check_entry(prefill_pool_input(spec, xx, entry), entry, true);
  };
  auto exact_of = [](const CompressorEntryCheck& ck) {
    std::vector<Mp50> v(ck.value.size());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = Mp50(ck.value[i]) - Mp50(ck.error[i]);
    return v;
  };
  Fp4Tie tie;
  for (const Fp4Tie& t : fp4_ties(exact_of(check(x)))) {
    if (t.dist < tie.dist) tie = t;
  }
  ASSERT_GE(tie.j, 0);
  const auto j = static_cast<std::size_t>(tie.j);
  solve_knob(w.compressor.norm(jc), tie.beta, 2, [&] { return exact_of(check(x))[j]; });
  std::vector<double> result, naive;
  std::vector<std::vector<double>> doubles;
  for (const double rho : {kTieOffset, -kTieOffset}) {
    SCOPED_TRACE("rho " + std::to_string(rho));
    Mat xs = x;
    const Mp50 target = tie.beta * (1 + Mp50(rho));
    solve_knob(xs(tk, kf), target, 3, [&] { return exact_of(check(xs))[j]; });
    const CompressorEntryCheck ck = check(xs);
    const std::vector<Mp50> v = exact_of(ck);
    ASSERT_LT(abs(v[j] - target), abs(tie.beta) * Mp50(1e-25)) << "construction failed";
    ASSERT_TRUE(same_tie_present(v, tie)) << "the block scale or the boundary moved";
    const std::vector<double> want = fp4_mp50_decisions(v), dec_double = fp4_double_decisions(ck.value);

    const Indexer idx(kExactP, su.c, w, su.table);
    IndexerState st = idx.initial_state();
    const IndexerOutput out = idx.prefill(xs, qr, st, s);
    ASSERT_EQ(out.compressed.count(), 2);
    EXPECT_GE(out.compressed.decisions.redecided, 1);
    EXPECT_GE(out.compressed.decisions.recomputed, 1);
    for (std::size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(out.compressed.entries(entry, static_cast<std::int64_t>(i)), want[i]) << i;
      EXPECT_EQ(st.cache(entry, static_cast<std::int64_t>(i)), want[i]) << i;
    }
    if (dec_double[j] != want[j]) {
      EXPECT_GE(out.compressed.decisions.flipped, 1);
    }
    // decode of the entry's block after a prefill of 4 tokens: the same re-decision
    IndexerState sd = idx.initial_state();
    (void)idx.prefill(xs.topRows(4), qr.topRows(4), sd, 4);
    std::int64_t redecided = 0;
    for (std::int64_t p = 4; p < s; ++p) {
      const IndexerOutput d = idx.decode(xs.row(p), qr.row(p), p, sd, 0);
      redecided += d.compressed.decisions.redecided;
    }
    EXPECT_GE(redecided, 1);
    for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(sd.cache(entry, static_cast<std::int64_t>(i)), want[i]);
    std::printf("compressor key near-tie rho %+g: element %zu, Mp50 %g, double %g; re-decided %lld, flipped %lld\n",
                rho, j, want[j], dec_double[j], static_cast<long long>(out.compressed.decisions.redecided),
                static_cast<long long>(out.compressed.decisions.flipped));
    result.push_back(out.compressed.entries(entry, tie.j));
    naive.push_back(dec_double[j]);
    doubles.push_back(ck.value);
  }
  EXPECT_NE(result[0], result[1]);
  EXPECT_EQ(doubles[0], doubles[1]);
  EXPECT_EQ(naive[0], naive[1]);
  EXPECT_TRUE(result[0] != naive[0] || result[1] != naive[1]);
}

}  // namespace
}  // namespace dsv4
