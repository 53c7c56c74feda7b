// Sparse attention with sink (spec 02 §2.9): official kernel semantics against an independent naive
// transcription of the §2.9 loop (float variables, Mp50 sums), hand-derivable cases, the exact math,
// and the derived official-vs-exact bound.
#include "dsv4/model/sparse_attention.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "dsv4/numerics/correct_rounding.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/mat_bits.hpp"

namespace dsv4 {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Mat random_bf16(std::int64_t rows, std::int64_t cols, std::uint64_t stream, double scale) {
  CounterRng rng(1234, stream);
  Mat m(rows, cols);
  for (std::int64_t i = 0; i < m.size(); ++i)
    m.data()[i] = round_bf16(scale * rng.normal(static_cast<std::uint64_t>(i)));
  return m;
}

// Round an Mp50 value to the nearest float (ties to even) without trusting a library conversion.
float mp_to_float(const Mp50& x) {
  float f = static_cast<float>(static_cast<double>(x));
  for (int it = 0; it < 4; ++it) {
    const float up = std::nextafter(f, kInf), dn = std::nextafter(f, -kInf);
    const Mp50 e = abs(x - Mp50(f));
    if (abs(x - Mp50(up)) < e || (abs(x - Mp50(up)) == e && (float_bits(up) & 1u) == 0)) {
      f = up;
    } else if (abs(x - Mp50(dn)) < e || (abs(x - Mp50(dn)) == e && (float_bits(dn) & 1u) == 0)) {
      f = dn;
    } else {
      break;
    }
  }
  return f;
}

// The §2.9 loop written out again, independently: float state, Mp50 sums rounded once (C1).
Mat naive_official(const Mat& q, std::int64_t H, const Mat& kv, const std::vector<double>& sink, const IndexLists& l,
                   double scale) {
  const std::int64_t c = q.cols();
  const float tau = static_cast<float>(scale);
  Mat out(q.rows(), c);
  const std::int64_t chunks = (l.width + 63) / 64;
  for (std::int64_t r = 0; r < l.rows; ++r) {
    for (std::int64_t h = 0; h < H; ++h) {
      float mx = -std::numeric_limits<float>::infinity(), den = 0.0f;
      std::vector<float> acc(static_cast<std::size_t>(c), 0.0f);
      for (std::int64_t g = 0; g < std::max<std::int64_t>(chunks, 1); ++g) {
        std::vector<int> id(64);
        std::vector<float> sc(64);
        for (int j = 0; j < 64; ++j) {
          const std::int64_t pos = g * 64 + j;
          id[j] = pos < l.width ? l.at(r, pos) : -1;
          if (id[j] == -1) {
            sc[j] = -std::numeric_limits<float>::infinity();
          } else {
            Mp50 dot = 0;
            for (std::int64_t d = 0; d < c; ++d) dot += Mp50(q(r * H + h, d)) * Mp50(kv(id[j], d));
            sc[j] = mp_to_float(dot) * tau;
          }
        }
        float mnew = mx;
        for (float v : sc) mnew = std::max(mnew, v);
        const float alpha = cr_exp(mx - mnew);
        Mp50 psum = 0;
        std::vector<float> pb(64);
        for (int j = 0; j < 64; ++j) {
          const float pj = cr_exp(sc[j] - mnew);
          psum += Mp50(pj);
          pb[j] = round_bf16(pj);
        }
        den = std::fma(den, alpha, mp_to_float(psum));
        for (std::int64_t d = 0; d < c; ++d) {
          Mp50 pv = 0;
          for (int j = 0; j < 64; ++j) {
            if (id[j] != -1) pv += Mp50(pb[j]) * Mp50(kv(id[j], d));
          }
          acc[static_cast<std::size_t>(d)] = acc[static_cast<std::size_t>(d)] * alpha;
          acc[static_cast<std::size_t>(d)] = acc[static_cast<std::size_t>(d)] + mp_to_float(pv);
        }
        mx = mnew;
      }
      den = den + cr_exp(static_cast<float>(sink[static_cast<std::size_t>(h)]) - mx);
      for (std::int64_t d = 0; d < c; ++d) out(r * H + h, d) = round_bf16(acc[static_cast<std::size_t>(d)] / den);
    }
  }
  return out;
}

using test::bit_equal;

// A list per query mixing in-order valid entries, −1 holes and a second chunk.
IndexLists mixed_lists(std::int64_t rows, std::int64_t width, std::int64_t n_kv, std::uint64_t stream) {
  CounterRng rng(99, stream);
  IndexLists l(rows, width);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < width; ++j) {
      const auto u = rng.words(static_cast<std::uint64_t>(r * width + j));
      l.at(r, j) = (j > 0 && u[0] % 5 == 0) ? -1 : static_cast<std::int32_t>(u[1] % static_cast<std::uint32_t>(n_kv));
    }
  }
  return l;
}

struct Case {
  std::int64_t H = 3, c = 32, n_kv = 90, rows = 4, width = 150;
  Mat q, kv;
  std::vector<double> sink;
  IndexLists lists;
  double scale;
  explicit Case(double qscale = 1.0) {
    q = random_bf16(rows * H, c, 1, qscale);
    kv = random_bf16(n_kv, c, 2, 1.0);
    sink = {0.5, -1.25, 3.0};
    lists = mixed_lists(rows, width, n_kv, 3);
    scale = 1.0 / std::sqrt(static_cast<double>(c));
  }
};

TEST(SparseAttention, OfficialMatchesNaiveLoopBitForBit) {
  const Precision off(Mode::kOfficial);
  for (double qs : {0.5, 2.0, 6.0}) {
    Case k(qs);
    const Mat a = sparse_attention(off, k.q, k.H, k.kv, k.sink, k.lists, k.scale);
    const Mat b = naive_official(k.q, k.H, k.kv, k.sink, k.lists, k.scale);
    EXPECT_TRUE(bit_equal(a, b)) << "q scale " << qs;
    for (std::int64_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(static_cast<double>(round_bf16(a.data()[i])), a.data()[i]);  // bf16 output
    }
  }
}

TEST(SparseAttention, OfficialWithinDerivedBoundOfExact) {
  const Precision off(Mode::kOfficial), ex(Mode::kExact);
  for (double qs : {0.5, 2.0, 6.0}) {
    Case k(qs);
    const Mat a = sparse_attention(off, k.q, k.H, k.kv, k.sink, k.lists, k.scale);
    const Mat e = sparse_attention(ex, k.q, k.H, k.kv, k.sink, k.lists, k.scale);
    const Mat bnd = sparse_attention_official_bound(k.q, k.H, k.kv, k.sink, k.lists, k.scale);
    double worst = 0.0;
    for (std::int64_t i = 0; i < a.size(); ++i) {
      EXPECT_LE(std::abs(a.data()[i] - e.data()[i]), bnd.data()[i]) << i;
      worst = std::max(worst, std::abs(a.data()[i] - e.data()[i]) / bnd.data()[i]);
    }
    EXPECT_GT(worst, 0.01) << "the bound should not be vacuous";  // a real error reaches ≥ 1% of it
  }
}

TEST(SparseAttention, SinkToMinusInfinityIsPlainSoftmax) {
  const Precision ex(Mode::kExact);
  Case k;
  const std::vector<double> no_sink(3, -kInf);
  const Mat o = sparse_attention(ex, k.q, k.H, k.kv, no_sink, k.lists, k.scale);
  for (std::int64_t r = 0; r < k.rows; ++r) {
    for (std::int64_t h = 0; h < k.H; ++h) {
      std::vector<double> s;
      std::vector<std::int32_t> ids;
      for (std::int32_t i : k.lists.row(r)) {
        if (i == -1) continue;
        ids.push_back(i);
        s.push_back(k.scale * k.q.row(r * k.H + h).dot(k.kv.row(i)));
      }
      double den = 0.0;
      for (double v : s) den += std::exp(v);
      for (std::int64_t d = 0; d < k.c; ++d) {
        double num = 0.0;
        for (std::size_t j = 0; j < s.size(); ++j) num += std::exp(s[j]) * k.kv(ids[j], d);
        EXPECT_NEAR(o(r * k.H + h, d), num / den, 1e-13);
      }
    }
  }
  // official: the sink term vanishes (exp(−∞) = 0): same as the naive loop without sink
  const Precision off(Mode::kOfficial);
  EXPECT_TRUE(bit_equal(sparse_attention(off, k.q, k.H, k.kv, no_sink, k.lists, k.scale),
                        naive_official(k.q, k.H, k.kv, no_sink, k.lists, k.scale)));
}

TEST(SparseAttention, SinkTakesMassOutOfTheOutput) {
  // q = 0 → every logit 0; v = 1 everywhere; 3 valid entries; sink z: o = 3 / (3 + e^z).
  for (Mode mode : {Mode::kExact, Mode::kOfficial}) {
    const Precision p(mode);
    Mat q = Mat::Zero(2, 8);
    Mat kv = Mat::Ones(5, 8);
    IndexLists l(1, 5);
    l.data = {4, -1, 0, 2, -1};
    const std::vector<double> sink{0.0, std::log(3.0)};
    const Mat o = sparse_attention(p, q, 2, kv, sink, l, 0.125);
    for (std::int64_t d = 0; d < 8; ++d) {
      EXPECT_EQ(o(0, d), 0.75);                                         // z = 0: 3/4, exact in bf16
      EXPECT_NEAR(o(1, d), 0.5, mode == Mode::kExact ? 1e-15 : 0.004);  // z = ln 3: 1/2 (fp32 ln 3)
      EXPECT_LT(o(1, d), 1.0);
    }
  }
}

TEST(SparseAttention, MinusOneEntriesContributeNothing) {
  const Precision off(Mode::kOfficial), ex(Mode::kExact);
  Case k;
  // trailing −1 entries and whole −1 chunks leave the result bit-unchanged
  IndexLists longer(k.rows, k.width + 100);
  for (std::int64_t r = 0; r < k.rows; ++r) {
    for (std::int64_t j = 0; j < k.width; ++j) longer.at(r, j) = k.lists.at(r, j);
  }
  for (const Precision* p : {&off, &ex}) {
    EXPECT_TRUE(bit_equal(sparse_attention(*p, k.q, k.H, k.kv, k.sink, k.lists, k.scale),
                          sparse_attention(*p, k.q, k.H, k.kv, k.sink, longer, k.scale)));
  }
  // removing the −1 holes of a list that fits one chunk changes nothing either
  IndexLists holes(1, 10);
  holes.data = {3, -1, 7, -1, -1, 11, 2, -1, 5, -1};
  IndexLists dense(1, 5);
  dense.data = {3, 7, 11, 2, 5};
  const Mat q1 = k.q.topRows(k.H);
  for (const Precision* p : {&off, &ex}) {
    EXPECT_TRUE(bit_equal(sparse_attention(*p, q1, k.H, k.kv, k.sink, holes, k.scale),
                          sparse_attention(*p, q1, k.H, k.kv, k.sink, dense, k.scale)));
  }
}

TEST(SparseAttention, ChunkLayoutChangesOfficialRoundingWithinTwiceTheBound) {
  // The same entry set with the compressed part starting at list position 20 vs 64 (spec 02
  // §2.11.4): exact mode is unchanged, official mode may differ, never by more than 2B.
  const Precision off(Mode::kOfficial), ex(Mode::kExact);
  Case k(4.0);
  IndexLists a(k.rows, 20 + 30), b(k.rows, 64 + 30);
  for (std::int64_t r = 0; r < k.rows; ++r) {
    for (std::int64_t j = 0; j < 20; ++j) a.at(r, j) = b.at(r, j) = static_cast<std::int32_t>(j);
    for (std::int64_t j = 0; j < 30; ++j) {
      a.at(r, 20 + j) = b.at(r, 64 + j) = static_cast<std::int32_t>(40 + (j * 7 + r) % 50);
    }
  }
  EXPECT_TRUE(bit_equal(sparse_attention(ex, k.q, k.H, k.kv, k.sink, a, k.scale),
                        sparse_attention(ex, k.q, k.H, k.kv, k.sink, b, k.scale)));
  const Mat oa = sparse_attention(off, k.q, k.H, k.kv, k.sink, a, k.scale);
  const Mat ob = sparse_attention(off, k.q, k.H, k.kv, k.sink, b, k.scale);
  const Mat ba = sparse_attention_official_bound(k.q, k.H, k.kv, k.sink, a, k.scale);
  const Mat bb = sparse_attention_official_bound(k.q, k.H, k.kv, k.sink, b, k.scale);
  std::int64_t differ = 0;
  for (std::int64_t i = 0; i < oa.size(); ++i) {
    EXPECT_LE(std::abs(oa.data()[i] - ob.data()[i]), ba.data()[i] + bb.data()[i]);
    differ += oa.data()[i] != ob.data()[i];
  }
  EXPECT_GT(differ, 0) << "layouts in different chunks are expected to round differently somewhere";
}

TEST(SparseAttention, HeadsAreIndependent) {
  // The wrapper pads h < 16 with zero heads; every head is its own recurrence, so running a head
  // alone gives the same bits as running it with others.
  const Precision off(Mode::kOfficial);
  Case k;
  const Mat all = sparse_attention(off, k.q, k.H, k.kv, k.sink, k.lists, k.scale);
  for (std::int64_t h = 0; h < k.H; ++h) {
    Mat qh(k.rows, k.c);
    for (std::int64_t r = 0; r < k.rows; ++r) qh.row(r) = k.q.row(r * k.H + h);
    const std::vector<double> sh{k.sink[static_cast<std::size_t>(h)]};
    const Mat one = sparse_attention(off, qh, 1, k.kv, sh, k.lists, k.scale);
    for (std::int64_t r = 0; r < k.rows; ++r) EXPECT_TRUE(bit_equal(one.row(r), all.row(r * k.H + h)));
  }
}

TEST(SparseAttention, BadInput) {
  const Precision off(Mode::kOfficial);
  Case k;
  IndexLists first_chunk_empty(1, 70);
  first_chunk_empty.at(0, 65) = 3;
  EXPECT_THROW(sparse_attention(off, k.q.topRows(3), 3, k.kv, k.sink, first_chunk_empty, k.scale),
               std::invalid_argument);
  EXPECT_THROW(sparse_attention(off, k.q.topRows(3), 3, k.kv, k.sink, IndexLists(1, 0), k.scale),
               std::invalid_argument);
  IndexLists out_of_range(1, 2);
  out_of_range.data = {0, 90};
  EXPECT_THROW(sparse_attention(off, k.q.topRows(3), 3, k.kv, k.sink, out_of_range, k.scale), std::invalid_argument);
  out_of_range.data = {0, -2};
  EXPECT_THROW(sparse_attention(off, k.q.topRows(3), 3, k.kv, k.sink, out_of_range, k.scale), std::invalid_argument);
  EXPECT_THROW(sparse_attention(off, k.q, 2, k.kv, k.sink, k.lists, k.scale), std::invalid_argument);
  EXPECT_THROW(sparse_attention(off, k.q, 3, k.kv.leftCols(16), k.sink, k.lists, k.scale), std::invalid_argument);
  const std::vector<double> short_sink{0.0};
  try {
    sparse_attention(off, k.q, 3, k.kv, short_sink, k.lists, k.scale);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sink"), std::string::npos);
  }
}

}  // namespace
}  // namespace dsv4
