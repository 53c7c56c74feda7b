// Properties of KV compression (spec 02 §2.6 compressor, §2.8 index lists, §2.11 caches;
// ref/model compressor.hpp, index_builders.hpp, attention.hpp; ref/cache kv_cache.hpp):
// compressed lengths, the overlap semantics of ratio 4, decode ≡ prefill bit for bit, cache sizes,
// causality of the indexer's selection and of the window lists.
//
// Compressor shapes are small (d = 32; main D = 72 with r_d = 8, one FP8 block of nope dims;
// indexer D = 32, one FP4 block) so many cases run in the default budget; the attention-level
// properties use the built-in tiny config (4 heads, max_seq_len 160).
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "../tests/support/small_configs.hpp"
#include "dsv4/cache/kv_cache.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/model/attention.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {
namespace {

using testing_support::compressor_kinds::kDim;
using testing_support::compressor_kinds::kMaxSeq;
using testing_support::compressor_kinds::spec_of;

const Compressor& compressor(Mode mode, int kind) {
  static std::map<std::pair<int, int>, std::unique_ptr<Compressor>> cache;
  auto& slot = cache[{static_cast<int>(mode), kind}];
  if (!slot) {
    const CompressorSpec s = spec_of(kind);
    slot = std::make_unique<Compressor>(Precision(mode), s, CompressorWeights::synthetic(s, 5));
  }
  return *slot;
}

// n tokens: bf16(N(0, 1)) (the attention input is the bf16 attn_norm output).
Mat gen_tokens(std::int64_t n, std::int64_t dim) {
  const std::uint64_t seed = *rc::gen::arbitrary<std::uint64_t>();
  const CounterRng rng(seed, stream_id("compressor_props.x"));
  Mat x(n, dim);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = round_bf16(rng.normal(static_cast<std::uint64_t>(i)));
  return x;
}

bool same_rows(const Mat& a, std::int64_t ra, const Mat& b, std::int64_t rb) {
  if (a.cols() != b.cols()) return false;
  for (Eigen::Index c = 0; c < a.cols(); ++c) {
    if (double_bits(a(ra, c)) != double_bits(b(rb, c))) return false;
  }
  return true;
}

// spec 02 §2.6.4/§2.6.5: a prefill of n tokens returns entries 0..⌊n/m⌋−1; then decode at p returns
// entry ⌊p/m⌋ exactly when (p + 1) mod m = 0, so after N tokens ⌊N/m⌋ entries exist.
void compressed_length() {
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const int kind = *rc::gen::inRange(0, 3);
  const Compressor& comp = compressor(mode, kind);
  const std::int64_t m = comp.spec().ratio;
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(1, 300);
  const std::int64_t more = *rc::gen::inRange<std::int64_t>(0, std::min<std::int64_t>(140, kMaxSeq - n));
  const Mat x = gen_tokens(n + more, kDim);
  CompressorState st = comp.initial_state();
  const CompressedEntries pre = comp.prefill(x.topRows(n), st);
  RC_ASSERT(pre.count() == n / m);
  RC_ASSERT(pre.first == 0);
  RC_ASSERT(st.next_pos == n);
  std::int64_t total = pre.count();
  for (std::int64_t p = n; p < n + more; ++p) {
    const CompressedEntries d = comp.decode(x.middleRows(p, 1), p, st);
    RC_ASSERT(d.count() == ((p + 1) % m == 0 ? 1 : 0));
    if (d.count() == 1) RC_ASSERT(d.first == p / m);
    total += d.count();
  }
  RC_ASSERT(total == (n + more) / m);
}

// spec 02 §2.6.2, ratio 4: entry i pools 8 slots per channel δ — slots 0..3 the tokens of block i−1
// with first-half channel δ (padding u = 0, z̃ = −∞ for i = 0), slots 4..7 the tokens of block i with
// second-half channel D + δ. Built here from the projections and pooled/post-processed with the
// compressor's own pool/postprocess, the entry equals the prefill entry bit for bit (exact mode:
// unless the prefill's certification re-decided an element to a different value, reported as
// decisions.flipped); and an entry never changes when a token outside 4(i−1)..4i+3 changes.
void overlap_semantics() {
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const int kind = *rc::gen::element(0, 2);
  const Compressor& comp = compressor(mode, kind);
  const std::int64_t m = 4, dd = comp.spec().head_dim;
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(4, 64);
  const Mat x = gen_tokens(n, kDim);
  CompressorState st = comp.initial_state();
  const CompressedEntries pre = comp.prefill(x, st);
  const CompressorProjections pr = comp.project(x, 0);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < n / m; ++i) {
    Mat u(2 * m, dd), z(2 * m, dd);
    for (std::int64_t s = 0; s < 2 * m; ++s) {
      const std::int64_t t = s < m ? m * (i - 1) + s : m * i + (s - m);
      const std::int64_t c0 = s < m ? 0 : dd;
      if (t < 0) {
        u.row(s).setZero();
        z.row(s).setConstant(neg_inf);
      } else {
        u.row(s) = pr.u.row(t).segment(c0, dd);
        z.row(s) = pr.z_tilde.row(t).segment(c0, dd);
      }
    }
    const CompressedEntries e = comp.postprocess(comp.pool(u, z), i);
    RC_ASSERT(e.count() == 1);
    if (pre.decisions.flipped == 0) RC_ASSERT(same_rows(e.entries, 0, pre.entries, i));
    // The pool input the certification uses is the same slot assignment.
    const CompressorPoolInput in = prefill_pool_input(comp.spec(), x, i);
    for (std::int64_t s = 0; s < 2 * m; ++s) {
      const std::int64_t t = s < m ? m * (i - 1) + s : m * i + (s - m);
      RC_ASSERT((in.valid[static_cast<std::size_t>(s)] != 0) == (t >= 0));
      if (t >= 0) RC_ASSERT(same_rows(in.x, s, x, t));
    }
  }
  // Dependence window: change one token; entries whose window excludes it are unchanged.
  const std::int64_t t = *rc::gen::inRange<std::int64_t>(0, n);
  Mat y = x;
  y.row(t) = gen_tokens(1, kDim).row(0);
  CompressorState st2 = comp.initial_state();
  const CompressedEntries post = comp.prefill(y, st2);
  for (std::int64_t i = 0; i < n / m; ++i) {
    if (t < m * (i - 1) || t > m * i + m - 1) RC_ASSERT(same_rows(post.entries, i, pre.entries, i));
  }
}

// spec 02 §2.6.5: prefill of n tokens then decode to N gives the entries of a prefill of N, bit for bit,
// in both modes (the same (u, z̃) pooled by the same operations; C1 in official mode).
void decode_equals_prefill() {
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const int kind = *rc::gen::inRange(0, 3);
  const Compressor& comp = compressor(mode, kind);
  const std::int64_t m = comp.spec().ratio;
  const std::int64_t total = *rc::gen::inRange<std::int64_t>(1, m == 4 ? 80 : 300);
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(1, total + 1);
  const Mat x = gen_tokens(total, kDim);
  CompressorState ref_st = comp.initial_state();
  const CompressedEntries ref = comp.prefill(x, ref_st);
  CompressorState st = comp.initial_state();
  const CompressedEntries pre = comp.prefill(x.topRows(n), st);
  for (std::int64_t i = 0; i < pre.count(); ++i) RC_ASSERT(same_rows(pre.entries, i, ref.entries, i));
  for (std::int64_t p = n; p < total; ++p) {
    const CompressedEntries d = comp.decode(x.middleRows(p, 1), p, st);
    if (d.count() == 1) RC_ASSERT(same_rows(d.entries, 0, ref.entries, d.first));
  }
}

// ---------------------------------------------------------------------------------------------
// Attention level (tiny: layer 0 SWA, 1 HCA-128, 2 CSA-4; window 16).
using testing_support::small_tiny;

const Attention& attention(Mode mode, std::int64_t layer) { return testing_support::small_tiny_attention(mode, layer); }

// Cache sizes: for every layer (MTP included) and any context T, the reference's per-sequence state
// (Attention::allocate_state) has window + ⌊T/m⌋ main rows, ⌊T/4⌋ indexer rows (CSA), κm × κc
// compressor state — equal to the layout of ref/cache (the one dsv4 cost prices) and to the KVCache
// tensors; a prefill of n tokens then fills exactly ⌊n/m⌋ compressed rows (and ⌊n/4⌋ indexer rows).
void cache_sizes() {
  ModelConfig cfg = builtin_config("tiny");
  cfg.max_seq_len = *rc::gen::inRange<std::int64_t>(1, 5000);
  const std::int64_t t = cfg.max_seq_len;
  const cache::KVCache kv(cfg, t, 1, true);
  for (std::int64_t l = 0; l < cfg.n_layers + cfg.n_mtp_layers; ++l) {
    const std::int64_t m = cfg.compress_ratio(l);
    const AttentionState st = Attention::allocate_state(cfg, l);
    const cache::LayerCacheLayout lay = cache::layer_layout(cfg, l, t);
    RC_ASSERT(st.window.rows() == cfg.window_size);
    RC_ASSERT(st.window.cols() == cfg.head_dim);
    RC_ASSERT(st.compressed.rows() == (m > 0 ? t / m : 0));
    RC_ASSERT(lay.kv_rows() == cfg.window_size + (m > 0 ? t / m : 0));
    const std::vector<std::int64_t> want{1, lay.kv_rows(), cfg.head_dim};
    RC_ASSERT(kv.kv(l).shape() == want);
    RC_ASSERT(st.indexer.cache.rows() == (m == 4 ? t / 4 : 0));
    RC_ASSERT(lay.indexer_rows == st.indexer.cache.rows());
    const std::int64_t kappa = m == 4 ? 2 : 1;
    RC_ASSERT(st.compressor.kv.rows() == (m > 0 ? kappa * m : 0));
    RC_ASSERT(lay.state_rows == st.compressor.kv.rows());
    if (m > 0) RC_ASSERT(st.compressor.kv.cols() == kappa * cfg.head_dim);
    if (m > 0) RC_ASSERT(lay.state_cols == st.compressor.kv.cols());
  }
  // Filled rows after a prefill (small config, both compressed kinds).
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const std::int64_t layer = *rc::gen::element<std::int64_t>(1, 2);
  const Attention& attn = attention(mode, layer);
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(1, layer == 1 ? 160 : 40);
  AttentionState st = attn.initial_state();
  const AttentionOutput o = attn.prefill(gen_tokens(n, small_tiny().dim), st);
  RC_ASSERT(st.n_compressed == n / attn.ratio());
  RC_ASSERT(o.compressed.count() == n / attn.ratio());
  if (layer == 2) RC_ASSERT(st.indexer.entries == n / 4);
}

// The compressed part of every list never addresses an entry whose block ends after the query
// (spec 02 §2.8.4: entry i visible to t iff 4(i+1) − 1 ≤ t): CSA (indexer top-k) and HCA lists, in
// prefill (offset s) and in decode (offset n_win), for the attention lists and the indexer's own.
void compressed_selection_causal() {
  const Mode mode = *rc::gen::element(Mode::kExact, Mode::kOfficial);
  const std::int64_t layer = *rc::gen::element<std::int64_t>(1, 2);
  const Attention& attn = attention(mode, layer);
  const ModelConfig cfg = small_tiny();
  const std::int64_t m = attn.ratio(), win = cfg.window_size;
  const std::int64_t n = *rc::gen::inRange<std::int64_t>(1, layer == 1 ? 150 : 48);
  const std::int64_t steps = *rc::gen::inRange<std::int64_t>(0, std::min<std::int64_t>(6, cfg.max_seq_len - n) + 1);
  const Mat x = gen_tokens(n + steps, cfg.dim);
  AttentionState st = attn.initial_state();
  const AttentionOutput o = attn.prefill(x.topRows(n), st);
  const std::int64_t w = std::min(n, win);
  auto check = [&](const IndexLists& l, std::int64_t row, std::int64_t first_col, std::int64_t offset,
                   std::int64_t pos) {
    for (std::int64_t j = first_col; j < l.width; ++j) {
      const std::int32_t idx = l.at(row, j);
      if (idx == -1) continue;
      const std::int64_t entry = idx - offset;
      RC_ASSERT(entry >= 0);
      RC_ASSERT(m * (entry + 1) - 1 <= pos);
      RC_ASSERT(compressed_entry_visible(entry, pos, m));
    }
  };
  for (std::int64_t t = 0; t < n; ++t) {
    check(o.lists, t, w, n, t);
    if (o.indexer) check(o.indexer->lists, t, 0, n, t);
  }
  for (std::int64_t p = n; p < n + steps; ++p) {
    const AttentionOutput d = attn.decode(x.middleRows(p, 1), p, st);
    check(d.lists, 0, win, win, p);
    if (d.indexer) check(d.indexer->lists, 0, 0, win, p);
  }
}

// Window lists (spec 02 §2.8.1) are causal and complete: prefill row t holds exactly the positions
// max(0, t − n_win + 1)..t, increasing, width min(s, n_win); decode at p holds the ring slots of exactly
// the positions max(0, p − n_win + 1)..p, oldest → newest (slot = position mod n_win). HCA lists hold
// exactly the visible entries 0..⌊(t+1)/m⌋ − 1 (+ offset), increasing.
void window_lists_causal_complete() {
  const std::int64_t win = *rc::gen::inRange<std::int64_t>(1, 150);
  const std::int64_t s = *rc::gen::inRange<std::int64_t>(1, 300);
  const IndexLists pre = window_lists_prefill(s, win);
  RC_ASSERT(pre.rows == s);
  RC_ASSERT(pre.width == std::min(s, win));
  for (std::int64_t t = 0; t < s; ++t) {
    std::vector<std::int64_t> got;
    for (std::int32_t i : pre.row(t)) {
      if (i != -1) got.push_back(i);
    }
    std::vector<std::int64_t> want;
    for (std::int64_t q = std::max<std::int64_t>(0, t - win + 1); q <= t; ++q) want.push_back(q);
    RC_ASSERT(got == want);
  }
  const std::int64_t p = *rc::gen::inRange<std::int64_t>(1, 1000);
  const IndexLists dec = window_lists_decode(p, win);
  RC_ASSERT(dec.width == win);
  std::vector<std::int64_t> got;
  for (std::int32_t slot : dec.row(0)) {
    if (slot == -1) continue;
    RC_ASSERT(slot >= 0 && slot < win);
    // the position held by the slot: the latest q ≤ p with q ≡ slot (mod n_win)
    got.push_back(p - ((p - slot) % win + win) % win);
  }
  std::vector<std::int64_t> want;
  for (std::int64_t q = std::max<std::int64_t>(0, p - win + 1); q <= p; ++q) want.push_back(q);
  RC_ASSERT(got == want);
  const std::int64_t m = *rc::gen::element<std::int64_t>(4, 128);
  const IndexLists hca = hca_lists_prefill(s, m, s);
  for (std::int64_t t = 0; t < s; ++t) {
    std::vector<std::int64_t> e;
    for (std::int32_t i : hca.row(t)) {
      if (i != -1) e.push_back(i - s);
    }
    std::vector<std::int64_t> vis;
    for (std::int64_t i = 0; i < visible_compressed_entries(t, m); ++i) vis.push_back(i);
    RC_ASSERT(e == vis);
  }
  const IndexLists hd = hca_lists_decode(p, m, win);
  std::vector<std::int64_t> e;
  for (std::int32_t i : hd.row(0)) {
    if (i != -1) e.push_back(i - win);
  }
  std::vector<std::int64_t> vis;
  for (std::int64_t i = 0; i < (p + 1) / m; ++i) vis.push_back(i);
  RC_ASSERT(e == vis);
}

}  // namespace

void register_compressor_properties(Registry& r) {
  r.add_rc(
      "compressor.compressed_length", "compressor",
      "prefill of n gives floor(n/m) entries, decode adds entry floor(p/m) exactly at (p+1) mod m = 0 (m = 4, 128)", 60,
      compressed_length);
  r.add_rc("compressor.overlap_semantics", "compressor",
           "ratio-4 entry i pools block i-1 (first-half channels, padded at i = 0) and block i (second half) only", 60,
           overlap_semantics);
  r.add_rc("compressor.decode_equals_prefill", "compressor",
           "prefill n then decode to N gives the entries of a prefill of N bit for bit (both modes)", 60,
           decode_equals_prefill);
  r.add_rc(
      "compressor.cache_sizes", "compressor",
      "per layer: window + floor(T/m) kv rows, floor(T/4) indexer rows, as the cache layout; prefill fills floor(n/m)",
      20, cache_sizes);
  r.add_rc("compressor.selection_causal", "compressor",
           "no CSA (indexer) or HCA list entry addresses a block ending after the query (prefill and decode)", 20,
           compressed_selection_causal);
  r.add_rc(
      "compressor.window_lists_causal_complete", "compressor",
      "window lists hold exactly the last n_win positions up to the query, in order; HCA lists every visible entry",
      200, window_lists_causal_complete);
}

}  // namespace dsv4::props
