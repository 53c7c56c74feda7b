// The dense (bf16 / fp32 weight) linear kernel of linear.cu, for the kernels built on it (private
// header of gpu/src): the grouped output projection, the MoE experts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dsv4::gpu::detail {

// y[m, g·N + n] = C1 Σ_{i<K} x[⌊m / x_repeat⌋, g·K + i] · w[(b_m·G + g)·N + n, i], rounded to bf16 when
// bf16_out, for m < rows, g < G = groups, n < N = n_out; b_m = w_block[m] (nullptr: 0): the weight is
// stacked [blocks, G·N, K] and row m picks its block (an MoE expert), x [rows / x_repeat, G·K] (each x
// row feeds x_repeat consecutive output rows: a token's k routed slots), y and undecided [rows, G·N].
// The plain linear is G = 1, x_repeat = 1, w_block = nullptr. One warp per output element (linear.cu):
// its bits depend on its x row, its weight row and nothing else. Asynchronous on `stream`; rows > 0.
void linear_dense_launch(const float* x, std::int64_t rows, std::int64_t x_repeat, std::int64_t groups, std::int64_t k,
                         const float* w, const std::int64_t* w_block, std::int64_t n_out, bool bf16_out, float* y,
                         std::uint8_t* undecided, cudaStream_t stream);

}  // namespace dsv4::gpu::detail
