// Which optimizer trains a parameter, by its official checkpoint name (spec 06 §6.1; report §2.4):
//   AdamW — the embedding (`embed.weight`), the head (`head.weight`), every RMSNorm gain
//           (`*norm.weight`: attn_norm, ffn_norm, q_norm, kv_norm, the compressors' norm, the final
//           norm, MTP's enorm, hnorm and norm), the mHC static biases and gating factors
//           (`hc_*_base`, `hc_*_scale`, also MTP's hc_head);
//           and, by the project's choice [C] (the report is silent):
//           `attn_sink` — a vector (one logit per head) with no matrix structure to orthogonalise;
//             AdamW is what the report uses for every other non-matrix parameter;
//           `ape` — the compressors' [ratio, d] additive positional bias: a table indexed by
//             position like the embedding (each row acts alone on its own tokens), not a linear map,
//             so its singular vectors mean nothing; it goes where the embedding goes.
//   Muon  — every other weight matrix (`*.weight` of a linear layer: attention projections,
//           compressor wkv/wgate, indexer wq_b/weights_proj, router `gate.weight`, expert and
//           shared-expert w1/w2/w3, MTP e_proj/h_proj) and the mHC mixing matrices `hc_*_fn`.
//           One matrix per checkpoint tensor — each expert's w1, w2, w3 are separate matrices
//           (report §3.4.1) — with one exception: `wo_a` [o_groups·o_lora_rank, ·] holds o_groups
//           separate linear maps (the grouped output projection, spec 02 §2.10: the groups share
//           nothing), so Muon orthogonalises each of its o_groups row blocks on its own
//           (muon_row_blocks) [C]. Tensors that are one linear map stay one matrix: wq_b is not split
//           by head, the ratio-4 compressor's wkv/wgate not into their two overlap halves, hc_*_fn
//           not into its pre/post/comb rows [C].
//   none  — not a gradient-trained parameter: `gate.bias` (the router bias follows the
//           auxiliary-loss-free update, spec 03 §3.4; balance_loss.hpp), `gate.tid2eid` (a fixed
//           hash table), and `*.scale` (the FP8/FP4 block scales of a quantised weight: derived
//           from the master weight by the quantiser, never stepped — spec 06 §6.8).
// Any other name throws std::invalid_argument naming it (the classifier is total over the names
// published_checkpoint_tensors lists for every built-in config: tests/optimizer_assignment_test).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dsv4/config/model_config.hpp"

namespace dsv4 {

enum class OptimizerKind { kMuon, kAdamW, kNone };

struct OptimizerAssignment {
  OptimizerKind kind;
  const char* reason;  // one line: the rule that decided
};

OptimizerAssignment optimizer_for(std::string_view official_name);

// The number of equal row blocks Muon treats as separate matrices: c.o_groups for `*.attn.wo_a.weight`,
// 1 for every other Muon parameter; std::invalid_argument for a parameter Muon does not train.
std::int64_t muon_row_blocks(std::string_view official_name, const ModelConfig& c);

const char* optimizer_kind_name(OptimizerKind k);  // "muon", "adamw", "none"

}  // namespace dsv4
