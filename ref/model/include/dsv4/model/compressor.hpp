// The KV Compressor (spec 02 §2.6; official code class `Compressor` in inference/model.py):
// per-token projections with the absolute-position bias `ape`, gated softmax pooling of m tokens
// per channel (ratio 4 with overlapping windows, ratio 128 without), then bf16 → RMSNorm →
// RoPE at position m·i → FP8 simulation of the nope dims (main) or Hadamard + FP4 simulation of
// all dims (indexer). Prefill (§2.6.4) and decode (§2.6.5) state machines with per-sequence
// state; every quantised entry carries its quantisation margins.
//
// Precision (ref/README.md): exact mode computes the math in double with only the FP8/FP4
// quantisation points rounding; official mode follows model.py's dtype policy (fp32 projections
// and pooling, bf16 cast before the norm) with C1–C8.
//
// State storage: the per-sequence state (K, Z) is held here as double matrices (CompressorState),
// not in dsv4::cache::KVCache's fp32 kv_state/score_state: exact-mode states hold unrounded
// doubles (in official mode every state value is an fp32 number, so a caller may mirror it into a
// KVCache slot losslessly). The produced entries are returned; the caller writes them to its cache
// (main: kv row n_win + i; indexer: indexer_kv row i).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/numerics/quant_margin.hpp"

namespace dsv4 {

// Shape of one compressor (spec 02 §2.6: main compressor of a CSA/HCA layer, or the indexer's).
struct CompressorSpec {
  std::int64_t ratio = 4;           // m: 4 (overlap, κ = 2) or 128 (κ = 1)
  std::int64_t dim = 0;             // d: width of the input x
  std::int64_t head_dim = 0;        // D: 512 (main) or c_I = 128 (indexer)
  std::int64_t rope_head_dim = 64;  // r_d: the last r_d dims carry RoPE
  bool rotate = false;              // indexer: Hadamard + FP4 on all D dims; main: FP8 on [0, D − r_d)
  std::int64_t max_seq_len = 0;     // T: positions 0..T−1 exist; at most ⌊T/m⌋ entries
  double norm_eps = 1e-6;
  RopeParams rope;  // frequency table parameters (rope_params_for_ratio)

  bool overlap() const { return ratio == 4; }
  std::int64_t coff() const { return overlap() ? 2 : 1; }      // κ
  std::int64_t proj_dim() const { return coff() * head_dim; }  // κD
  std::int64_t state_rows() const { return coff() * ratio; }   // κm
  std::int64_t max_entries() const { return max_seq_len / ratio; }

  // Main compressor of a layer with compress ratio `ratio` (D = head_dim, rotate = false).
  static CompressorSpec main(const ModelConfig& c, std::int64_t ratio);
  // The indexer's compressor (ratio 4, D = index_head_dim, rotate = true).
  static CompressorSpec indexer(const ModelConfig& c);
  // Throws std::invalid_argument naming the field: ratio not 4/128, r_d odd or > D, a quantiser
  // block not dividing (D − r_d, block 64) or D (block 32), D not a power of two when rotate, …
  void validate() const;
};

// Parameters (spec 02 §2.6): W_kv, W_gate fp32 [κD, d] (bf16 in the checkpoint, widened), ape
// fp32 [m, κD], norm γ fp32 [D].
struct CompressorWeights {
  LinearWeight wkv;
  LinearWeight wgate;
  Mat ape;
  Vec norm;

  // Deterministic synthetic weights (Philox, seed): W ~ N(0, 1/d) rounded to bf16, ape ~ N(0, 1)
  // and γ ~ 1 + N(0, 0.1²) rounded to bf16. For tests and benchmarks.
  static CompressorWeights synthetic(const CompressorSpec& s, std::uint64_t seed);
};

// Per-sequence decode state (spec 02 §2.6.5): K (kv_state) and Z (score_state), [κm, κD].
struct CompressorState {
  Mat kv;                     // K, initial 0
  Mat score;                  // Z, initial −∞
  Mat x;                      // exact mode: the input rows of the slots of K and Z [κm, d] (for Mp50 re-decisions)
  std::int64_t next_pos = 0;  // the position the next token of this sequence must have
};

// Entries produced by one call for one sequence.
struct CompressedEntries {
  std::int64_t first = 0;  // block index i of entries.row(0); row r is entry first + r
  Mat entries;             // [count, D]: the cache rows (official: bf16 values)
  Mat unquantised;         // [count, D]: the rows before the FP8 / FP4 simulation (this mode's values)
  // Per entry: margins of its quantisation (FP8 of dims [0, D − r_d) with block 64, or FP4 of
  // all D dims with block 32); indices are within the quantised dims of the entry.
  std::vector<QuantMargin> margins;
  // Exact mode (ref/README.md §Precision design): the element decisions (rounding and block
  // scale) certified by the rigorous error bound of the double pipeline, and those that were not
  // (their entry recomputed in Mp50 and re-quantised exactly — recomputed counts entries; flipped:
  // the Mp50 decision differs).
  DecisionStats decisions;
  std::int64_t count() const { return entries.rows(); }
};

// The inputs of one pooled entry (exact-mode certification): slot s takes x.row(s) at the slot's
// ape row s mod m and channels [D, 2D) when overlapping and s ≥ m, else [0, D); valid[s] = 0 is
// a padding slot (Z = −∞).
struct CompressorPoolInput {
  Mat x;                    // [κm, d]
  std::vector<char> valid;  // κm
};
// The pool input of prefill entry i: the x rows of its slots (overlap: block i−1's rows, masked
// invalid for i = 0, then block i's rows; no overlap: block i's rows).
CompressorPoolInput prefill_pool_input(const CompressorSpec& spec, const Mat& x, std::int64_t i);

// Exact mode, one entry: the double values of the quantised dims just before the quantiser, a
// rigorous bound of their error against the exact pipeline, and (when asked) that error itself
// measured against an Mp50 evaluation (value − exact, rounded to double).
struct CompressorEntryCheck {
  std::vector<double> value, bound, error;
};

// spec 02 §2.6.2, the pooling of one entry under precision policy p: per channel (column) of u, z
// [slots, D], w = softmax over the slots of z (official: e_j = C2 exp(fl(z_j − max)), S the C1 sum,
// w_j = fl(e_j / S); z = −∞ a padding slot of weight 0), C = C1 Σ_j fl(u_j·w_j). Compressor::pool
// under the compressor's policy; the op registry's compressor_pool and the GPU kernel's host
// fallback call it directly. Throws std::logic_error when every slot of a channel is padding.
RowVec compressor_softmax_pool(const Precision& p, const Mat& u, const Mat& z);

// Per-token projections of one call (spec 02 §2.6.1), [s, κD] each.
struct CompressorProjections {
  Mat u;        // W_kv·fp32(x)
  Mat z_tilde;  // fl(W_gate·fp32(x) + ape[pos mod m])
};

class Compressor {
 public:
  // `table`: the RoPE table for positions 0..max_seq_len−1 built with the same precision mode;
  // when null it is built from spec.rope. Throws std::invalid_argument on a bad spec or on
  // weights of the wrong shape (naming the field).
  Compressor(Precision prec, CompressorSpec spec, CompressorWeights weights,
             std::shared_ptr<const RopeTable> table = nullptr);

  const CompressorSpec& spec() const { return spec_; }
  const Precision& precision() const { return prec_; }
  const CompressorWeights& weights() const { return w_; }
  const RopeTable& rope_table() const { return *table_; }

  // A fresh state: K = 0, Z = −∞, next_pos = 0.
  CompressorState initial_state() const;
  // The state of a new sequence for a compressor of this spec (K = 0, Z = −∞), without weights.
  static CompressorState fresh_state(const CompressorSpec& spec);
  // Start a new sequence (spec 02 §2.6.5 reset requirement).
  void reset(CompressorState& st) const;

  // spec 02 §2.6.4: prefill of a new sequence (start_pos = 0), x [s, d], s ≥ 1. Resets the state
  // first, leaves it ready for decode at position s, returns entries 0..⌊s/m⌋−1.
  CompressedEntries prefill(const Mat& x, CompressorState& st) const;
  // spec 02 §2.6.5: one token x [1, d] at position pos = st.next_pos > 0. Returns entry ⌊pos/m⌋
  // when (pos + 1) mod m = 0, else no entry.
  CompressedEntries decode(const Mat& x, std::int64_t pos, CompressorState& st) const;
  // Batch form of the official forward: all sequences share start_pos (0: prefill of s tokens
  // each; > 0: one token each). x[b] is [s, d]; states[b] is sequence b's state.
  std::vector<CompressedEntries> forward(const std::vector<Mat>& x, std::int64_t start_pos,
                                         std::vector<CompressorState>& states) const;

  // ---- the pieces, exposed for tests and for callers that need them ----
  // spec 02 §2.6.1 for tokens at positions start_pos .. start_pos + s − 1.
  CompressorProjections project(const Mat& x, std::int64_t start_pos) const;
  // spec 02 §2.6.2: softmax over the slots (rows) per channel, C = Σ fl(u·w). u, z [slots, D].
  RowVec pool(const Mat& u, const Mat& z) const;
  // spec 02 §2.6.3 steps 1–3 on pooled rows C [n, D] of entries first..first+n−1.
  CompressedEntries postprocess(const Mat& pooled, std::int64_t first) const;
  // Exact mode: the certification data of entry `entry` pooled from `in` (for tests).
  CompressorEntryCheck check_entry(const CompressorPoolInput& in, std::int64_t entry, bool with_mp50) const;

 private:
  void check_x(const Mat& x, const char* fn) const;
  Mat unquantised(const Mat& pooled, std::int64_t first) const;  // steps 1–2 and the Hadamard rotation
  std::vector<double> entry_bound(const CompressorPoolInput& in, std::int64_t entry, std::vector<double>& value) const;
  // The entry's quantised dims in Mp50 from the inputs.
  std::vector<Mp50> entry_mp50(const CompressorPoolInput& in, std::int64_t entry) const;
  // Certify every decision of `out` (entry first + r pooled from input(r)) under the policy;
  // re-decide in Mp50 (exact mode; official: nothing to certify).
  void certify(const std::function<CompressorPoolInput(std::int64_t)>& input, CompressedEntries& out) const;

  Precision prec_;
  CompressorSpec spec_;
  CompressorWeights w_;
  std::shared_ptr<const RopeTable> table_;
};

}  // namespace dsv4
