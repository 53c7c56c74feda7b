// Lightning Indexer (spec 02 §2.7) on the tiny config with synthetic weights: causal masking and
// offsets, the C4 selection re-derived from the scores, the official weight/score roundings, the
// exact-mode score bounds against a multiprecision evaluation, and decode ≡ prefill.
#include "dsv4/model/indexer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {
namespace {

Mat random_bf16(std::int64_t rows, std::int64_t cols, std::uint64_t stream) {
  CounterRng rng(7, stream);
  Mat m(rows, cols);
  for (std::int64_t i = 0; i < m.size(); ++i) m.data()[i] = round_bf16(rng.normal(static_cast<std::uint64_t>(i)));
  return m;
}

struct Fixture {
  ModelConfig cfg = builtin_config("tiny");
  Precision prec;
  std::shared_ptr<const RopeTable> table;
  std::unique_ptr<Indexer> ix;
  explicit Fixture(Mode mode) : prec(mode) {
    cfg.max_seq_len = 64;
    cfg.index_topk = 3;
    table = std::make_shared<const RopeTable>(rope_table_for_layer(prec, cfg, 2));
    ix = std::make_unique<Indexer>(prec, cfg, IndexerWeights::synthetic(cfg, 11), table);
  }
};

// A prefill of `s` random bf16 tokens (x from `stream`, q_r from stream + 1) from an empty state.
struct Prefill {
  Mat x, qr;
  IndexerState st;
  IndexerOutput o;
  Prefill(const Fixture& f, std::int64_t s, std::uint64_t stream)
      : x(random_bf16(s, f.cfg.dim, stream)),
        qr(random_bf16(s, f.cfg.q_lora_rank, stream + 1)),
        st(f.ix->initial_state()),
        o(f.ix->prefill(x, qr, st, s)) {}
};

TEST(Indexer, PrefillCausalMaskOffsetsAndC4Selection) {
  for (Mode mode : {Mode::kOfficial, Mode::kExact}) {
    Fixture f(mode);
    const std::int64_t s = 23;
    const auto& [x, qr, st, o] = Prefill(f, s, 1);
    const std::int64_t nk = s / 4;  // 5 entries
    ASSERT_EQ(o.scores.cols(), nk);
    ASSERT_EQ(o.lists.width, std::min<std::int64_t>(3, nk));
    for (std::int64_t t = 0; t < s; ++t) {
      const std::int64_t vis = (t + 1) / 4;
      for (std::int64_t i = 0; i < nk; ++i) EXPECT_EQ(std::isinf(o.scores(t, i)), i >= vis);
      // C4 re-derived: sort (score desc, index asc) over all ⌊e/4⌋ rows, take k, map offsets
      std::vector<std::int64_t> ord(static_cast<std::size_t>(nk));
      std::iota(ord.begin(), ord.end(), 0);
      std::stable_sort(ord.begin(), ord.end(),
                       [&](std::int64_t a, std::int64_t b) { return o.scores(t, a) > o.scores(t, b); });
      std::int64_t valid = 0;
      for (std::int64_t j = 0; j < o.lists.width; ++j) {
        const std::int64_t want = ord[static_cast<std::size_t>(j)] >= vis ? -1 : ord[static_cast<std::size_t>(j)] + s;
        if (mode == Mode::kOfficial || !o.margins[static_cast<std::size_t>(t)].redecided) {
          EXPECT_EQ(o.lists.at(t, j), want);
        }
        if (o.lists.at(t, j) != -1) {
          EXPECT_LT(o.lists.at(t, j) - s, vis) << "never a future block";
          ++valid;
        }
      }
      EXPECT_EQ(valid, std::min<std::int64_t>(3, vis));
      const TopkMargin& m = o.margins[static_cast<std::size_t>(t)];
      EXPECT_GE(m.gap, 0.0);
      if (vis > 3) {
        EXPECT_EQ(m.kth, o.scores(t, ord[2]));
      }
    }
  }
}

TEST(Indexer, OfficialRoundings) {
  Fixture f(Mode::kOfficial);
  const std::int64_t s = 9;
  const auto& [x, qr, st, o] = Prefill(f, s, 3);
  const Precision& p = f.prec;
  const float c = static_cast<float>(1.0 / std::sqrt(128.0 * 4.0));  // c_I^-1/2 n_I^-1/2
  for (std::int64_t t = 0; t < s; ++t) {
    for (std::int64_t h = 0; h < f.cfg.index_n_heads; ++h) {
      Mat xr = x.row(t);
      const double wx = linear(p, xr, IndexerWeights::synthetic(f.cfg, 11).weights_proj)(0, h);
      EXPECT_EQ(o.weights(t, h), round_bf16(static_cast<float>(wx) * c));
    }
    for (std::int64_t i = 0; i < o.scores.cols(); ++i) {
      if (std::isinf(o.scores(t, i))) continue;
      EXPECT_EQ(o.scores(t, i), round_bf16(o.scores(t, i)));  // bf16 scores
    }
  }
  for (std::int64_t i = 0; i < o.q.size(); ++i) EXPECT_EQ(o.q.data()[i], round_bf16(o.q.data()[i]));
  EXPECT_EQ(o.compressed.count(), 2);
}

TEST(Indexer, ExactScoreBoundsHoldAgainstMultiprecision) {
  Fixture f(Mode::kExact);
  const std::int64_t s = 17;
  const auto& [x, qr, st, o] = Prefill(f, s, 5);
  const IndexerWeights w = IndexerWeights::synthetic(f.cfg, 11);
  const Mp50 cst = Mp50(1) / sqrt(Mp50(512));
  const Mat w_w = w.weights_proj.values();
  for (std::int64_t t = 3; t < s; t += 4) {
    for (std::int64_t i = 0; i < (t + 1) / 4; ++i) {
      Mp50 total = 0;
      for (std::int64_t h = 0; h < 4; ++h) {
        Mp50 wx = 0, dot = 0;
        for (std::int64_t j = 0; j < f.cfg.dim; ++j) wx += Mp50(w_w(h, j)) * Mp50(x(t, j));
        for (std::int64_t j = 0; j < 128; ++j) dot += Mp50(o.q(t * 4 + h, j)) * Mp50(st.cache(i, j));
        if (dot > 0) total += dot * wx * cst;
      }
      const double err = static_cast<double>(abs(Mp50(o.scores(t, i)) - total));
      EXPECT_LE(err, o.score_bounds(t, i));
      EXPECT_GT(o.score_bounds(t, i), 0.0);
      EXPECT_LT(o.score_bounds(t, i), 1e-10 * (1.0 + std::abs(o.scores(t, i))));
    }
  }
}

TEST(Indexer, DecodeEqualsPrefill) {
  for (Mode mode : {Mode::kOfficial, Mode::kExact}) {
    Fixture f(mode);
    const std::int64_t n = 5, total = 14;
    const Mat x = random_bf16(total, f.cfg.dim, 7), qr = random_bf16(total, f.cfg.q_lora_rank, 8);
    IndexerState full = f.ix->initial_state(), inc = f.ix->initial_state();
    const IndexerOutput ref = f.ix->prefill(x, qr, full, total);
    f.ix->prefill(x.topRows(n), qr.topRows(n), inc, n);
    for (std::int64_t p = n; p < total; ++p) {
      const IndexerOutput d = f.ix->decode(x.row(p), qr.row(p), p, inc, f.cfg.window_size);
      const std::int64_t nk = (p + 1) / 4;
      for (std::int64_t i = 0; i < nk; ++i) EXPECT_EQ(d.scores(0, i), ref.scores(p, i)) << p << " " << i;
      for (std::int64_t j = 0; j < d.lists.width; ++j) {
        EXPECT_EQ(d.lists.at(0, j) - f.cfg.window_size, ref.lists.at(p, j) - total) << p;
      }
      for (std::int64_t j = d.lists.width; j < ref.lists.width; ++j) EXPECT_EQ(ref.lists.at(p, j), -1);
    }
  }
}

TEST(Indexer, BadInput) {
  Fixture f(Mode::kOfficial);
  IndexerState st = f.ix->initial_state();
  const Mat x = random_bf16(4, f.cfg.dim, 1), qr = random_bf16(4, f.cfg.q_lora_rank, 2);
  EXPECT_THROW(f.ix->prefill(x, qr.leftCols(64), st, 4), std::invalid_argument);
  EXPECT_THROW(f.ix->prefill(random_bf16(65, f.cfg.dim, 1), random_bf16(65, f.cfg.q_lora_rank, 2), st, 65),
               std::invalid_argument);
  IndexerWeights w = IndexerWeights::synthetic(f.cfg, 1);
  w.weights_proj = synthetic_bf16_weight(1, "x", 3, f.cfg.dim, 0.1);
  EXPECT_THROW(Indexer(f.prec, f.cfg, w, f.table), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
