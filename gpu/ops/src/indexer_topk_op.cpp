// Registration of the Lightning Indexer's scores and top-k (spec 02 §2.7 steps 4–7): per query row
// and visible entry τ, I = bf16(Σ_h bf16(fl(max(bf16(q_h·K_τ), 0)·ω_h))) (C1 sums), −∞ beyond the
// row's visible entries; the k = min(index_topk, entries) best by the C4 order (descending, ties by
// ascending index) as list entries τ + offset (−1 for a masked entry the top-k reached).
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/gpu/indexer_topk.hpp"
#include "dsv4/model/indexer.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {heads n_I, index_topk, offset}; inputs q [rows, n_I·c_I] (a query's heads, FP4-simulated
// values as fp32), weights [rows, n_I] (ω, bf16 values), visible [rows, 1] (entries the row sees:
// prefill ⌊(t+1)/4⌋, decode every entry) and the shared cache [entries, c_I] → scores [rows,
// entries] (bf16 values, −∞ masked) and list [rows, k] (the list entries as floats).
struct IndexerArgs {
  std::int64_t heads, topk, offset, entries, head_dim, k;
  const Array& q;
  const Array& w;
  const Array& cache;
  std::vector<std::int64_t> visible;
  explicit IndexerArgs(const Call& c)
      : heads(c.ints.at(0)),
        topk(c.ints.at(1)),
        offset(c.ints.at(2)),
        entries(c.inputs.at(3).rows),
        head_dim(c.inputs.at(3).cols),
        k(std::min(topk, entries)),
        q(c.inputs.at(0)),
        w(c.inputs.at(1)),
        cache(c.inputs.at(3)),
        visible(checked_integers(c.inputs.at(2))) {
    if (heads < 1 || topk < 1 || offset < 0 || q.cols != heads * head_dim || w.cols != heads || w.rows != q.rows ||
        c.inputs.at(2).cols != 1 || c.inputs.at(2).rows != q.rows) {
      throw std::invalid_argument(
          "indexer_topk: need q [rows, heads·c_I], weights [rows, heads], visible [rows, 1], cache [entries, c_I], "
          "heads, index_topk ≥ 1, offset ≥ 0");
    }
  }
  std::vector<std::int32_t> visible32() const { return {visible.begin(), visible.end()}; }
};

Outputs reference(const Call& c) {
  const IndexerArgs a(c);
  std::vector<float> scores, list;
  for (std::int64_t r = 0; r < a.q.rows; ++r) {
    const IndexerRowSelection s =
        indexer_select_official(a.q.f32.data() + r * a.q.cols, a.w.f32.data() + r * a.heads, a.cache.f32.data(),
                                a.entries, a.heads, a.head_dim, a.visible[static_cast<std::size_t>(r)], a.k, a.offset);
    for (const double v : s.scores) scores.push_back(static_cast<float>(v));
    for (const std::int32_t v : s.list) list.push_back(static_cast<float>(v));
  }
  return {Array::floats("scores", a.q.rows, a.entries, std::move(scores)),
          Array::floats("list", a.q.rows, a.k, std::move(list))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const IndexerArgs a(c);
  gpu::IndexerTopkShape shape;
  shape.rows = a.q.rows;
  shape.entries = a.entries;
  shape.heads = a.heads;
  shape.head_dim = a.head_dim;
  shape.k = a.k;
  shape.offset = a.offset;
  const std::vector<std::int32_t> vis = a.visible32();
  gpu::IndexerTopkBatch r = gpu::indexer_topk(a.q.f32.data(), a.w.f32.data(), vis.data(), a.cache.f32.data(), shape);
  return {Array::floats("scores", a.q.rows, a.entries, std::move(r.scores)),
          Array::floats("list", a.q.rows, a.k, std::vector<float>(r.list.begin(), r.list.end()))};
}
#endif

// How a case's values are drawn.
enum class Values : std::uint8_t {
  kFp4,      // the model's: e2m1 codes × a power-of-two scale per 32 dims (q and cache), many ties
  kTies,     // kFp4 on a narrow grid with cache rows repeated: equal scores everywhere
  kNormal,   // arbitrary fp32 N(0, 1): every C1 rounding inexact
  kOutliers  // kFp4 with scales up to 2^30, zero heads and zero cache rows, ω with zeros and tiny values
};

// n values in blocks of 32 of e2m1 codes (±{0, 0.5, 1, 1.5, 2, 3, 4, 6}) × 2^e, e in [e_lo, e_hi]
// per block; `zero_blocks` in 1000 blocks all zero.
std::vector<float> fp4_values(std::int64_t n, int e_lo, int e_hi, int zero_blocks, std::uint64_t seed,
                              const char* stream) {
  static constexpr double kE2m1[8] = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};
  const CounterRng rng(seed, stream_id(stream));
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto b = rng.words(i / 32 + (std::uint64_t{1} << 40));
    const auto x = rng.words(i);
    const int e = e_lo + static_cast<int>(b[0] % static_cast<std::uint32_t>(e_hi - e_lo + 1));
    const double sign = (x[1] & 1u) != 0 ? -1.0 : 1.0;
    v[i] = b[1] % 1000 < static_cast<std::uint32_t>(zero_blocks)
               ? 0.0f
               : static_cast<float>(sign * std::ldexp(kE2m1[x[0] % 8], e));
  }
  return v;
}

struct Spec {
  std::int64_t rows, entries, heads, head_dim, topk, offset;
  Values values;
  bool causal;  // visible = min(⌊(t+1)/4⌋, entries) for row t (prefill); else random (kTies) or all
};

Case make_case(const Spec& s, std::uint64_t seed) {
  const std::int64_t nq = s.rows * s.heads * s.head_dim, nc = s.entries * s.head_dim;
  std::vector<float> q, cache, w = bf16_normals(s.rows * s.heads, 0.1, seed, "ops.indexer_topk.w");
  switch (s.values) {
    case Values::kFp4:
      q = fp4_values(nq, -4, 2, 20, seed, "ops.indexer_topk.q");
      cache = fp4_values(nc, -4, 2, 20, seed, "ops.indexer_topk.cache");
      break;
    case Values::kTies:
      q = fp4_values(nq, -1, 0, 50, seed, "ops.indexer_topk.q");
      cache = fp4_values(nc, -1, 0, 50, seed, "ops.indexer_topk.cache");
      for (std::int64_t r = 1; r < s.entries; r += 3) {  // every third row repeats the row before
        std::copy_n(cache.begin() + (r - 1) * s.head_dim, s.head_dim, cache.begin() + r * s.head_dim);
      }
      for (float& x : w) x = x < 0.0f ? -0.0625f : 0.0625f;  // ω = ±2^-4: equal products
      break;
    case Values::kNormal:
      q = normals(nq, 1.0, seed, "ops.indexer_topk.q");
      cache = normals(nc, 1.0, seed, "ops.indexer_topk.cache");
      break;
    case Values::kOutliers: {
      q = fp4_values(nq, -20, 30, 100, seed, "ops.indexer_topk.q");
      cache = fp4_values(nc, -20, 30, 100, seed, "ops.indexer_topk.cache");
      const CounterRng rng(seed, stream_id("ops.indexer_topk.w.edges"));
      for (std::size_t i = 0; i < w.size(); ++i) {
        const auto x = rng.words(i);
        if (x[0] % 5 == 0) w[i] = (x[1] & 1u) != 0 ? -0.0f : 0.0f;
        if (x[0] % 5 == 1) w[i] = round_bf16(std::ldexp(1.0 + (x[1] % 8) / 8.0, -125 - static_cast<int>(x[2] % 8)));
      }
      for (std::int64_t r = 2; r < s.entries; r += 7) std::fill_n(cache.begin() + r * s.head_dim, s.head_dim, 0.0f);
      break;
    }
  }
  std::vector<float> visible(static_cast<std::size_t>(s.rows));
  const CounterRng rng(seed, stream_id("ops.indexer_topk.visible"));
  for (std::size_t t = 0; t < visible.size(); ++t) {
    const std::int64_t v = s.causal ? std::min<std::int64_t>((static_cast<std::int64_t>(t) + 1) / 4, s.entries)
                           : s.values == Values::kTies ? static_cast<std::int64_t>(rng.words(t)[0] % (s.entries + 1))
                                                       : s.entries;
    visible[t] = static_cast<float>(v);
  }
  Case c;
  static const char* const kValues[] = {"fp4 grid", "ties (repeated cache rows, equal ω)", "fp32 normals",
                                        "outliers, zero heads and rows, tiny ω"};
  c.label = std::to_string(s.rows) + " rows × " + std::to_string(s.entries) + " entries, " + std::to_string(s.heads) +
            " heads × " + std::to_string(s.head_dim) + ", top " + std::to_string(s.topk) +
            (s.topk > s.entries ? " (> entries)" : "") + ", " + kValues[static_cast<int>(s.values)] +
            (s.causal ? ", causal mask" : (s.values == Values::kTies ? ", random visible counts" : ", decode"));
  c.call.ints = {s.heads, s.topk, s.offset};
  Array cache_a = Array::floats("cache", s.entries, s.head_dim, std::move(cache));
  cache_a.per_row = false;
  c.call.inputs = {Array::floats("q", s.rows, s.heads * s.head_dim, std::move(q)),
                   Array::floats("weights", s.rows, s.heads, std::move(w)),
                   Array::floats("visible", s.rows, 1, std::move(visible)), std::move(cache_a)};
  return c;
}

std::vector<Case> indexer_topk_cases(std::uint64_t seed) {
  // V4's n_I 64 × c_I 128 in decode (a real cut: top 128 of 160, offset = the window 128); a
  // prefill's causal mask (rows see 0..40 entries: fewer than k, none); ties; fp32 values; outliers
  // with index_topk beyond the entries.
  const std::vector<Spec> specs = {
      {4, 160, 64, 128, 128, 128, Values::kFp4, false}, {168, 40, 8, 128, 16, 168, Values::kFp4, true},
      {24, 96, 4, 64, 24, 0, Values::kTies, false},     {9, 64, 16, 128, 32, 128, Values::kNormal, false},
      {12, 50, 8, 32, 64, 7, Values::kOutliers, false},
  };
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) { return make_case(s, seed * 1000 + 980 + k); });
}

}  // namespace

Op indexer_topk_op() {
  return registration("indexer_topk", "spec 02 §2.7",
                      "indexer scores I = bf16(C1 Σ_h bf16(relu(bf16(q_h·K))·ω_h)), masked beyond visible, then the "
                      "C4 top-k as list entries",
                      {"heads", "index_topk", "offset"}, {}, reference, DSV4_OPS_DEVICE(device), indexer_topk_cases);
}

}  // namespace dsv4::ops::detail
