// spec 05 §5.2 (official code `Block.forward`).
#include "dsv4/model/block.hpp"

#include <stdexcept>
#include <string>
#include <utility>

#include "dsv4/model/block_record.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/model/synthetic_weights.hpp"

namespace dsv4 {

namespace {

void check_norm(const char* field, const Vec& w, std::int64_t d) {
  if (w.size() != d) {
    throw std::invalid_argument(std::string("block: ") + field + ": " + std::to_string(w.size()) +
                                " entries, expected dim = " + std::to_string(d));
  }
}

std::uint64_t layer_seed(std::uint64_t seed, std::int64_t layer) {
  return seed * 0xD1B54A32D192ED03ULL + static_cast<std::uint64_t>(layer) + 1;
}

}  // namespace

BlockWeights BlockWeights::synthetic(const ModelConfig& c, std::int64_t layer, std::uint64_t seed) {
  const std::uint64_t ls = layer_seed(seed, layer);
  BlockWeights w;
  w.hc_attn = HcWeights::synthetic(c, ls ^ 0xA77AULL);
  w.attn_norm = synthetic_norm_weight(ls, "attn_norm", c.dim);
  w.attn = AttentionWeights::synthetic(c, layer, seed);
  w.hc_ffn = HcWeights::synthetic(c, ls ^ 0xFF0FULL);
  w.ffn_norm = synthetic_norm_weight(ls, "ffn_norm", c.dim);
  w.ffn = MoeWeights::synthetic(c, layer, seed);
  return w;
}

Block::Block(Precision prec, const ModelConfig& cfg, std::int64_t layer, BlockWeights weights)
    : prec_(prec),
      cfg_(cfg),
      layer_(layer),
      hc_attn_(std::move(weights.hc_attn)),
      hc_ffn_(std::move(weights.hc_ffn)),
      attn_norm_(std::move(weights.attn_norm)),
      ffn_norm_(std::move(weights.ffn_norm)),
      attn_(prec, cfg, layer, std::move(weights.attn)),
      ffn_(prec, cfg, layer, std::move(weights.ffn)) {
  check_norm("attn_norm", attn_norm_, cfg.dim);
  check_norm("ffn_norm", ffn_norm_, cfg.dim);
}

// spec 05 §5.2 steps 1–6.
BlockOutput Block::forward(const Mat& x, const std::vector<std::int64_t>& token_ids, std::int64_t start_pos,
                           AttentionState& st) const {
  if (x.cols() != cfg_.hc_mult * cfg_.dim)
    throw std::invalid_argument("block: x has " + std::to_string(x.cols()) + " columns, expected hc_mult·dim");
  if (static_cast<std::int64_t>(token_ids.size()) != x.rows())
    throw std::invalid_argument("block: token_ids: one id per row of x expected");
  BlockOutput o;
  o.hc_attn = hc_pre(prec_, cfg_, x, hc_attn_);
  o.attn_norm = rmsnorm(prec_, o.hc_attn.y, attn_norm_, cfg_.norm_eps);
  o.attn = start_pos == 0 ? attn_.prefill(o.attn_norm, st) : attn_.decode(o.attn_norm, start_pos, st);
  o.x_mid = hc_post(prec_, cfg_, o.attn.out, x, o.hc_attn.post, o.hc_attn.comb);
  o.hc_ffn = hc_pre(prec_, cfg_, o.x_mid, hc_ffn_);
  o.ffn_norm = rmsnorm(prec_, o.hc_ffn.y, ffn_norm_, cfg_.norm_eps);
  o.ffn = ffn_.forward(o.ffn_norm, token_ids);
  o.x_out = hc_post(prec_, cfg_, o.ffn.out, o.x_mid, o.hc_ffn.post, o.hc_ffn.comb);
  return o;
}

namespace {

// One matrix per sequence of `batch`, got from each element.
template <class T, class Get>
void record_field(Recorder* rec, const std::string& name, const std::vector<const T*>& batch, Get get) {
  std::vector<Mat> v;
  v.reserve(batch.size());
  for (const T* b : batch) v.push_back(get(*b));
  record_batch(rec, name, v);
}

// Margins as a table [rows, 4]: k-th score, best unselected score, gap, error bound (spec:
// ref/README.md §Margins; +∞ gap where no cut exists).
template <class M>
Mat margin_table(const std::vector<M>& margins) {
  Mat t(static_cast<std::int64_t>(margins.size()), 4);
  for (std::size_t r = 0; r < margins.size(); ++r) {
    const auto i = static_cast<std::int64_t>(r);
    t(i, 0) = margins[r].kth;
    t(i, 1) = margins[r].next;
    t(i, 2) = margins[r].gap;
    t(i, 3) = margins[r].bound;
  }
  return t;
}
Mat topk_margin_table(const std::vector<TopkMargin>& m) { return margin_table(m); }
Mat routing_margin_table(const std::vector<RoutingMargin>& m) { return margin_table(m); }

std::vector<std::int64_t> lists_as_int64(const IndexLists& l) { return {l.data.begin(), l.data.end()}; }

template <class T, class Get>
std::vector<const T*> pointers(const std::vector<BlockOutput>& batch, Get get) {
  std::vector<const T*> v;
  v.reserve(batch.size());
  for (const BlockOutput& b : batch) v.push_back(&get(b));
  return v;
}

}  // namespace

void record_hc_pre(Recorder* rec, const std::string& base, const std::vector<const HcPreOutput*>& batch) {
  if (rec == nullptr || batch.empty()) return;
  record_field(rec, base + "/y", batch, [](const HcPreOutput& h) { return h.y; });
  record_field(rec, base + "/post", batch, [](const HcPreOutput& h) { return h.post; });
  record_field(rec, base + "/comb", batch, [](const HcPreOutput& h) { return h.comb; });
}

void record_attention(Recorder* rec, const std::string& base, const std::vector<const AttentionOutput*>& batch) {
  if (rec == nullptr || batch.empty()) return;
  const std::string& p = base;
  record_field(rec, p + ".attn.q_norm/out", batch, [](const AttentionOutput& a) { return a.q_r; });
  record_field(rec, p + ".attn/kv", batch, [](const AttentionOutput& a) { return a.kv; });
  if (batch.front()->compressed.entries.rows() > 0) {
    record_field(rec, p + ".attn.compressor/out", batch, [](const AttentionOutput& a) { return a.compressed.entries; });
  }
  if (batch.front()->indexer) {
    record_field(rec, p + ".attn.indexer/scores", batch, [](const AttentionOutput& a) { return a.indexer->scores; });
    std::vector<std::vector<std::int64_t>> lists;
    for (const AttentionOutput* a : batch) lists.push_back(lists_as_int64(a->indexer->lists));
    // No list before the first compressed entry (a prefill of fewer than 4 tokens, or a decode
    // step before position 3): nothing to record, as for compressor/out.
    if (batch.front()->indexer->lists.width > 0)
      record_batch_indices(rec, p + ".attn.indexer/out", lists, batch.front()->indexer->lists.width);
    record_field(rec, p + ".attn.indexer/margin", batch,
                 [](const AttentionOutput& a) { return topk_margin_table(a.indexer->margins); });
  }
  record_field(rec, p + ".attn.wo_a/out", batch, [](const AttentionOutput& a) { return a.o_a; });
  record_field(rec, p + ".attn/out", batch, [](const AttentionOutput& a) { return a.out; });
}

void record_gate(Recorder* rec, const std::string& base, const std::vector<const GateOutput*>& batch) {
  if (rec == nullptr || batch.empty()) return;
  const std::string& p = base;
  record_field(rec, p + ".ffn.gate/scores", batch, [](const GateOutput& g) { return g.scores; });
  record_field(rec, p + ".ffn.gate/out0", batch, [](const GateOutput& g) { return g.weights; });
  std::vector<std::vector<std::int64_t>> ids;
  for (const GateOutput* g : batch) ids.push_back(g->indices);
  record_batch_indices(rec, p + ".ffn.gate/out1", ids, batch.front()->weights.cols());
  record_field(rec, p + ".ffn.gate/margin", batch, [](const GateOutput& g) { return routing_margin_table(g.margins); });
}

void record_block(Recorder* rec, const std::string& step, const std::string& prefix,
                  const std::vector<BlockOutput>& batch) {
  if (rec == nullptr || batch.empty()) return;
  const std::string p = step.empty() ? prefix : step + "/" + prefix;
  const auto mats = [&](auto get) { return pointers<Mat>(batch, get); };
  record_hc_pre(rec, p + ".hc_attn",
                pointers<HcPreOutput>(batch, [](const BlockOutput& b) -> const HcPreOutput& { return b.hc_attn; }));
  record_field(rec, p + ".attn_norm/out", mats([](const BlockOutput& b) -> const Mat& { return b.attn_norm; }),
               [](const Mat& m) { return m; });
  record_attention(
      rec, p, pointers<AttentionOutput>(batch, [](const BlockOutput& b) -> const AttentionOutput& { return b.attn; }));
  record_field(rec, p + ".hc_attn/out", mats([](const BlockOutput& b) -> const Mat& { return b.x_mid; }),
               [](const Mat& m) { return m; });
  record_hc_pre(rec, p + ".hc_ffn",
                pointers<HcPreOutput>(batch, [](const BlockOutput& b) -> const HcPreOutput& { return b.hc_ffn; }));
  record_field(rec, p + ".ffn_norm/out", mats([](const BlockOutput& b) -> const Mat& { return b.ffn_norm; }),
               [](const Mat& m) { return m; });
  record_gate(rec, p,
              pointers<GateOutput>(batch, [](const BlockOutput& b) -> const GateOutput& { return b.ffn.gate; }));
  record_field(rec, p + ".ffn/out", mats([](const BlockOutput& b) -> const Mat& { return b.ffn.out; }),
               [](const Mat& m) { return m; });
  record_field(rec, p + "/out", mats([](const BlockOutput& b) -> const Mat& { return b.x_out; }),
               [](const Mat& m) { return m; });
}

}  // namespace dsv4
