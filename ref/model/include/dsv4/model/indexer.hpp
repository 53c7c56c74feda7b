// The Lightning Indexer of CSA layers (spec 02 §2.7; official code class `Indexer`): scores every
// visible compressed entry for every query and selects the top-k that sparse attention reads.
//
// Recordable outputs (canonical name `layers.N.attn.indexer`): the FP4-simulated queries, the head
// weights ω, the index scores I (after the causal mask), the selected lists with offsets, the
// margin of every row's top-k cut, the compressor entries written this call
// (`layers.N.attn.indexer.compressor`) and the quantisation margins of q.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/model/index_builders.hpp"
#include "dsv4/model/linear.hpp"
#include "dsv4/model/precision.hpp"
#include "dsv4/model/rope.hpp"
#include "dsv4/model/topk.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/numerics/quant_margin.hpp"

namespace dsv4 {

// Parameters (spec 02 §2.7): wq_b FP8 [n_I·c_I, d_c], weights_proj bf16 [n_I, d], the ratio-4
// rotating compressor (D = c_I).
struct IndexerWeights {
  LinearWeight wq_b;
  LinearWeight weights_proj;
  CompressorWeights compressor;
  // Deterministic synthetic weights (Philox): FP8 wq_b with power-of-two tile scales, bf16
  // weights_proj, CompressorWeights::synthetic for the compressor.
  static IndexerWeights synthetic(const ModelConfig& c, std::uint64_t seed);
};

// Per-sequence state: the indexer compressor's (K, Z) and the indexer cache (rows = entries).
struct IndexerState {
  CompressorState compressor;
  Mat cache;                 // [⌊T/4⌋, c_I]; rows 0..entries−1 valid
  std::int64_t entries = 0;  // compressed entries written so far
};

struct IndexerOutput {
  Mat q;                            // [s·n_I, c_I] after RoPE, Hadamard and FP4 simulation
  Mat weights;                      // [s, n_I] ω
  Mat scores;                       // [s, ⌊e/4⌋] I (−∞ where masked)
  Mat score_bounds;                 // exact mode: rigorous |error| bound of every finite score; official: 0
  IndexLists lists;                 // [s, k] with offsets (prefill −1 for invisible)
  std::vector<TopkMargin> margins;  // per query row
  CompressedEntries compressed;     // entries the indexer compressor wrote in this call
  QuantMargin q_margin;             // FP4 simulation of q (of the double values, before any re-decision)
  // Exact mode: certification of the FP4 decisions of q (spec 02 §2.7 step 1, kv_certify.hpp);
  // recomputed counts the (token, head) rows recomputed in Mp50.
  DecisionStats q_decisions;
  // Exact mode: the top-k cuts (one per query row) certified or re-decided (recomputed counts the
  // candidates recomputed in Mp50).
  DecisionStats topk_decisions;
};

class Indexer {
 public:
  // `table`: the attention layer's RoPE table (compress base + YaRN), shared with the compressor.
  Indexer(Precision prec, const ModelConfig& cfg, IndexerWeights weights, std::shared_ptr<const RopeTable> table);

  IndexerState initial_state() const;
  const Compressor& compressor() const { return compressor_; }

  // spec 02 §2.7 prefill (start_pos 0): x [s, d] (attn_norm output), qr [s, d_c] (q_norm output);
  // offset = s. Resets the state, runs the compressor prefill, scores with the causal mask.
  IndexerOutput prefill(const Mat& x, const Mat& qr, IndexerState& st, std::int64_t offset) const;
  // spec 02 §2.7 decode at position pos > 0 (one token); offset = n_win.
  IndexerOutput decode(const Mat& x, const Mat& qr, std::int64_t pos, IndexerState& st, std::int64_t offset) const;

 private:
  IndexerOutput run(const Mat& x, const Mat& qr, std::int64_t start_pos, IndexerState& st, std::int64_t offset) const;

  Precision prec_;
  ModelConfig cfg_;
  IndexerWeights w_;
  std::shared_ptr<const RopeTable> table_;
  Compressor compressor_;
};

// spec 02 §2.7 step 4 for one head and one entry: s_h = bf16(q_h·K_τ) with the C1 dot (official;
// exact mode: the double dot).
double indexer_head_score(const Precision& p, const double* q, const double* k, std::int64_t head_dim);
// spec 02 §2.7 step 5 for one query and one visible entry: I = bf16(Σ_h bf16(fl(max(s_h, 0)·ω_h)))
// with the C1 sum, s the heads' scores (indexer_head_score), w the head weights ω; ph [heads]
// receives the products (exact mode bounds them).
double indexer_score(const Precision& p, const double* s, const double* w, std::int64_t heads, double* ph);
// spec 02 §2.7 step 7: the list entry of a selected candidate idx: idx + offset, or −1 when idx ≥
// visible (prefill: a masked candidate the top-k reached because fewer than k entries are visible;
// decode sees every entry).
std::int32_t indexer_list_entry(std::int64_t idx, std::int64_t visible, std::int64_t offset);

// One query row of steps 4–7 in official mode on flat arrays (the op registry's indexer_topk and
// the GPU kernel's host fallback; Indexer::run computes the same through the helpers above): q
// [heads·head_dim] (the query's FP4-simulated heads), w [heads] (ω), cache [entries, head_dim]
// (the indexer cache's first ⌊e/4⌋ rows); entries τ ≥ visible are masked (−∞); k = the number
// selected (min(index_topk, entries)) by the C4 top-k (descending score, ties by ascending index).
struct IndexerRowSelection {
  std::vector<double> scores;      // [entries], bf16 values or −∞
  std::vector<std::int32_t> list;  // [k], indexer_list_entry of the selected candidates in top-k order
};
IndexerRowSelection indexer_select_official(const float* q, const float* w, const float* cache, std::int64_t entries,
                                            std::int64_t heads, std::int64_t head_dim, std::int64_t visible,
                                            std::int64_t k, std::int64_t offset);

// Exact mode, spec 02 §2.7 step 1 (derivation in indexer.cpp): rigorous bound of |q̂ − q| for every
// element of the pre-FP4 query of every (token, head) row [s·n_I] — one value per row, the Hadamard
// mixing all c_I dims. q̂: the double pipeline (q_lin = matmul_nt(qr, wq_b) [s, n_I·c_I], q_rope =
// q_lin after apply_rope_inplace at positions start_pos + t); q: the exact value of the same maths
// on the same qr and wq_b (RoPE by the exact angle t·f_i, the exact orthonormal Hadamard). qr is the
// indexer's exact input: its own error belongs to the attention's q path, certified upstream.
Vec indexer_q_error_bound(const Mat& qr, const Mat& wq_b, const Mat& q_lin, const Mat& q_rope, const RopeTable& table,
                          std::int64_t start_pos, std::int64_t head_dim);
// Mp50 value of the pre-FP4 query (after RoPE and Hadamard) of token row `row` (position pos), head
// `head`, from qr and the exact wq_b values.
std::vector<Mp50> indexer_q_head_mp50(const Mat& qr, std::int64_t row, const Mat& wq_b, const RopeTable& table,
                                      std::int64_t pos, std::int64_t head, std::int64_t head_dim);

// Synthetic FP8 weight [n, k]: N(0, std²) values, one power-of-two scale per 128×128 tile chosen
// so the tile's amax fits e4m3, codes RNE (satfinite). Deterministic in (seed, name).
LinearWeight synthetic_fp8_weight(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std);
// Synthetic FP4 weight [n, k] (k a multiple of 128): N(0, std²) values, one power-of-two scale
// per 1×32 block chosen so the block's amax fits e2m1 (±6), codes RNE (saturating). Deterministic
// in (seed, name).
LinearWeight synthetic_fp4_weight(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std);
// Synthetic bf16 weight [n, k]: N(0, std²) rounded to bf16.
LinearWeight synthetic_bf16_weight(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std);
// The model-defined block quantisation points (spec 01 §1.4 / §1.5) on columns [col0, col0 + cols)
// of every row of x, in place: official mode the fp32 kernels (act_quant_inplace UE8M0 /
// fp4_act_quant_inplace), exact mode block_quant_exact_inplace. Returns the margins.
QuantMargin quantise_columns(const Precision& p, Mat& x, std::int64_t col0, std::int64_t cols, int block,
                             BlockQuant kind);

}  // namespace dsv4
