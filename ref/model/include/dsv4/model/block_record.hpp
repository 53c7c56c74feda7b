// The recording of a block's multi-output sites for a batch (one pointer per sequence), under the
// names of the output table (output_table.hpp): record_block records every site through these, and
// `dsv4 golden verify --recompute-only` (oracle/golden recompute.hpp) records the sites it
// recomputes one by one. `base` is "<step>/<module path>" of the site ("prefill/layers.3.hc_attn",
// "prefill/layers.3" for the attention and the gate, whose outputs lie in sub-modules).
#pragma once

#include <string>
#include <vector>

#include "dsv4/model/attention.hpp"
#include "dsv4/model/gate.hpp"
#include "dsv4/model/mhc.hpp"
#include "dsv4/model/recorder.hpp"

namespace dsv4 {

// <base>/{y,post,comb}
void record_hc_pre(Recorder* rec, const std::string& base, const std::vector<const HcPreOutput*>& batch);
// <base>.attn.q_norm/out, <base>.attn/kv, <base>.attn.compressor/out (entries written in the call),
// <base>.attn.indexer/{scores,out,margin} (CSA), <base>.attn.wo_a/out, <base>.attn/out
void record_attention(Recorder* rec, const std::string& base, const std::vector<const AttentionOutput*>& batch);
// <base>.ffn.gate/{scores,out0,out1,margin}
void record_gate(Recorder* rec, const std::string& base, const std::vector<const GateOutput*>& batch);

}  // namespace dsv4
