// Index-list builders (spec 02 §2.8), checked against lists written out by hand and against the
// visibility rule of §2.8.4.
#include "dsv4/model/index_builders.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace dsv4 {
namespace {

std::vector<std::int32_t> row(const IndexLists& l, std::int64_t r) { return {l.row(r).begin(), l.row(r).end()}; }
using V = std::vector<std::int32_t>;

TEST(WindowLists, PrefillShorterThanWindow) {
  // s = 3, n_win = 4: width 3; row t = [0..t, -1...].
  const IndexLists l = window_lists_prefill(3, 4);
  EXPECT_EQ(l.width, 3);
  EXPECT_EQ(row(l, 0), (V{0, -1, -1}));
  EXPECT_EQ(row(l, 1), (V{0, 1, -1}));
  EXPECT_EQ(row(l, 2), (V{0, 1, 2}));
}

TEST(WindowLists, PrefillLongerThanWindow) {
  // s = 6, n_win = 4: width 4; t ≥ 3 slides: t = 5 → [2, 3, 4, 5].
  const IndexLists l = window_lists_prefill(6, 4);
  EXPECT_EQ(l.width, 4);
  EXPECT_EQ(row(l, 0), (V{0, -1, -1, -1}));
  EXPECT_EQ(row(l, 2), (V{0, 1, 2, -1}));
  EXPECT_EQ(row(l, 3), (V{0, 1, 2, 3}));
  EXPECT_EQ(row(l, 4), (V{1, 2, 3, 4}));
  EXPECT_EQ(row(l, 5), (V{2, 3, 4, 5}));
}

TEST(WindowLists, DecodeBeforeAndAfterWrap) {
  // n_win = 4. p = 1 < 3: [0, 1, -1, -1]. p = 3 (ρ = 3): [0, 1, 2, 3]. p = 5 (ρ = 1): slots
  // 2, 3 hold positions 2, 3 and slots 0, 1 hold 4, 5 → [2, 3, 0, 1] (oldest → newest).
  EXPECT_EQ(row(window_lists_decode(1, 4), 0), (V{0, 1, -1, -1}));
  EXPECT_EQ(row(window_lists_decode(2, 4), 0), (V{0, 1, 2, -1}));
  EXPECT_EQ(row(window_lists_decode(3, 4), 0), (V{0, 1, 2, 3}));
  EXPECT_EQ(row(window_lists_decode(5, 4), 0), (V{2, 3, 0, 1}));
  EXPECT_EQ(row(window_lists_decode(7, 4), 0), (V{0, 1, 2, 3}));
  EXPECT_EQ(row(window_lists_decode(8, 4), 0), (V{1, 2, 3, 0}));
}

TEST(WindowLists, DecodeSlotsHoldTheWindowPositionsInOrder) {
  // For every p, the ring slots of the list hold positions max(0, p − n_win + 1)..p in order.
  const std::int64_t win = 5;
  for (std::int64_t p = 1; p < 40; ++p) {
    const IndexLists l = window_lists_decode(p, win);
    std::vector<std::int64_t> pos;
    for (std::int32_t slot : l.row(0)) {
      if (slot == -1) continue;
      // the position held by a slot: the latest position ≤ p with that residue
      pos.push_back(p - ((p - slot) % win + win) % win);
    }
    std::vector<std::int64_t> want;
    for (std::int64_t t = std::max<std::int64_t>(0, p - win + 1); t <= p; ++t) want.push_back(t);
    EXPECT_EQ(pos, want) << "p = " << p;
  }
}

TEST(HcaLists, Prefill) {
  // s = 9, m = 4, offset 9: width 2; entry 0 visible from t = 3, entry 1 from t = 7.
  const IndexLists l = hca_lists_prefill(9, 4, 9);
  EXPECT_EQ(l.width, 2);
  EXPECT_EQ(row(l, 0), (V{-1, -1}));
  EXPECT_EQ(row(l, 2), (V{-1, -1}));
  EXPECT_EQ(row(l, 3), (V{9, -1}));
  EXPECT_EQ(row(l, 6), (V{9, -1}));
  EXPECT_EQ(row(l, 7), (V{9, 10}));
  EXPECT_EQ(row(l, 8), (V{9, 10}));
  EXPECT_EQ(hca_lists_prefill(3, 4, 3).width, 0);
}

TEST(HcaLists, Decode) {
  EXPECT_EQ(hca_lists_decode(2, 4, 16).width, 0);
  EXPECT_EQ(row(hca_lists_decode(3, 4, 16), 0), (V{16}));
  EXPECT_EQ(row(hca_lists_decode(10, 4, 16), 0), (V{16, 17}));
  EXPECT_EQ(row(hca_lists_decode(11, 4, 16), 0), (V{16, 17, 18}));
  EXPECT_EQ(hca_lists_decode(126, 128, 16).width, 0);
  EXPECT_EQ(row(hca_lists_decode(127, 128, 16), 0), (V{16}));
}

TEST(HcaLists, CausalNeverAFutureBlock) {
  // Every valid entry i of query t covers positions m·i..m·i + m − 1 ≤ t, in prefill and decode.
  for (std::int64_t m : {4, 128}) {
    const std::int64_t s = 300;
    const IndexLists l = hca_lists_prefill(s, m, s);
    for (std::int64_t t = 0; t < s; ++t) {
      std::int64_t valid = 0;
      for (std::int32_t e : l.row(t)) {
        if (e == -1) continue;
        const std::int64_t i = e - s;
        EXPECT_LE(m * i + m - 1, t);
        EXPECT_TRUE(compressed_entry_visible(i, t, m));
        ++valid;
      }
      EXPECT_EQ(valid, visible_compressed_entries(t, m));
      if (t >= 1) {
        const IndexLists d = hca_lists_decode(t, m, 16);
        for (std::int32_t e : d.row(0)) EXPECT_LE(m * (e - 16) + m - 1, t);
        EXPECT_EQ(d.width, visible_compressed_entries(t, m));
      }
    }
  }
  EXPECT_FALSE(compressed_entry_visible(0, 2, 4));
  EXPECT_TRUE(compressed_entry_visible(0, 3, 4));
  EXPECT_FALSE(compressed_entry_visible(1, 6, 4));
  EXPECT_TRUE(compressed_entry_visible(1, 7, 4));
}

TEST(IndexLists, ConcatAndBadInput) {
  const IndexLists c = concat_lists(window_lists_prefill(3, 4), hca_lists_prefill(3, 2, 3));
  EXPECT_EQ(c.width, 4);
  EXPECT_EQ(row(c, 0), (V{0, -1, -1, -1}));
  EXPECT_EQ(row(c, 1), (V{0, 1, -1, 3}));
  EXPECT_THROW(concat_lists(window_lists_prefill(3, 4), window_lists_prefill(2, 4)), std::invalid_argument);
  EXPECT_THROW(window_lists_decode(0, 4), std::invalid_argument);
  EXPECT_THROW(window_lists_prefill(0, 4), std::invalid_argument);
  EXPECT_THROW(window_lists_prefill(4, 0), std::invalid_argument);
  EXPECT_THROW(hca_lists_decode(5, 0, 4), std::invalid_argument);
  try {
    window_lists_decode(0, 4);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("start_pos"), std::string::npos);
  }
}

}  // namespace
}  // namespace dsv4
