// The CPU reference for the rows the head kernels leave undecided (private header of gpu/src;
// implemented in head_reference.cpp, compiled by the host compiler: it includes Eigen).
#pragma once

#include <cstdint>

namespace dsv4::gpu::detail {

// The head of one row in official mode (ref/model/src/head.cpp head_rows) → hc_head [d], norm [d],
// logits [V].
void head_reference(const float* x, std::int64_t n, std::int64_t d, const float* hc_fn, const float* hc_base,
                    float hc_scale, const float* norm, const float* head, std::int64_t vocab, double hc_eps,
                    double norm_eps, float* hc_head, float* norm_out, float* logits);

}  // namespace dsv4::gpu::detail
