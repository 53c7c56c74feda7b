// The CPU reference for the tokens the sparse attention kernel leaves undecided (private header of
// gpu/src; implemented in sparse_attention_reference.cpp, compiled by the host compiler: it
// includes Eigen).
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4::gpu::detail {

// o[t, :] = the official-mode dsv4::sparse_attention (ref/model/src/sparse_attention.cpp) of token t,
// for every t in tokens (the layout of gpu::sparse_attention; host pointers). Throws
// std::invalid_argument where the reference refuses a token's list.
void sparse_attention_reference_tokens(const float* q, std::int64_t heads, std::int64_t c, const std::int32_t* lists,
                                       std::int64_t width, const float* kv, std::int64_t n_kv, const float* sink,
                                       double scale, const std::vector<std::int64_t>& tokens, float* o);

}  // namespace dsv4::gpu::detail
