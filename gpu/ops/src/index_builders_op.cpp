// Registration of the index-list builders of sparse attention (spec 02 §2.8; official code
// get_window_topk_idxs ‖ get_compress_topk_idxs): per query the window part, then the HCA part —
// integer lists, −1 meaning "no entry".
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/gpu/index_builders.hpp"
#include "dsv4/model/index_builders.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// List entries travel as floats: exact below 2^24 (the op refuses calls whose entries could reach it).
constexpr std::int64_t kExactFloatInt = std::int64_t{1} << 24;

// ints {start_pos (0: prefill; p ≥ 1: decode at p, seqlen 1), seqlen s, window_size n_win,
// compress_ratio m (0: the window part alone — no compression, or CSA, whose compressed part is the
// indexer's), offset (the HCA entries', prefill s, decode n_win)}; input query [rows, 1] (per row:
// the query's index t in the call, an exact integer in [0, s); a decode row is a batch sequence,
// t = 0) → list [rows, W + C] (the entries as floats): W = min(s, n_win) (prefill) or n_win
// (decode), C = 0 (m = 0), ⌊s/m⌋ (prefill) or ⌊(p+1)/m⌋ (decode).
struct ListArgs {
  std::int64_t start_pos, seqlen, window, ratio, offset;
  std::vector<std::int64_t> queries;
  explicit ListArgs(const Call& c)
      : start_pos(c.ints.at(0)),
        seqlen(c.ints.at(1)),
        window(c.ints.at(2)),
        ratio(c.ints.at(3)),
        offset(c.ints.at(4)),
        queries(checked_integers(c.inputs.at(0))) {
    if (c.inputs.size() != 1 || c.inputs[0].cols != 1)
      throw std::invalid_argument("index_builders: query is [rows, 1]");
    if (start_pos < 0 || seqlen < 1 || (start_pos > 0 && seqlen != 1) || window < 1 || ratio < 0 || offset < 0) {
      throw std::invalid_argument(
          "index_builders: need start_pos ≥ 0, seqlen ≥ 1 (1 in decode), window ≥ 1, ratio ≥ 0, offset ≥ 0");
    }
    const std::int64_t top = std::max({seqlen, window, start_pos + 1}) + offset;
    if (top >= kExactFloatInt) throw std::invalid_argument("index_builders: list entries must stay below 2^24");
    for (const std::int64_t t : queries) {
      if (t < 0 || t >= seqlen) {
        throw std::invalid_argument("index_builders: query " + std::to_string(t) +
                                    " outside [0, seqlen = " + std::to_string(seqlen) + ")");
      }
    }
  }
};

// The reference's lists of the whole call (ref/model/src/index_builders.cpp, as Attention composes
// them: spec 02 §2.11.2 steps 2–4, §2.11.3 steps 2–3), then each row's query.
Outputs reference(const Call& c) {
  const ListArgs a(c);
  const bool prefill = a.start_pos == 0;
  IndexLists lists = prefill ? window_lists_prefill(a.seqlen, a.window) : window_lists_decode(a.start_pos, a.window);
  if (a.ratio > 0) {
    lists = concat_lists(lists, prefill ? hca_lists_prefill(a.seqlen, a.ratio, a.offset)
                                        : hca_lists_decode(a.start_pos, a.ratio, a.offset));
  }
  std::vector<float> out;
  out.reserve(a.queries.size() * static_cast<std::size_t>(lists.width));
  for (const std::int64_t t : a.queries) {
    for (const std::int32_t v : lists.row(t)) out.push_back(static_cast<float>(v));
  }
  return {Array::floats("list", static_cast<std::int64_t>(a.queries.size()), lists.width, std::move(out))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const ListArgs a(c);
  gpu::IndexListsShape s;
  s.start_pos = a.start_pos;
  s.seqlen = a.seqlen;
  s.window = a.window;
  s.ratio = a.ratio;
  s.offset = a.offset;
  const std::vector<std::int32_t> q(a.queries.begin(), a.queries.end());
  const std::int64_t rows = static_cast<std::int64_t>(q.size());
  const std::vector<std::int32_t> lists = gpu::index_lists(q.data(), rows, s);
  return {Array::floats("list", rows, gpu::index_lists_width(s), std::vector<float>(lists.begin(), lists.end()))};
}
#endif

struct Spec {
  std::int64_t start_pos, seqlen, window, ratio, rows;
};

// The query rows of a case: prefill — the edges of the builders (t = 0, the window's first full
// row n_win − 1 and its neighbours, the last query, the ratio's block ends m·i − 1 and starts m·i),
// then queries drawn by the seed; decode — every row t = 0 (the batch's sequences share start_pos).
std::vector<float> query_rows(const Spec& s, std::uint64_t seed) {
  std::vector<float> q;
  if (s.start_pos > 0) return std::vector<float>(static_cast<std::size_t>(s.rows), 0.0f);
  const CounterRng rng(seed, stream_id("ops.index_builders.queries"));
  std::vector<std::int64_t> edges = {0, s.window - 2, s.window - 1, s.window, s.seqlen - 1};
  if (s.ratio > 0) {
    for (std::int64_t i = 1; i <= 3; ++i) edges.insert(edges.end(), {s.ratio * i - 1, s.ratio * i});
  }
  for (std::size_t i = 0; static_cast<std::int64_t>(q.size()) < s.rows; ++i) {
    const std::int64_t t =
        i < edges.size() ? edges[i] : static_cast<std::int64_t>(rng.words(i)[0] % static_cast<std::uint64_t>(s.seqlen));
    if (t >= 0 && t < s.seqlen) q.push_back(static_cast<float>(t));
  }
  // The seed's order of the rows too (the edges anywhere in the batch).
  for (std::size_t i = q.size() - 1; i > 0; --i) {
    std::swap(q[i], q[static_cast<std::size_t>(rng.words((std::uint64_t{1} << 40) + i)[0] % (i + 1))]);
  }
  return q;
}

std::vector<Case> index_builders_cases(std::uint64_t seed) {
  // Prefill and decode, at ratio 4 and 128 and window only (m = 0: no compression, or CSA); V4's
  // window 128; lengths shorter than the window (s = 10 < 16: width s), than the ratio (s = 100 <
  // 128: no compressed entry); decode before the ring wraps (p < n_win − 1), at its first wrap
  // p = n_win − 1 (ρ = n_win − 1: the list in slot order), after it (ρ inside the ring), with
  // ⌊(p+1)/m⌋ = 0, 1 and many compressed entries; a V4-Flash prefill of 4,096 tokens.
  const std::vector<Spec> specs = {{0, 40, 16, 4, 40},     {0, 300, 128, 128, 64}, {0, 10, 16, 4, 10},
                                   {0, 100, 128, 128, 24}, {0, 50, 16, 0, 30},     {0, 4096, 128, 4, 48},
                                   {5, 1, 16, 4, 3},       {15, 1, 16, 128, 2},    {127, 1, 128, 128, 2},
                                   {1000, 1, 128, 128, 3}, {4095, 1, 128, 4, 2},   {77, 1, 16, 0, 4}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    Case c;
    const bool prefill = s.start_pos == 0;
    c.label = (prefill ? "prefill s " + std::to_string(s.seqlen) : "decode p " + std::to_string(s.start_pos)) +
              ", window " + std::to_string(s.window) +
              (s.ratio > 0 ? ", ratio " + std::to_string(s.ratio) : ", window only") + ", " + std::to_string(s.rows) +
              (prefill ? " queries" : " sequences");
    c.call.ints = {s.start_pos, s.seqlen, s.window, s.ratio, prefill ? s.seqlen : s.window};
    c.call.inputs = {Array::floats("query", s.rows, 1, query_rows(s, seed * 1000 + 400 + k))};
    return c;
  });
}

}  // namespace

Op index_builders_op() {
  return registration("index_builders", "spec 02 §2.8",
                      "sparse attention's index lists: window part (prefill, decode ring) ‖ HCA compressed part",
                      {"start_pos", "seqlen", "window_size", "compress_ratio", "offset"}, {}, reference,
                      DSV4_OPS_DEVICE(device), index_builders_cases);
}

}  // namespace dsv4::ops::detail
