// The Attention module (spec 02 §2.4–2.5, 2.10–2.11) on small configs with synthetic weights:
// decode ≡ prefill (bit-identical where the paths compute the same math; where the index-list
// layout changes the chunking, §2.11.4, see attention_decode_bound_test), batch independence, a
// hand-derivable one-token case, and bad input.
#include "dsv4/model/attention.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "support/mat_bits.hpp"
#include "support/random_matrix.hpp"
#include "support/small_configs.hpp"

namespace dsv4 {
namespace {

using test::bit_equal;

Mat random_bf16(std::int64_t rows, std::int64_t cols, std::uint64_t stream) {
  return test::random_bf16_matrix(rows, cols, 5, stream, 1.0);
}

using testing_support::small_tiny;

// The valid entries of a list as (part, index) where part 0 = window position, 1 = compressed
// entry — a layout-free description comparable between prefill and decode.
std::vector<std::pair<int, std::int64_t>> entries_of(const IndexLists& l, std::int64_t r, std::int64_t win_width,
                                                     std::int64_t offset, std::int64_t pos, std::int64_t window,
                                                     bool decode) {
  std::vector<std::pair<int, std::int64_t>> e;
  for (std::int64_t j = 0; j < l.width; ++j) {
    const std::int32_t i = l.at(r, j);
    if (i == -1) continue;
    if (j < win_width) {
      e.emplace_back(0, decode ? pos - ((pos - i) % window + window) % window : i);
    } else {
      e.emplace_back(1, i - offset);
    }
  }
  return e;
}

void compare_decode_prefill(Mode mode, const ModelConfig& cfg, std::int64_t layer, std::int64_t total,
                            const std::vector<std::int64_t>& splits) {
  const Precision prec(mode);
  const Attention attn(prec, cfg, layer, AttentionWeights::synthetic(cfg, layer, 42));
  const Mat x = random_bf16(total, cfg.dim, 100 + static_cast<std::uint64_t>(layer));
  AttentionState full_st = attn.initial_state();
  const AttentionOutput full = attn.prefill(x, full_st);
  const std::int64_t win = cfg.window_size;
  for (std::int64_t n : splits) {
    SCOPED_TRACE("mode " + mode_name(mode) + " layer " + std::to_string(layer) + " prefill " + std::to_string(n));
    AttentionState st = attn.initial_state();
    const AttentionOutput pre = attn.prefill(x.topRows(n), st);
    // prefill rows 0..n−1: same per-token math; the list layout differs only if min(n, win) ≠ min(total, win)
    for (std::int64_t t = 0; t < n; ++t) {
      EXPECT_TRUE(bit_equal(pre.q.row(t), full.q.row(t)));
      EXPECT_TRUE(bit_equal(pre.kv.row(t), full.kv.row(t)));
      EXPECT_EQ(entries_of(pre.lists, t, std::min(n, win), n, t, win, false),
                entries_of(full.lists, t, std::min(total, win), total, t, win, false));
      const bool same_layout = std::min(n, win) == std::min(total, win);
      if (mode == Mode::kExact || same_layout) {
        EXPECT_TRUE(bit_equal(pre.attn.row(t), full.attn.row(t))) << "t = " << t;
        EXPECT_TRUE(bit_equal(pre.out.row(t), full.out.row(t))) << "t = " << t;
      }
    }
    for (std::int64_t r = 0; r < pre.compressed.count(); ++r) {
      EXPECT_TRUE(bit_equal(pre.compressed.entries.row(r), full.compressed.entries.row(r)));
    }
    for (std::int64_t p = n; p < total; ++p) {
      const AttentionOutput d = attn.decode(x.row(p), p, st);
      EXPECT_TRUE(bit_equal(d.q_r, full.q_r.row(p))) << "p = " << p;
      EXPECT_TRUE(bit_equal(d.q, full.q.row(p))) << "p = " << p;
      EXPECT_TRUE(bit_equal(d.kv, full.kv.row(p))) << "p = " << p;
      EXPECT_EQ(entries_of(d.lists, 0, win, win, p, win, true),
                entries_of(full.lists, p, std::min(total, win), total, p, win, false))
          << "p = " << p;
      for (std::int64_t r = 0; r < d.compressed.count(); ++r) {
        const std::int64_t i = d.compressed.first + r;
        EXPECT_TRUE(bit_equal(d.compressed.entries.row(r), full.compressed.entries.row(i))) << "entry " << i;
      }
      if (mode == Mode::kExact || win == std::min(total, win)) {
        EXPECT_TRUE(bit_equal(d.attn, full.attn.row(p))) << "p = " << p;
        EXPECT_TRUE(bit_equal(d.out, full.out.row(p))) << "p = " << p;
      }
    }
  }
}

// Alignments: splits before/after the ring wraps (16), inside and at the ends of ratio-4 blocks,
// just before / at / after the first ratio-128 boundary (127), and a decode run crossing it.
TEST(AttentionDecodeEqualsPrefill, ExactAllKinds) {
  const ModelConfig cfg = small_tiny();
  for (std::int64_t layer : {0, 1, 2}) compare_decode_prefill(Mode::kExact, cfg, layer, 136, {3, 17, 126, 127, 128});
}

TEST(AttentionDecodeEqualsPrefill, OfficialAllKinds) {
  // Every list of this config fits one 64-chunk: the official paths agree bit for bit too.
  const ModelConfig cfg = small_tiny();
  for (std::int64_t layer : {0, 1, 2}) compare_decode_prefill(Mode::kOfficial, cfg, layer, 134, {4, 20, 127});
}

TEST(Attention, BatchRowsAreIndependent) {
  const ModelConfig cfg = small_tiny();
  for (Mode mode : {Mode::kOfficial, Mode::kExact}) {
    const Precision prec(mode);
    const Attention attn(prec, cfg, 2, AttentionWeights::synthetic(cfg, 2, 42));
    const Mat a = random_bf16(21, cfg.dim, 1), b = random_bf16(21, cfg.dim, 2);
    std::vector<AttentionState> two{attn.initial_state(), attn.initial_state()};
    std::vector<AttentionState> one{attn.initial_state()};
    const auto o2 = attn.forward({a, b}, 0, two);
    const auto o1 = attn.forward({a}, 0, one);
    EXPECT_TRUE(bit_equal(o1[0].out, o2[0].out));
    EXPECT_FALSE(bit_equal(o2[0].out, o2[1].out));
    for (std::int64_t p = 21; p < 25; ++p) {
      const auto d2 = attn.forward({random_bf16(1, cfg.dim, 10 + p), random_bf16(1, cfg.dim, 50 + p)}, p, two);
      const auto d1 = attn.forward({random_bf16(1, cfg.dim, 10 + p)}, p, one);
      EXPECT_TRUE(bit_equal(d1[0].out, d2[0].out)) << p;
    }
  }
}

TEST(Attention, OneTokenPrefillAttendsToItselfAndTheSink) {
  // t = 0 of an SWA layer: the list is [0], so o_h = kv_0 · e^s / (e^s + e^z), s = τ q_h·kv_0.
  const ModelConfig cfg = small_tiny();
  const Precision prec(Mode::kExact);
  const AttentionWeights w = AttentionWeights::synthetic(cfg, 0, 42);
  const Attention attn(prec, cfg, 0, w);
  AttentionState st = attn.initial_state();
  const AttentionOutput o = attn.prefill(random_bf16(1, cfg.dim, 9), st);
  const std::int64_t c = cfg.head_dim;
  for (std::int64_t h = 0; h < cfg.n_heads; ++h) {
    const double s = o.q.row(0).segment(h * c, c).dot(o.kv.row(0)) / std::sqrt(double(c));
    const double wgt = 1.0 / (1.0 + std::exp(w.attn_sink[static_cast<std::size_t>(h)] - s));
    for (std::int64_t d = 0; d < c; ++d) EXPECT_NEAR(o.attn(0, h * c + d), wgt * o.kv(0, d), 1e-14);
  }
  // the nope dims of kv are FP8-simulated: every 64-block is (e4m3 value) × 2^k
  EXPECT_LE(o.kv_margin.element, 0.5);
}

TEST(Attention, BadInput) {
  const ModelConfig cfg = small_tiny();
  const Precision prec(Mode::kOfficial);
  const Attention attn(prec, cfg, 1, AttentionWeights::synthetic(cfg, 1, 42));
  AttentionState st = attn.initial_state();
  auto expect_field = [](auto&& fn, const std::string& field) {
    try {
      fn();
      ADD_FAILURE() << "no exception for " << field;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_field([&] { attn.prefill(random_bf16(161, cfg.dim, 1), st); }, "start_pos");
  expect_field([&] { attn.prefill(random_bf16(3, cfg.dim - 1, 1), st); }, "x");
  attn.prefill(random_bf16(3, cfg.dim, 1), st);
  expect_field([&] { attn.decode(random_bf16(1, cfg.dim, 1), 5, st); }, "start_pos");
  expect_field([&] { attn.decode(random_bf16(2, cfg.dim, 1), 3, st); }, "x");
  expect_field([&] { attn.decode(random_bf16(1, cfg.dim, 1), 160, st); }, "start_pos");
  AttentionWeights w = AttentionWeights::synthetic(cfg, 1, 42);
  w.attn_sink.pop_back();
  expect_field([&] { Attention(prec, cfg, 1, w); }, "attn_sink");
  AttentionWeights w2 = AttentionWeights::synthetic(cfg, 1, 42);
  w2.wkv = synthetic_fp8_weight(1, "wkv", cfg.head_dim, 128, 0.1);
  expect_field([&] { Attention(prec, cfg, 1, w2); }, "wkv");
  expect_field([&] { Attention(prec, cfg, 99, AttentionWeights::synthetic(cfg, 1, 42)); }, "layer");
}

}  // namespace
}  // namespace dsv4
