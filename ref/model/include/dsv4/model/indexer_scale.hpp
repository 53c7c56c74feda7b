// The Lightning Indexer's head-weight constant (spec 02 §2.7 step 3), the one definition that
// Indexer::run (ref/model/src/indexer.cpp) and GpuModel (gpu/src/gpu_model.cpp) use.
#pragma once

#include <cstdint>

namespace dsv4 {

// c_I^−1/2 · n_I^−1/2 in double (the callers round it to fp32: ω = bf16(fl32(bf16(W_w x) ×
// fl32(c)))); with omit_heads (Deviation kIndexerScaleOmitted, bug catalogue only) without the
// n_I^−1/2 factor.
double indexer_weight_scale(std::int64_t heads, std::int64_t head_dim, bool omit_heads = false);

}  // namespace dsv4
