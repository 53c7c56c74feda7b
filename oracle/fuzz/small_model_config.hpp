// The small model of the golden and certify harnesses (fuzz_golden_common.cpp) and of their
// findings' regression tests (tests/fuzz_findings_test.cpp): a 3-layer model small enough that
// generating its golden and recomputing its modules takes milliseconds (about a second under ASan):
// one SWA layer, one CSA layer (compressor + indexer), one HCA layer, the MTP block; dim 128,
// vocab 64.
#pragma once

namespace dsv4::fuzz {

inline constexpr const char* kSmallModelConfig =
    R"({"max_batch_size": 1, "max_seq_len": 64, "vocab_size": 64, "dim": 128,
 "moe_inter_dim": 128, "n_layers": 3, "n_hash_layers": 1, "n_mtp_layers": 1, "n_heads": 2, "n_routed_experts": 4,
 "n_shared_experts": 1, "n_activated_experts": 2, "score_func": "sqrtsoftplus", "route_scale": 2.5,
 "swiglu_limit": 10.0, "q_lora_rank": 128, "head_dim": 128, "rope_head_dim": 64, "o_groups": 1, "o_lora_rank": 128,
 "window_size": 4, "compress_ratios": [0, 4, 128, 0], "rope_theta": 10000.0, "compress_rope_theta": 160000.0,
 "rope_factor": 16.0, "original_seq_len": 65536, "beta_fast": 32.0, "beta_slow": 1.0, "index_n_heads": 2,
 "index_head_dim": 128, "index_topk": 4, "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-06, "norm_eps": 1e-06,
 "dtype": "fp8", "scale_fmt": "ue8m0", "expert_dtype": "fp4"})";

}  // namespace dsv4::fuzz
