// Per-layer KV-cache allocation of the CPU reference, laid out exactly as the official inference
// code allocates its buffers (spec 02 §2.11.1; official code, `Attention.__init__`,
// `Indexer.__init__`, `Compressor.__init__` in inference/model.py), plus the size of the same
// content in the deployment storage format of spec 08 §8.1.
//
// Buffers of one layer ℓ with compress ratio m (T = max_seq_len, B = max_batch_size,
// c = head_dim, c_I = index_head_dim, n_win = window_size, κ = 2 if m == 4 else 1):
//
//   kind  buffer                 shape                         dtype  content
//   all   kv                     [B, n_win + ⌊T/m⌋, c]         bf16   rows 0..n_win-1: ring (slot = pos mod n_win);
//                                (m = 0: [B, n_win, c])               row n_win + i: compressed entry i
//   m>0   kv_state, score_state  [B, κm, κc]                   fp32   main compressor decode state (init 0 / -inf)
//   m=4   indexer_kv             [B, ⌊T/4⌋, c_I]               bf16   indexer compressed key i (FP4-simulated)
//   m=4   indexer_kv_state,      [B, 8, 2c_I]                  fp32   indexer compressor state (ratio 4, overlap)
//         indexer_score_state
//
// The reference stores cache rows in bf16 (values already rounded to the FP8 / FP4 grids), as the
// official code does. A production cache stores the same values losslessly in the compact format
// of spec 08 §8.1 — main entry: (c - r_d) FP8 bytes + (c - r_d)/64 UE8M0 scales + r_d BF16 dims;
// indexer key: c_I/2 packed FP4 bytes + c_I/32 UE8M0 scales. `footprint()` reports both.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4::cache {

enum class AttnKind { kSWA, kCSA, kHCA };

// m = 0 → SWA, 4 → CSA, 128 → HCA (spec 02 §2.1). Throws std::invalid_argument otherwise.
AttnKind attn_kind(std::int64_t compress_ratio);
const char* attn_kind_name(AttnKind k);

// Deployment bytes of one cached main KV entry (spec 08 §8.1): nope dims FP8 E4M3 (1 byte each),
// one UE8M0 scale byte per 64 nope dims (if with_scales), rope dims BF16 (2 bytes each).
// V4 (c = 512, r_d = 64): 448 + 7 + 128 = 583 (576 without scales).
std::int64_t main_entry_bytes(const ModelConfig& cfg, bool with_scales = true);
// Deployment bytes of one cached indexer key (spec 08 §8.1): c_I FP4 E2M1 values packed two per
// byte, one UE8M0 scale byte per 32 values (if with_scales). c_I = 128: 64 + 4 = 68 (64).
std::int64_t indexer_entry_bytes(const ModelConfig& cfg, bool with_scales = true);

// Shapes of one layer's buffers, per batch slot (multiply the leading axis by B for the tensors).
struct LayerCacheLayout {
  std::int64_t layer = 0;  // 0..n_layers-1 main layers, n_layers.. MTP blocks
  std::int64_t ratio = 0;  // compress ratio m
  AttnKind kind = AttnKind::kSWA;
  std::int64_t window_rows = 0;         // n_win ring rows
  std::int64_t compressed_rows = 0;     // ⌊T/m⌋ (0 for SWA)
  std::int64_t head_dim = 0;            // c (width of a kv row)
  std::int64_t indexer_rows = 0;        // ⌊T/4⌋ for CSA, 0 otherwise
  std::int64_t indexer_dim = 0;         // c_I for CSA, 0 otherwise
  std::int64_t state_rows = 0;          // κm (0 for SWA)
  std::int64_t state_cols = 0;          // κc
  std::int64_t indexer_state_rows = 0;  // 2·4 = 8 for CSA
  std::int64_t indexer_state_cols = 0;  // 2·c_I for CSA

  std::int64_t kv_rows() const { return window_rows + compressed_rows; }
};

// The layout of layer `layer` (0 ≤ layer < n_layers + n_mtp_layers) for a cache sized for
// max_seq_len tokens. Throws std::out_of_range / std::invalid_argument on bad arguments.
LayerCacheLayout layer_layout(const ModelConfig& cfg, std::int64_t layer, std::int64_t max_seq_len);

// What one batch slot holds (summed over the layers it covers).
struct CacheFootprint {
  std::int64_t window_entries = 0;      // ring rows (n_win per layer)
  std::int64_t compressed_entries = 0;  // compressed main entries (⌊T/m⌋ per CSA/HCA layer)
  std::int64_t indexer_entries = 0;     // indexer keys (⌊T/4⌋ per CSA layer)
  // Cached KV in the deployment format of spec 08 §8.1 (main + indexer entries).
  std::int64_t deployment_bytes = 0;
  std::int64_t deployment_bytes_no_scales = 0;
  // Cached KV as the reference stores it: bf16 rows of c (main) and c_I (indexer) values.
  std::int64_t reference_bytes = 0;
  // Compressor decode state (fp32 kv_state + score_state, main and indexer compressors): bounded and
  // context-independent, not a cache entry (spec 08 §8.1), so not in deployment_bytes.
  std::int64_t state_bytes = 0;

  CacheFootprint& operator+=(const CacheFootprint& o);
};

CacheFootprint layer_footprint(const ModelConfig& cfg, const LayerCacheLayout& lay);

// The caches of all layers of a model, allocated (zeroed; compressor score states at -inf) as the
// official code allocates them. Layers 0..n_layers-1 are the main model; with include_mtp the
// n_mtp_layers MTP blocks follow (their compress ratio is compress_ratios[n_layers + j]).
class KVCache {
 public:
  KVCache(const ModelConfig& cfg, std::int64_t max_seq_len, std::int64_t max_batch_size, bool include_mtp = true);

  std::int64_t max_seq_len() const { return max_seq_len_; }
  std::int64_t max_batch_size() const { return max_batch_size_; }
  std::int64_t num_layers() const { return static_cast<std::int64_t>(layers_.size()); }
  const LayerCacheLayout& layout(std::int64_t layer) const { return layers_.at(idx(layer)).layout; }

  // Whole tensors (leading axis = batch slot). Empty tensors (no elements) where a layer kind has
  // no such buffer.
  Tensor& kv(std::int64_t layer) { return layers_.at(idx(layer)).kv; }
  Tensor& kv_state(std::int64_t layer) { return layers_.at(idx(layer)).kv_state; }
  Tensor& score_state(std::int64_t layer) { return layers_.at(idx(layer)).score_state; }
  Tensor& indexer_kv(std::int64_t layer) { return layers_.at(idx(layer)).indexer_kv; }
  Tensor& indexer_kv_state(std::int64_t layer) { return layers_.at(idx(layer)).indexer_kv_state; }
  Tensor& indexer_score_state(std::int64_t layer) { return layers_.at(idx(layer)).indexer_score_state; }
  const Tensor& kv(std::int64_t layer) const { return layers_.at(idx(layer)).kv; }
  const Tensor& indexer_kv(std::int64_t layer) const { return layers_.at(idx(layer)).indexer_kv; }

  // One row of a buffer for batch slot b (bounds-checked). kv rows: 0..n_win-1 ring slots,
  // n_win + i compressed entry i (use ring_row / compressed_row to avoid index arithmetic).
  std::span<std::uint16_t> kv_row(std::int64_t layer, std::int64_t b, std::int64_t row);
  std::span<const std::uint16_t> kv_row(std::int64_t layer, std::int64_t b, std::int64_t row) const;
  std::int64_t ring_row(std::int64_t layer, std::int64_t position) const {
    return position % layout(layer).window_rows;
  }
  std::int64_t compressed_row(std::int64_t layer, std::int64_t i) const { return layout(layer).window_rows + i; }
  std::span<std::uint16_t> indexer_row(std::int64_t layer, std::int64_t b, std::int64_t i);
  std::span<float> kv_state_row(std::int64_t layer, std::int64_t b, std::int64_t row);
  std::span<float> score_state_row(std::int64_t layer, std::int64_t b, std::int64_t row);
  std::span<float> indexer_kv_state_row(std::int64_t layer, std::int64_t b, std::int64_t row);
  std::span<float> indexer_score_state_row(std::int64_t layer, std::int64_t b, std::int64_t row);

  // Start a new sequence in slot b: cache rows zeroed, compressor states set to K = 0, Z = -inf
  // (spec 02 §2.6.5 requires the reset; the official code never does it).
  void reset_slot(std::int64_t b);

  // Per batch slot, summed over the layers.
  CacheFootprint footprint() const;
  CacheFootprint layer_footprint(std::int64_t layer) const;
  // Bytes of storage the reference actually holds, all slots (sum of the tensors' nbytes()).
  std::int64_t allocated_bytes() const;

 private:
  struct LayerBuffers {
    LayerCacheLayout layout;
    Tensor kv, kv_state, score_state, indexer_kv, indexer_kv_state, indexer_score_state;
  };
  std::size_t idx(std::int64_t layer) const;

  ModelConfig cfg_;
  std::int64_t max_seq_len_;
  std::int64_t max_batch_size_;
  std::vector<LayerBuffers> layers_;
};

}  // namespace dsv4::cache
