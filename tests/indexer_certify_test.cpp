// Certification of the exact-mode FP4 decisions of the Lightning Indexer's query (spec 02 §2.7
// step 1; indexer.hpp, kv_certify.hpp): (a) random inputs certify almost everything, (b) the bound
// holds against Mp50 and is not vacuous, (c) a constructed near-tie is re-decided in Mp50.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <span>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/hadamard.hpp"
#include "dsv4/model/indexer.hpp"
#include "dsv4/model/kv_certify.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {
namespace {

const Precision kExactP(Mode::kExact);

Mat random_mat(std::int64_t rows, std::int64_t cols, double scale, std::uint64_t stream) {
  const CounterRng rng(41, stream);
  Mat m(rows, cols);
  for (std::int64_t i = 0; i < m.size(); ++i) m.data()[i] = scale * rng.normal(static_cast<std::uint64_t>(i));
  return m;
}

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

// (a) through Indexer::prefill: every element is counted, almost all are certified.
TEST(IndexerCertify, RandomInputsCertify) {
  const Fixture su = make_setup();
  const Indexer idx(kExactP, su.c, su.w, su.table);
  IndexerState st = idx.initial_state();
  const std::int64_t s = 48;
  const Mat x = random_mat(s, su.c.dim, 1.0, 1);
  const Mat qr = random_mat(s, su.c.q_lora_rank, 1.0, 2);
  const IndexerOutput out = idx.prefill(x, qr, st, s);
  const std::int64_t total = s * su.c.index_n_heads * su.c.index_head_dim;
  EXPECT_EQ(out.q_certified_elements + out.q_redecided_elements, total);
  EXPECT_GT(out.q_certified_elements, 0);
  EXPECT_LE(out.q_redecided_elements * 100, total);
  std::printf("indexer q: %lld certified, %lld re-decided (%lld heads), %lld flipped\n",
              static_cast<long long>(out.q_certified_elements), static_cast<long long>(out.q_redecided_elements),
              static_cast<long long>(out.q_redecided_heads), static_cast<long long>(out.q_flipped_elements));
  // the Mp50 decisions agree with the output everywhere (certified or re-decided)
  const std::int64_t cI = su.c.index_head_dim;
  for (std::int64_t t = 0; t < s; t += 7) {
    for (std::int64_t h = 0; h < su.c.index_n_heads; ++h) {
      const std::vector<Mp50> mp = indexer_q_head_mp50(qr, t, su.w.wq_b.values, *su.table, t, h, cI);
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
  const Mat qr = random_mat(s, su.c.q_lora_rank, 1.0, 3);
  const Mat& wv = su.w.wq_b.values;
  const Mat q_lin = kExactP.matmul_nt(qr, wv);
  Mat q = q_lin;
  apply_rope_inplace(kExactP, *su.table, q, start, cI);
  Mat qh = Eigen::Map<const Mat>(q.data(), s * nI, cI);
  hadamard_inplace(kExactP, qh, cI);
  const Vec b = indexer_q_error_bound(qr, wv, q_lin, q, *su.table, start, cI);
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

}  // namespace
}  // namespace dsv4
