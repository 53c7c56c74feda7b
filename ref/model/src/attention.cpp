// spec 02 §2.4, §2.5, §2.10, §2.11 (official code Attention.forward, inference/model.py).
#include "dsv4/model/attention.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "dsv4/cache/kv_cache.hpp"
#include "dsv4/model/checkpoint.hpp"
#include "dsv4/model/grouped_projection.hpp"
#include "dsv4/model/kv_certify.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/model/sparse_attention.hpp"
#include "dsv4/model/synthetic_weights.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"

namespace dsv4 {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("attention: " + field + ": " + why);
}
std::string str(std::int64_t v) { return std::to_string(v); }

// The indexer's lists, or forced ones of the same shape (decision forcing, attention.hpp).
const IndexLists& chosen_indexer_lists(const IndexerOutput& o, const IndexLists* forced) {
  if (forced == nullptr) return o.lists;
  if (forced->rows != o.lists.rows || forced->width != o.lists.width)
    bad("forced_indexer", "shape [" + str(forced->rows) + ", " + str(forced->width) + "], the indexer's is [" +
                              str(o.lists.rows) + ", " + str(o.lists.width) + "]");
  return *forced;
}

// Deviation kKvScaleNotPow2 (bug catalogue only): the window KV's FP8 simulation with fp32 block
// scales instead of spec 02 §2.5 step 4's power-of-two scales. No margins are recorded.
void kv_fp8_with_fp32_scales(Mat& kv, std::int64_t nope) {
  std::vector<float> buf(static_cast<std::size_t>(kv.rows() * nope));
  for (Eigen::Index r = 0; r < kv.rows(); ++r)
    for (std::int64_t j = 0; j < nope; ++j) buf[static_cast<std::size_t>(r * nope + j)] = static_cast<float>(kv(r, j));
  act_quant_inplace(buf, nope, 64, ScaleFormat::kFP32);
  for (Eigen::Index r = 0; r < kv.rows(); ++r)
    for (std::int64_t j = 0; j < nope; ++j) kv(r, j) = buf[static_cast<std::size_t>(r * nope + j)];
}

void check_weight(const char* field, const LinearWeight& w, std::int64_t n, std::int64_t k) {
  if (w.out_features() != n || w.in_features() != k) {
    bad(field, "shape [" + str(w.out_features()) + ", " + str(w.in_features()) + "], expected [" + str(n) + ", " +
                   str(k) + "]");
  }
}

// Rows [r0, r0 + n) of a bf16 weight, its bits as stored (the groups of wo_a, spec 02 §2.10).
LinearWeight bf16_rows(const LinearWeight& w, std::int64_t r0, std::int64_t n) {
  const std::int64_t k = w.in_features();
  Tensor t = Tensor::uninitialized(DType::kBF16, {n, k});
  const auto src =
      w.weight.values<std::uint16_t>().subspan(static_cast<std::size_t>(r0 * k), static_cast<std::size_t>(n * k));
  std::copy(src.begin(), src.end(), t.values<std::uint16_t>().begin());
  return LinearWeight::bf16(std::move(t));
}

Vec synthetic_norm(std::uint64_t seed, const char* name, std::int64_t n) {
  const CounterRng rng(seed, stream_id(name));
  Vec v(n);
  for (std::int64_t i = 0; i < n; ++i) v(i) = round_bf16(1.0 + 0.1 * rng.normal(static_cast<std::uint64_t>(i)));
  return v;
}

}  // namespace

AttentionWeights AttentionWeights::synthetic(const ModelConfig& c, std::int64_t layer, std::uint64_t seed) {
  const std::int64_t m = c.compress_ratio(layer);
  const std::int64_t H = c.n_heads, hc = c.head_dim, G = c.o_groups;
  const auto inv_sqrt = [](std::int64_t n) { return 1.0 / std::sqrt(static_cast<double>(n)); };
  const std::uint64_t ls = synthetic_layer_seed(seed, layer);
  AttentionWeights w;
  w.wq_a = synthetic_fp8_weight(ls, "attn.wq_a", c.q_lora_rank, c.dim, inv_sqrt(c.dim));
  w.q_norm = synthetic_norm(ls, "attn.q_norm", c.q_lora_rank);
  w.wq_b = synthetic_fp8_weight(ls, "attn.wq_b", H * hc, c.q_lora_rank, inv_sqrt(c.q_lora_rank));
  w.wkv = synthetic_fp8_weight(ls, "attn.wkv", hc, c.dim, inv_sqrt(c.dim));
  w.kv_norm = synthetic_norm(ls, "attn.kv_norm", hc);
  // spec 00 §0.6: the published wo_a is FP8 with 128×128 E8M0 scales, dequantised to bf16 by the
  // converter; the synthetic one is made the same way, so an export can store it in FP8 exactly.
  const LinearWeight wo_a = synthetic_fp8_weight(ls, "attn.wo_a", G * c.o_lora_rank, H * hc / G, inv_sqrt(H * hc / G));
  w.wo_a = LinearWeight::bf16(fp8_weight_to_bf16("attn.wo_a", wo_a.weight, wo_a.scale));
  w.wo_b = synthetic_fp8_weight(ls, "attn.wo_b", c.dim, G * c.o_lora_rank, inv_sqrt(G * c.o_lora_rank));
  const CounterRng rng(ls, stream_id("attn.attn_sink"));
  for (std::int64_t h = 0; h < H; ++h)
    w.attn_sink.push_back(static_cast<float>(rng.normal(static_cast<std::uint64_t>(h))));
  if (m > 0) w.compressor = CompressorWeights::synthetic(CompressorSpec::main(c, m), ls ^ 0xC0C0ULL);
  if (m == 4) w.indexer = IndexerWeights::synthetic(c, ls ^ 0x1D1DULL);
  return w;
}

Attention::Attention(Precision prec, const ModelConfig& cfg, std::int64_t layer, AttentionWeights weights)
    : prec_(prec), cfg_(cfg), layer_(layer), w_(std::move(weights)) {
  if (layer < 0 || layer >= static_cast<std::int64_t>(cfg.compress_ratios.size())) {
    bad("layer",
        str(layer) + " outside compress_ratios (" + str(static_cast<std::int64_t>(cfg.compress_ratios.size())) + ")");
  }
  ratio_ = cfg.compress_ratio(layer);
  if (ratio_ != 0 && ratio_ != 4 && ratio_ != 128)
    bad("compress_ratios", "ratio " + str(ratio_) + " is not 0, 4 or 128");
  const std::int64_t H = cfg.n_heads, c = cfg.head_dim, G = cfg.o_groups;
  if (cfg.rope_head_dim <= 0 || cfg.rope_head_dim > c || cfg.rope_head_dim % 2 != 0) {
    bad("rope_head_dim", "must be even and in (0, head_dim]");
  }
  if ((c - cfg.rope_head_dim) % 64 != 0)
    bad("head_dim", "nope dims (head_dim − rope_head_dim) must be a multiple of 64");
  if (G <= 0 || H % G != 0) bad("o_groups", "must divide n_heads");
  if (cfg.window_size < 1) bad("window_size", "must be ≥ 1");
  check_weight("wq_a", w_.wq_a, cfg.q_lora_rank, cfg.dim);
  check_weight("wq_b", w_.wq_b, H * c, cfg.q_lora_rank);
  check_weight("wkv", w_.wkv, c, cfg.dim);
  check_weight("wo_a", w_.wo_a, G * cfg.o_lora_rank, H * c / G);
  check_weight("wo_b", w_.wo_b, cfg.dim, G * cfg.o_lora_rank);
  if (w_.wo_a.kind != WeightKind::kBF16) bad("wo_a", "must be a bf16 weight (the official einsum is bf16)");
  if (w_.q_norm.size() != cfg.q_lora_rank) bad("q_norm", "must have q_lora_rank entries");
  if (w_.kv_norm.size() != c) bad("kv_norm", "must have head_dim entries");
  if (static_cast<std::int64_t>(w_.attn_sink.size()) != H) bad("attn_sink", "must have n_heads entries");
  for (std::int64_t g = 0; g < G; ++g) {
    wo_a_groups_.push_back(bf16_rows(w_.wo_a, g * cfg.o_lora_rank, cfg.o_lora_rank));
  }
  table_ = std::make_shared<const RopeTable>(rope_table_for_layer(prec_, cfg, layer));
  if (ratio_ > 0) {
    if (!w_.compressor) bad("compressor", "weights required for compress ratio " + str(ratio_));
    compressor_.emplace(prec_, CompressorSpec::main(cfg, ratio_), *w_.compressor, table_);
  }
  if (ratio_ == 4) {
    if (!w_.indexer) bad("indexer", "weights required for compress ratio 4");
    indexer_.emplace(prec_, cfg, *w_.indexer, table_);
  }
}

AttentionState Attention::initial_state() const { return allocate_state(cfg_, layer_); }

AttentionState Attention::allocate_state(const ModelConfig& cfg, std::int64_t layer) {
  const cache::LayerCacheLayout lay = cache::layer_layout(cfg, layer, cfg.max_seq_len);
  AttentionState st;
  st.window = Mat::Zero(lay.window_rows, lay.head_dim);
  if (lay.ratio > 0) {
    st.compressed = Mat::Zero(lay.compressed_rows, lay.head_dim);
    st.compressor = Compressor::fresh_state(CompressorSpec::main(cfg, lay.ratio));
  }
  if (lay.kind == cache::AttnKind::kCSA) {
    st.indexer.compressor = Compressor::fresh_state(CompressorSpec::indexer(cfg));
    st.indexer.cache = Mat::Zero(lay.indexer_rows, lay.indexer_dim);
    st.indexer.entries = 0;
  }
  return st;
}

void Attention::check_x(const Mat& x, std::int64_t start_pos) const {
  if (x.cols() != cfg_.dim) bad("x", "has " + str(x.cols()) + " columns, expected dim " + str(cfg_.dim));
  if (x.rows() < 1) bad("x", "has no tokens");
  if (start_pos < 0) bad("start_pos", "negative (" + str(start_pos) + ")");
  if (start_pos + x.rows() > cfg_.max_seq_len) {
    bad("start_pos", "positions " + str(start_pos) + ".." + str(start_pos + x.rows() - 1) + " beyond max_seq_len " +
                         str(cfg_.max_seq_len));
  }
}

// spec 02 §2.4 (query path) and §2.5 (window KV path).
void Attention::project(const Mat& x, std::int64_t start_pos, AttentionOutput& out) const {
  const Precision& p = prec_;
  const std::int64_t c = cfg_.head_dim, rd = cfg_.rope_head_dim;
  const ScaleFormat fmt = linear_scale_format(cfg_);
  // §2.4: q_r = q_norm(wq_a x); q = wq_b q_r; per-head weightless RMS (bf16 ops); RoPE
  out.q_r = rmsnorm(p, linear(p, x, w_.wq_a, fmt), w_.q_norm, cfg_.norm_eps);
  out.q = linear(p, out.q_r, w_.wq_b, fmt);
  head_rmsnorm_inplace(p, out.q, c, cfg_.norm_eps);
  apply_rope_inplace(p, *table_, out.q, start_pos, c);
  // §2.5: kv = kv_norm(wkv x); RoPE; FP8 simulation of the nope dims (block 64, UE8M0)
  const Mat kv_lin = linear(p, x, w_.wkv, fmt);
  out.kv = rmsnorm(p, kv_lin, w_.kv_norm, cfg_.norm_eps);
  apply_rope_inplace(p, *table_, out.kv, start_pos, c);
  if (p.deviates(Deviation::kKvScaleNotPow2)) {
    kv_fp8_with_fp32_scales(out.kv, c - rd);
    return;
  }
  // FP8 decisions, then (exact mode) every one certified against the derived bound of the double
  // pipeline (RoPE does not touch dims [0, c − r_d)); rows with an open decision re-decided in Mp50.
  out.kv_unquantised = out.kv;
  const Mat& unquantised = out.kv_unquantised;
  out.kv_margin = p.quantise(out.kv, 0, out.kv.rows(), 0, c - rd, 64, BlockQuant::kFp8Ue8m0);
  out.kv_decisions =
      certify_fp8_kv(p, x, w_.wkv.values(), w_.kv_norm, cfg_.norm_eps, kv_lin, unquantised, c - rd, 64, out.kv);
}

// spec 02 §2.10: inverse RoPE at the query position, grouped wo_a (bf16 einsum per group), wo_b.
void Attention::output(std::int64_t start_pos, AttentionOutput& out) const {
  const Precision& p = prec_;
  const std::int64_t c = cfg_.head_dim;
  out.o = out.attn;
  if (!p.deviates(Deviation::kNoInverseRope)) apply_rope_inplace(p, *table_, out.o, start_pos, c, /*inverse=*/true);
  out.o_a = grouped_output_projection(p, out.o, wo_a_groups_);
  out.out = linear(p, out.o_a, w_.wo_b, linear_scale_format(cfg_));
}

// spec 02 §2.11.2, steps 1–7.
AttentionOutput Attention::prefill(const Mat& x, AttentionState& st, const IndexLists* forced_indexer) const {
  check_x(x, 0);
  const Precision& p = prec_;
  const std::int64_t s = x.rows(), win = cfg_.window_size, c = cfg_.head_dim, H = cfg_.n_heads;
  AttentionOutput out;
  // reset the sequence state (a new sequence; spec 02 §2.6.5 reset requirement)
  st = initial_state();
  project(x, 0, out);                                                                                      // 1.
  IndexLists lists = window_lists_prefill(s, prec_.deviates(Deviation::kWindowOffByOne) ? win + 1 : win);  // 2.
  if (ratio_ > 0) {                                                                                        // 3.
    const std::int64_t offset = s;
    if (indexer_) {
      out.indexer = indexer_->prefill(x, out.q_r, st.indexer, offset);
      lists = concat_lists(lists, chosen_indexer_lists(*out.indexer, forced_indexer));
    } else {
      lists = concat_lists(lists, hca_lists_prefill(s, ratio_, offset));
    }
  }
  out.lists = lists;                                                                                             // 4.
  for (std::int64_t t = std::max<std::int64_t>(0, s - win); t < s; ++t) st.window.row(t % win) = out.kv.row(t);  // 5.
  Mat kv_all = out.kv;
  if (ratio_ > 0) {  // 6.
    out.compressed = compressor_->prefill(x, st.compressor);
    const std::int64_t n = out.compressed.count();
    st.compressed.topRows(n) = out.compressed.entries;
    st.n_compressed = n;
    kv_all.conservativeResize(s + n, c);
    kv_all.bottomRows(n) = out.compressed.entries;
  }
  // 7. sparse attention, q viewed [s·H, c]
  const Mat qh = Eigen::Map<const Mat>(out.q.data(), s * H, c);
  const Mat a = sparse_attention(p, qh, H, kv_all, w_.attn_sink, out.lists, 1.0 / std::sqrt(static_cast<double>(c)));
  out.attn = Eigen::Map<const Mat>(a.data(), s, H * c);
  output(0, out);
  st.next_pos = s;
  return out;
}

// spec 02 §2.11.3, steps 1–6.
AttentionOutput Attention::decode(const Mat& x, std::int64_t pos, AttentionState& st,
                                  const IndexLists* forced_indexer) const {
  check_x(x, pos);
  if (x.rows() != 1) bad("x", "decode takes one token, got " + str(x.rows()));
  if (pos < 1) bad("start_pos", "decode needs start_pos ≥ 1, got " + str(pos));
  if (pos != st.next_pos) bad("start_pos", str(pos) + " but the sequence's next position is " + str(st.next_pos));
  const Precision& p = prec_;
  const std::int64_t win = cfg_.window_size, c = cfg_.head_dim, H = cfg_.n_heads;
  AttentionOutput out;
  project(x, pos, out);                              // 1.
  IndexLists lists = window_lists_decode(pos, win);  // 2.
  if (ratio_ > 0) {                                  // 3.
    if (indexer_) {
      out.indexer = indexer_->decode(x, out.q_r, pos, st.indexer, win);
      lists = concat_lists(lists, chosen_indexer_lists(*out.indexer, forced_indexer));
    } else {
      lists = concat_lists(lists, hca_lists_decode(pos, ratio_, win));
    }
  }
  out.lists = lists;
  st.window.row(pos % win) = out.kv.row(0);  // 4.
  if (ratio_ > 0) {                          // 5.
    out.compressed = compressor_->decode(x, pos, st.compressor);
    for (std::int64_t r = 0; r < out.compressed.count(); ++r) {
      st.compressed.row(out.compressed.first + r) = out.compressed.entries.row(r);
      st.n_compressed = std::max(st.n_compressed, out.compressed.first + r + 1);
    }
  }
  // 6. sparse attention on the whole cache tensor [ring ‖ compressed rows]
  Mat cache(win + (ratio_ > 0 ? st.compressed.rows() : 0), c);
  cache.topRows(win) = st.window;
  if (ratio_ > 0) cache.bottomRows(st.compressed.rows()) = st.compressed;
  const Mat qh = Eigen::Map<const Mat>(out.q.data(), H, c);
  const Mat a = sparse_attention(p, qh, H, cache, w_.attn_sink, out.lists, 1.0 / std::sqrt(static_cast<double>(c)));
  out.attn = Eigen::Map<const Mat>(a.data(), 1, H * c);
  output(pos, out);
  st.next_pos = pos + 1;
  return out;
}

// The official forward over a batch sharing start_pos (spec 05 §5.6).
std::vector<AttentionOutput> Attention::forward(const std::vector<Mat>& x, std::int64_t start_pos,
                                                std::vector<AttentionState>& states) const {
  if (x.size() != states.size()) bad("states", "one state per sequence required");
  if (x.empty()) bad("x", "empty batch");
  if (static_cast<std::int64_t>(x.size()) > cfg_.max_batch_size) {
    bad("x",
        "batch of " + str(static_cast<std::int64_t>(x.size())) + " beyond max_batch_size " + str(cfg_.max_batch_size));
  }
  for (const Mat& xb : x) {
    if (xb.rows() != x.front().rows()) bad("x", "sequences of one call must have the same length");
  }
  std::vector<AttentionOutput> out;
  for (std::size_t b = 0; b < x.size(); ++b) {
    out.push_back(start_pos == 0 ? prefill(x[b], states[b]) : decode(x[b], start_pos, states[b]));
  }
  return out;
}

}  // namespace dsv4
