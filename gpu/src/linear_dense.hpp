// The dense (bf16 / fp32 weight) linear kernel of linear.cu, for the kernels built on it (private
// header of gpu/src): the grouped output projection, the MoE experts; and every kind's launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dsv4/gpu/linear.hpp"

namespace dsv4::gpu::detail {

// y[m, g·N + n] = C1 Σ_{i<K} x[⌊m / x_repeat⌋, g·K + i] · w[(b_m·G + g)·N + n, i], rounded to bf16 when
// bf16_out, for m < rows, g < G = groups, n < N = n_out; b_m = w_block[m] (nullptr: 0): the weight is
// stacked [blocks, G·N, K] and row m picks its block (an MoE expert), x [rows / x_repeat, G·K] (each x
// row feeds x_repeat consecutive output rows: a token's k routed slots), y and undecided [rows, G·N].
// The plain linear is G = 1, x_repeat = 1, w_block = nullptr. From 8 rows with x_repeat = 1 and no
// w_block the tiled DMMA kernel (one CTA per 64 × 64 outputs of a group), its undecided elements and
// every other launch by the warp kernel (one warp per output element; linear.cu): an element's bits
// depend on its x row, its weight row and nothing else. Asynchronous on `stream`; rows > 0.
void linear_dense_launch(const float* x, std::int64_t rows, std::int64_t x_repeat, std::int64_t groups, std::int64_t k,
                         const float* w, const std::int64_t* w_block, std::int64_t n_out, bool bf16_out, float* y,
                         std::uint8_t* undecided, cudaStream_t stream);

// y[m, n] = the linear of w's kind (linear.hpp) on x row ⌊m / x_repeat⌋ and weight row n of block
// w_block[m] (nullptr: 0) of a stacked weight (stacked_block, linear.hpp), for m < rows: kBF16 / kFP32
// through linear_dense_launch; kFP8 / kFP4 act_quant the ⌈rows / x_repeat⌉ x rows (block 128, act_fmt)
// into act_codes [x rows, K] and act_scales [x rows, K/128] (the workspace; unused by the dense kinds),
// then fp8_gemm / fp4_gemm per element (the tiled DMMA kernel from 8 rows with x_repeat = 1 and no
// w_block, else the warp kernel): an element's bits depend on its x row, its weight row (with its
// scales) and nothing else. linear_device is rows of x_repeat 1, no blocks.
// Asynchronous on `stream`; arguments checked by the caller.
void linear_launch(const float* x, std::int64_t rows, std::int64_t x_repeat, const LinearWeightView& w,
                   const std::int64_t* w_block, ScaleFormat act_fmt, float* y, std::uint8_t* undecided,
                   std::uint8_t* act_codes, float* act_scales, cudaStream_t stream);

}  // namespace dsv4::gpu::detail
