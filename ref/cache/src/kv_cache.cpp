// spec 02 §2.11.1 (buffers of the reference code), §2.6.5 (compressor state and its reset),
// spec 08 §8.1 (deployment storage format of a cached entry).
#include "dsv4/cache/kv_cache.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace dsv4::cache {

AttnKind attn_kind(std::int64_t compress_ratio) {
  switch (compress_ratio) {
    case 0:
      return AttnKind::kSWA;
    case 4:
      return AttnKind::kCSA;
    case 128:
      return AttnKind::kHCA;
    default:
      throw std::invalid_argument("compress ratio must be 0, 4 or 128, got " + std::to_string(compress_ratio));
  }
}

const char* attn_kind_name(AttnKind k) {
  switch (k) {
    case AttnKind::kSWA:
      return "SWA";
    case AttnKind::kCSA:
      return "CSA";
    case AttnKind::kHCA:
      return "HCA";
  }
  return "?";
}

std::int64_t main_entry_bytes(const ModelConfig& cfg, bool with_scales) {
  const std::int64_t nope = cfg.head_dim - cfg.rope_head_dim;
  const std::int64_t scales = with_scales ? (nope + 63) / 64 : 0;  // one UE8M0 byte per 64-block
  return nope * 1 + scales + cfg.rope_head_dim * 2;
}

std::int64_t indexer_entry_bytes(const ModelConfig& cfg, bool with_scales) {
  const std::int64_t packed = (cfg.index_head_dim + 1) / 2;                      // two E2M1 per byte
  const std::int64_t scales = with_scales ? (cfg.index_head_dim + 31) / 32 : 0;  // UE8M0 per 32-block
  return packed + scales;
}

LayerCacheLayout layer_layout(const ModelConfig& cfg, std::int64_t layer, std::int64_t max_seq_len) {
  if (layer < 0 || layer >= static_cast<std::int64_t>(cfg.compress_ratios.size())) {
    throw std::out_of_range("layer " + std::to_string(layer) + " outside compress_ratios (" +
                            std::to_string(cfg.compress_ratios.size()) + " entries)");
  }
  if (max_seq_len <= 0) throw std::invalid_argument("max_seq_len must be positive");
  LayerCacheLayout l;
  l.layer = layer;
  l.ratio = cfg.compress_ratio(layer);
  l.kind = attn_kind(l.ratio);
  l.window_rows = cfg.window_size;
  l.head_dim = cfg.head_dim;
  if (l.ratio > 0) {
    const std::int64_t kappa = l.ratio == 4 ? 2 : 1;  // overlap for ratio 4 (spec 02 §2.6)
    l.compressed_rows = max_seq_len / l.ratio;
    l.state_rows = kappa * l.ratio;
    l.state_cols = kappa * cfg.head_dim;
  }
  if (l.kind == AttnKind::kCSA) {
    l.indexer_rows = max_seq_len / 4;
    l.indexer_dim = cfg.index_head_dim;
    l.indexer_state_rows = 2 * 4;  // indexer compressor: ratio 4 with overlap
    l.indexer_state_cols = 2 * cfg.index_head_dim;
  }
  return l;
}

CacheFootprint& CacheFootprint::operator+=(const CacheFootprint& o) {
  window_entries += o.window_entries;
  compressed_entries += o.compressed_entries;
  indexer_entries += o.indexer_entries;
  deployment_bytes += o.deployment_bytes;
  deployment_bytes_no_scales += o.deployment_bytes_no_scales;
  reference_bytes += o.reference_bytes;
  state_bytes += o.state_bytes;
  return *this;
}

CacheFootprint layer_footprint(const ModelConfig& cfg, const LayerCacheLayout& lay) {
  CacheFootprint f;
  f.window_entries = lay.window_rows;
  f.compressed_entries = lay.compressed_rows;
  f.indexer_entries = lay.indexer_rows;
  const std::int64_t main_rows = lay.kv_rows();
  f.deployment_bytes = main_rows * main_entry_bytes(cfg, true) + lay.indexer_rows * indexer_entry_bytes(cfg, true);
  f.deployment_bytes_no_scales =
      main_rows * main_entry_bytes(cfg, false) + lay.indexer_rows * indexer_entry_bytes(cfg, false);
  f.reference_bytes = main_rows * lay.head_dim * 2 + lay.indexer_rows * lay.indexer_dim * 2;  // bf16 rows
  f.state_bytes = 2 * (lay.state_rows * lay.state_cols + lay.indexer_state_rows * lay.indexer_state_cols) * 4;
  return f;
}

namespace {
void fill(Tensor& t, float v) {
  auto s = t.values<float>();
  std::fill(s.begin(), s.end(), v);
}
}  // namespace

KVCache::KVCache(const ModelConfig& cfg, std::int64_t max_seq_len, std::int64_t max_batch_size, bool include_mtp)
    : cfg_(cfg), max_seq_len_(max_seq_len), max_batch_size_(max_batch_size) {
  if (max_batch_size <= 0) throw std::invalid_argument("max_batch_size must be positive");
  if (max_seq_len <= 0) throw std::invalid_argument("max_seq_len must be positive");
  const std::int64_t n = cfg.n_layers + (include_mtp ? cfg.n_mtp_layers : 0);
  const std::int64_t B = max_batch_size;
  layers_.reserve(static_cast<std::size_t>(n));
  for (std::int64_t l = 0; l < n; ++l) {
    LayerBuffers buf;
    buf.layout = layer_layout(cfg, l, max_seq_len);
    const LayerCacheLayout& y = buf.layout;
    buf.kv = Tensor(DType::kBF16, {B, y.kv_rows(), y.head_dim});
    buf.kv_state = Tensor(DType::kF32, {B, y.state_rows, y.state_cols});
    buf.score_state = Tensor(DType::kF32, {B, y.state_rows, y.state_cols});
    buf.indexer_kv = Tensor(DType::kBF16, {B, y.indexer_rows, y.indexer_dim});
    buf.indexer_kv_state = Tensor(DType::kF32, {B, y.indexer_state_rows, y.indexer_state_cols});
    buf.indexer_score_state = Tensor(DType::kF32, {B, y.indexer_state_rows, y.indexer_state_cols});
    fill(buf.score_state, -std::numeric_limits<float>::infinity());
    fill(buf.indexer_score_state, -std::numeric_limits<float>::infinity());
    layers_.push_back(std::move(buf));
  }
}

std::size_t KVCache::idx(std::int64_t layer) const {
  if (layer < 0 || layer >= num_layers()) {
    throw std::out_of_range("cache layer " + std::to_string(layer) + " outside [0, " + std::to_string(num_layers()) +
                            ")");
  }
  return static_cast<std::size_t>(layer);
}

namespace {
template <class T, class Tens>
auto row_of(Tens& t, std::int64_t b, std::int64_t row, const char* what) {
  if (t.rank() != 3 || b < 0 || b >= t.dim(0) || row < 0 || row >= t.dim(1)) {
    throw std::out_of_range(std::string(what) + ": slot " + std::to_string(b) + " row " + std::to_string(row) +
                            " outside " + t.shape_string());
  }
  auto all = t.template values<T>();
  const std::size_t cols = static_cast<std::size_t>(t.dim(2));
  const std::size_t off =
      (static_cast<std::size_t>(b) * static_cast<std::size_t>(t.dim(1)) + static_cast<std::size_t>(row)) * cols;
  return all.subspan(off, cols);
}
}  // namespace

std::span<std::uint16_t> KVCache::kv_row(std::int64_t layer, std::int64_t b, std::int64_t row) {
  return row_of<std::uint16_t>(kv(layer), b, row, "kv");
}
std::span<const std::uint16_t> KVCache::kv_row(std::int64_t layer, std::int64_t b, std::int64_t row) const {
  return row_of<std::uint16_t>(kv(layer), b, row, "kv");
}
std::span<std::uint16_t> KVCache::indexer_row(std::int64_t layer, std::int64_t b, std::int64_t i) {
  return row_of<std::uint16_t>(indexer_kv(layer), b, i, "indexer_kv");
}
std::span<float> KVCache::kv_state_row(std::int64_t layer, std::int64_t b, std::int64_t row) {
  return row_of<float>(kv_state(layer), b, row, "kv_state");
}
std::span<float> KVCache::score_state_row(std::int64_t layer, std::int64_t b, std::int64_t row) {
  return row_of<float>(score_state(layer), b, row, "score_state");
}
std::span<float> KVCache::indexer_kv_state_row(std::int64_t layer, std::int64_t b, std::int64_t row) {
  return row_of<float>(indexer_kv_state(layer), b, row, "indexer_kv_state");
}
std::span<float> KVCache::indexer_score_state_row(std::int64_t layer, std::int64_t b, std::int64_t row) {
  return row_of<float>(indexer_score_state(layer), b, row, "indexer_score_state");
}

void KVCache::reset_slot(std::int64_t b) {
  if (b < 0 || b >= max_batch_size_) throw std::out_of_range("batch slot " + std::to_string(b) + " out of range");
  const float ninf = -std::numeric_limits<float>::infinity();
  for (auto& L : layers_) {
    const auto slice = [b](Tensor& t) -> std::span<std::byte> {
      const std::size_t per = t.nbytes() / static_cast<std::size_t>(t.dim(0));
      return {t.bytes() + static_cast<std::size_t>(b) * per, per};
    };
    for (Tensor* t : {&L.kv, &L.indexer_kv, &L.kv_state, &L.indexer_kv_state}) {
      auto s = slice(*t);
      std::fill(s.begin(), s.end(), std::byte{0});
    }
    for (Tensor* t : {&L.score_state, &L.indexer_score_state}) {
      const std::size_t per = static_cast<std::size_t>(t->numel() / t->dim(0));
      auto v = t->values<float>().subspan(static_cast<std::size_t>(b) * per, per);
      std::fill(v.begin(), v.end(), ninf);
    }
  }
}

CacheFootprint KVCache::layer_footprint(std::int64_t layer) const {
  return cache::layer_footprint(cfg_, layers_.at(idx(layer)).layout);
}

CacheFootprint KVCache::footprint() const {
  CacheFootprint f;
  for (std::int64_t l = 0; l < num_layers(); ++l) f += layer_footprint(l);
  return f;
}

std::int64_t KVCache::allocated_bytes() const {
  std::int64_t n = 0;
  for (const auto& L : layers_) {
    for (const Tensor* t :
         {&L.kv, &L.kv_state, &L.score_state, &L.indexer_kv, &L.indexer_kv_state, &L.indexer_score_state}) {
      n += static_cast<std::int64_t>(t->nbytes());
    }
  }
  return n;
}

}  // namespace dsv4::cache
