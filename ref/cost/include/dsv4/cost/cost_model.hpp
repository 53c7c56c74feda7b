// Analytic per-token inference FLOPs and KV-cache bytes as functions of the context length L
// (spec 08): DeepSeek-V4 (any ModelConfig: V4-Pro, V4-Flash, config.json), DeepSeek-V3.2
// (MLA + DSA, published dimensions below) and a BF16 GQA baseline (8 KV heads × head dim 128).
//
// Conventions (spec 08 §8.3):
// - FLOPs count 2 per multiply–accumulate of a matrix product (GEMM/GEMV), for ONE new token
//   decoded at position L (it attends to a context of L tokens, itself included). Element-wise work
//   (norms, activations, softmax, RoPE, compressor pooling, the indexer's ReLU-weighted head sum,
//   Sinkhorn) is not counted; it is < 1% of every total.
// - "Equivalent FP8 FLOPs" weight each term by its precision: FP8×FP8 and FP4×FP8 (experts) 1×,
//   BF16 2× (half the tensor-core rate), FP4×FP4 (V4 indexer) 0.5×. Spec 08 §8.3 shows that this
//   accounting, with V4's bf16 `wo_a` at 2× and every other linear at 1×, reproduces the report.
// - KV bytes are per sequence, in the deployment storage format of spec 08 §8.1.
// - MTP blocks are excluded by default (the report compares 61-layer V3.2 with the main models).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"

namespace dsv4::cost {

// ---------------------------------------------------------------------------------------------
// Baselines
// ---------------------------------------------------------------------------------------------

// DeepSeek-V3.2 (V3.2-Exp) — the ONE place its constants live.
// Dimensions: the Hugging Face config.json of deepseek-ai/DeepSeek-V3.2-Exp (identical to
// DeepSeek-V3's: hidden 7168, 61 layers of which the first 3 dense (first_k_dense_replace = 3,
// intermediate 18432), 256 routed + 1 shared experts of 2048, 8 active, 128 MLA heads with
// q_lora_rank 1536, kv_lora_rank 512, qk_nope 128, qk_rope 64, v_head 128, vocab 129280) plus the
// DSA indexer keys index_n_heads 64, index_head_dim 128, index_topk 2048.
// Cache entry bytes: spec 08 §8.1 (from V3.2's public kernels: FlashMLA FP8 sparse KV cache entry
// = 512 FP8 + 4 fp32 scales + 64 BF16 rope dims = 656 bytes; DeepGEMM FP8 indexer key = 128 FP8 +
// one fp32 scale = 132 bytes). Activated parameters: published "37B" (DeepSeek-V3 report); this
// model computes them from the shapes (37.48B without the embedding) and uses the computed value.
struct V32Dims {
  std::int64_t n_layers = 61;
  std::int64_t n_dense_layers = 3;
  std::int64_t dim = 7168;
  std::int64_t vocab_size = 129280;
  std::int64_t dense_inter_dim = 18432;
  std::int64_t moe_inter_dim = 2048;
  std::int64_t n_routed_experts = 256;
  std::int64_t n_shared_experts = 1;
  std::int64_t n_activated_experts = 8;
  std::int64_t n_heads = 128;
  std::int64_t q_lora_rank = 1536;
  std::int64_t kv_lora_rank = 512;
  std::int64_t qk_nope_head_dim = 128;
  std::int64_t qk_rope_head_dim = 64;
  std::int64_t v_head_dim = 128;
  std::int64_t index_n_heads = 64;
  std::int64_t index_head_dim = 128;
  std::int64_t index_topk = 2048;
  std::int64_t mla_entry_bytes = 656;      // spec 08 §8.1
  std::int64_t indexer_entry_bytes = 132;  // spec 08 §8.1
  double published_active_params = 37e9;   // for reference only; not used in the totals
};

// BF16 GQA baseline of the report's Figure 1 ("BF16 GQA8, head dimension 128"): n_kv_heads KV
// heads of head_dim stored in BF16 for every token of every layer. Its FLOPs (not claimed by the
// report) are modelled [C] as the paired V4 model's linear layers (2·N_act, all 1×) plus full
// causal BF16 attention over L tokens with n_q_heads query heads of head_dim.
struct GqaDims {
  std::int64_t n_layers = 61;
  std::int64_t n_kv_heads = 8;
  std::int64_t head_dim = 128;
  std::int64_t bytes_per_value = 2;  // BF16
  std::int64_t n_q_heads = 128;
  double linear_flops = 0;  // 2·N_act of the paired model
  std::string paired_with = "v4-pro";
};

enum class Arch { kV4, kV32, kGqa };

// A model the cost model can evaluate.
struct ModelDesc {
  Arch arch = Arch::kV4;
  std::string name;
  ModelConfig v4;  // Arch::kV4
  V32Dims v32;     // Arch::kV32
  GqaDims gqa;     // Arch::kGqa
};

ModelDesc v4_model(const ModelConfig& cfg);
ModelDesc v32_model();
// GQA8 baseline with the layer count, query heads and linear FLOPs of a V4 model.
ModelDesc gqa8_model(const ModelConfig& paired);

// "v4-pro", "v4-flash", "v3.2", "gqa8", any other built-in ModelConfig name, or a config.json path.
// "gqa8" takes its depth from `paired` when given (the model it is compared with), else V4-Pro.
// "gqa8:<v4 config>" pairs explicitly. Throws std::invalid_argument / dsv4::ConfigError.
ModelDesc resolve_model(const std::string& name, const ModelDesc* paired = nullptr);

// Parses "1M", "128K", "4096", "64k" (K = 1024, M = 1024², G = 1024³; spec 08 uses L = 2^20 for
// "1M"). Throws std::invalid_argument on anything else, zero, or overflow.
std::int64_t parse_context(const std::string& text);

// ---------------------------------------------------------------------------------------------
// Weights of the equivalent-FP8 accounting (spec 08 §8.3)
// ---------------------------------------------------------------------------------------------
struct PrecisionWeights {
  double fp8 = 1.0;        // FP8×FP8 GEMMs and FP4 experts × FP8 activations
  double bf16 = 2.0;       // BF16 GEMMs / BF16 attention (half the FP8 peak)
  double fp4_fp4 = 0.5;    // FP4×FP4 (V4 lightning indexer scores)
  double other_lin = 1.0;  // bf16/fp32-stored small linears other than wo_a (compressor, gate,
                           // weights_proj, mHC fn, head): counted 1× as in spec 08 §8.3
};

struct CostOptions {
  bool include_mtp = false;      // add the MTP blocks' caches (and nothing to FLOPs)
  bool with_scale_bytes = true;  // count UE8M0 scale bytes in cache entries (spec 08 §8.1)
  PrecisionWeights weights;
};

// ---------------------------------------------------------------------------------------------
// Breakdowns
// ---------------------------------------------------------------------------------------------
struct FlopTerm {
  std::string name;     // e.g. "attention projections (fp8)"
  std::string section;  // spec section it follows
  double raw = 0;       // FLOPs (2 per MAC)
  double weight = 1;    // precision weight
  double equiv() const { return raw * weight; }
};

struct FlopsBreakdown {
  std::vector<FlopTerm> terms;
  double raw_total() const;
  double equiv_total() const;
  // Sum of the terms whose name starts with `prefix`, equivalent FLOPs.
  double equiv_of(const std::string& prefix) const;
};

struct KvTerm {
  std::string name;
  std::string section;
  double entries = 0;  // cached entries per sequence (summed over layers)
  double bytes = 0;
};

struct KvBreakdown {
  std::vector<KvTerm> terms;
  double state_bytes = 0;  // compressor decode state, fp32, context-independent: not in total()
  double total() const;
};

struct CostReport {
  std::string model;
  std::int64_t context = 0;
  FlopsBreakdown flops;
  KvBreakdown kv;
};

CostReport evaluate(const ModelDesc& m, std::int64_t context, const CostOptions& opt = {});

// ---------------------------------------------------------------------------------------------
// Individual terms. V4: summed over the main layers (compress_ratios[0..n_layers-1]); FLOPs 2/MAC,
// raw (unweighted). L = context length.
// ---------------------------------------------------------------------------------------------
struct LayerCounts {
  std::int64_t swa = 0, csa = 0, hca = 0, mtp_swa = 0, mtp_csa = 0, mtp_hca = 0;
};
LayerCounts layer_counts(const ModelConfig& c);  // spec 08 §8.4 step 1

// Per-layer weight element counts of V4 (spec 00 §0.6 shapes).
double v4_attn_fp8_params(const ModelConfig& c);                        // wq_a + wq_b + wkv + wo_b
double v4_attn_wo_a_params(const ModelConfig& c);                       // grouped wo_a (bf16): G·d_g · H·c/G
double v4_compressor_params(const ModelConfig& c, std::int64_t ratio);  // wkv + wgate: 2·κ·c·d
double v4_indexer_params(const ModelConfig& c);                         // wq_b + weights_proj + its compressor
double v4_moe_params(const ModelConfig& c);                             // gate + (k routed + shared)·3·d·d_e
double v4_mhc_params(const ModelConfig& c);                             // hc_attn_fn + hc_ffn_fn per layer
double v4_head_params(const ModelConfig& c);                            // head + hc_head_fn
// Activated parameters without the embedding (spec 08 §8.3 N_act; Pro 48.85B, Flash 13.27B).
double v4_active_params(const ModelConfig& c);

// FLOPs terms (spec 08 §8.3).
double v4_flops_attn_projections(const ModelConfig& c);  // fp8 part: 2·Σ_layers (wq_a+wq_b+wkv+wo_b)
double v4_flops_wo_a(const ModelConfig& c);              // bf16 grouped output projection
double v4_flops_compressor(const ModelConfig& c);        // main compressors (CSA κ=2, HCA κ=1)
double v4_flops_indexer_projections(const ModelConfig& c);
double v4_flops_indexer_scores(const ModelConfig& c, std::int64_t L);                  // Σ_CSA 2·n_I·c_I·⌊L/4⌋
double v4_flops_core_attention(const ModelConfig& c, std::int64_t L);                  // Σ 4·c·H·(entries)
double v4_attended_entries(const ModelConfig& c, std::int64_t ratio, std::int64_t L);  // one layer
double v4_flops_moe(const ModelConfig& c);
double v4_flops_mhc(const ModelConfig& c);
double v4_flops_head(const ModelConfig& c);

// KV terms (spec 08 §8.2), bytes per sequence.
double v4_kv_window_bytes(const ModelConfig& c, std::int64_t L, bool with_scales = true, bool include_mtp = false);
double v4_kv_compressed_bytes(const ModelConfig& c, std::int64_t ratio, std::int64_t L, bool with_scales = true,
                              bool include_mtp = false);  // main entries of all layers with this ratio
double v4_kv_indexer_bytes(const ModelConfig& c, std::int64_t L, bool with_scales = true, bool include_mtp = false);
double v4_kv_bytes(const ModelConfig& c, std::int64_t L, bool with_scales = true, bool include_mtp = false);
double v4_state_bytes(const ModelConfig& c, bool include_mtp = false);  // compressor fp32 state

// V3.2 (spec 08 §8.2, §8.3).
double v32_attn_params(const V32Dims& v);                           // MLA per layer (wq_a, wq_b, wkv_a, wkv_b, wo)
double v32_indexer_params(const V32Dims& v);                        // wq_b, wk, weights_proj per layer
double v32_active_params(const V32Dims& v);                         // without the embedding
double v32_flops_indexer_scores(const V32Dims& v, std::int64_t L);  // 61·2·64·128·L
double v32_flops_core_attention(const V32Dims& v, std::int64_t L);  // 61·2·128·(576+512)·min(L,2048)
double v32_kv_bytes(const V32Dims& v, std::int64_t L);              // 61·(656+132)·L

// GQA baseline (spec 08 §8.2): n_layers·2·n_kv·head_dim·2 bytes per token.
double gqa_kv_bytes(const GqaDims& g, std::int64_t L);
double gqa_flops_attention(const GqaDims& g, std::int64_t L);  // n_layers·4·head_dim·n_q·L

}  // namespace dsv4::cost
