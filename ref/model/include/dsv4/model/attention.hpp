// The Attention module of a V4 layer (spec 02 §2.4, §2.5, §2.10, §2.11; official code class
// `Attention` in inference/model.py): query path, window KV path, index lists (window ‖ HCA
// builder or Lightning Indexer), sparse attention with sink, inverse RoPE, grouped output
// projection. Prefill (start_pos 0) and decode (one token) follow the orders of §2.11.2 / §2.11.3.
//
// State: one AttentionState per sequence (batch ≥ 1 with independent state). It holds the window
// ring buffer (slot = position mod n_win) and the compressed KV rows as double matrices — not in
// dsv4::cache::KVCache, whose bf16 rows cannot hold exact-mode (unrounded) values; in official
// mode every row is a bf16 value and matches that layout (ring rows 0..n_win−1, compressed row i
// = cache row n_win + i).
//
// Recordable outputs (AttentionOutput), canonical names: `layers.N.attn` (out),
// `layers.N.attn.indexer` (indexer), `layers.N.attn.compressor` (compressed).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/indexer.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/numerics/quant_margin.hpp"

namespace dsv4 {

// Parameters (spec 02 §2.1; shapes spec 00 §0.6).
struct AttentionWeights {
  LinearWeight wq_a;                            // FP8 [d_c, d]
  Vec q_norm;                                   // fp32 [d_c]
  LinearWeight wq_b;                            // FP8 [H·c, d_c]
  LinearWeight wkv;                             // FP8 [c, d]
  Vec kv_norm;                                  // fp32 [c]
  LinearWeight wo_a;                            // bf16 [G·d_g, (H/G)·c] (synthetic: on the FP8 grid)
  LinearWeight wo_b;                            // FP8 [d, G·d_g]
  std::vector<double> attn_sink;                // fp32 [H]
  std::optional<CompressorWeights> compressor;  // m > 0
  std::optional<IndexerWeights> indexer;        // m = 4

  // Deterministic synthetic weights for layer `layer` of config c (Philox; tests and benchmarks).
  static AttentionWeights synthetic(const ModelConfig& c, std::int64_t layer, std::uint64_t seed);
};

struct AttentionState {
  Mat window;      // [n_win, c] ring buffer
  Mat compressed;  // [⌊T/m⌋, c] compressed entries (m > 0)
  std::int64_t n_compressed = 0;
  CompressorState compressor;  // m > 0
  IndexerState indexer;        // m = 4
  std::int64_t next_pos = 0;   // position of the sequence's next token
};

struct AttentionOutput {
  Mat q_r;                     // [s, d_c] q_norm(wq_a x) — also the indexer's input
  Mat q;                       // [s, H·c] after per-head RMS and RoPE
  Mat kv;                      // [s, c] window KV rows after kv_norm, RoPE, FP8 simulation
  QuantMargin kv_margin;       // FP8 simulation of kv's nope dims
  Mat kv_unquantised;          // kv before the FP8 simulation (diff's near-tie rounding flips: quant_flips.hpp)
  DecisionStats kv_decisions;  // exact: the FP8 decisions of kv (kv_certify.hpp); recomputed = rows
  IndexLists lists;            // [s, K] window ‖ compressed
  std::optional<IndexerOutput> indexer;  // CSA
  CompressedEntries compressed;          // main compressor entries written in this call
  Mat attn;                              // [s, H·c] sparse attention output (before inverse RoPE)
  Mat o;                                 // [s, H·c] after inverse RoPE
  Mat o_a;                               // [s, G·d_g] grouped wo_a output
  Mat out;                               // [s, d] wo_b output: the module output
};

class Attention {
 public:
  // Throws std::invalid_argument naming the field on a bad layer, config or weight shape.
  Attention(Precision prec, const ModelConfig& cfg, std::int64_t layer, AttentionWeights weights);

  std::int64_t ratio() const { return ratio_; }
  const RopeTable& rope_table() const { return *table_; }
  AttentionState initial_state() const;
  // The state of a new sequence of layer `layer`, sized by the KV-cache layout of
  // dsv4::cache::layer_layout (the one description of what a layer caches, shared with
  // `dsv4 cost`): ring rows, ⌊T/m⌋ compressed rows, ⌊T/4⌋ indexer rows, compressor states.
  static AttentionState allocate_state(const ModelConfig& cfg, std::int64_t layer);

  // spec 02 §2.11.2: prefill of a new sequence (start_pos 0), x [s, d] (attn_norm output, bf16
  // values in official mode). Resets the state.
  // forced_indexer (CSA only; decision forcing for `dsv4 diff`): use these top-k lists — same
  // shape and offsets as IndexerOutput::lists — instead of the indexer's own choice; the indexer
  // still runs and reports its own lists, scores and margins.
  AttentionOutput prefill(const Mat& x, AttentionState& st, const IndexLists* forced_indexer = nullptr) const;
  // spec 02 §2.11.3: one token x [1, d] at position pos = st.next_pos ≥ 1.
  AttentionOutput decode(const Mat& x, std::int64_t pos, AttentionState& st,
                         const IndexLists* forced_indexer = nullptr) const;
  // The official forward(x, start_pos) over a batch: every sequence shares start_pos (0: prefill
  // of s tokens each; > 0: one token each); sequence b uses states[b] only.
  std::vector<AttentionOutput> forward(const std::vector<Mat>& x, std::int64_t start_pos,
                                       std::vector<AttentionState>& states) const;

 private:
  void check_x(const Mat& x, std::int64_t start_pos) const;
  // §2.4, §2.5: q_r, q and kv of the call's tokens.
  void project(const Mat& x, std::int64_t start_pos, AttentionOutput& out) const;
  // §2.10: inverse RoPE, grouped wo_a, wo_b.
  void output(std::int64_t start_pos, AttentionOutput& out) const;

  Precision prec_;
  ModelConfig cfg_;
  std::int64_t layer_;
  std::int64_t ratio_;
  AttentionWeights w_;
  std::vector<LinearWeight> wo_a_groups_;
  std::shared_ptr<const RopeTable> table_;
  std::optional<Compressor> compressor_;
  std::optional<Indexer> indexer_;
};

}  // namespace dsv4
