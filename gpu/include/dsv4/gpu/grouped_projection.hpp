// GPU grouped output projection of attention (spec 02 §2.10 step 2; official code Attention.forward,
// the wo_a einsum), bit-exact with the official-mode reference (dsv4/model/grouped_projection.hpp
// grouped_output_projection with Precision(Mode::kOfficial) and one bf16 LinearWeight per group) and
// batch-invariant.
//
// o [rows, G·P] is G groups of P columns; wo_a [G·d_g, P] is G blocks of d_g rows; y [rows, G·d_g]:
//   y[m, g·d_g + n] = bf16(C1 Σ_{i<P} o[m, g·P + i] · wo_a[g·d_g + n, i]),
// the bf16 linear of each group, computed by the linear kernel's dense code (gpu/src/linear.cu,
// linear_dense_launch) in one launch over every (row, group, output): from 8 rows the tiled DMMA
// kernel (a group a grid layer), else one warp per output element; exact double products, their sum
// rounded once (decided by a rigorous bound or the compensated sum), then to bf16. An element the device
// cannot decide is flagged and the host entry point recomputes it with the reference (the
// official linear of its group on its row).
//
// Plain C++17 header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments
// std::invalid_argument (before any CUDA call).
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

struct GroupedProjectionBatch {
  std::vector<float> y;         // [rows, G·d_g], bf16 values
  std::int64_t recomputed = 0;  // elements the device left undecided, recomputed by the CPU reference
};

// o [rows, groups·per_group] (bf16 values), wo_a [groups·dg, per_group] (bf16 values); per_group in
// [1, 2^24], groups and dg positive.
GroupedProjectionBatch grouped_projection(const float* o, std::int64_t rows, std::int64_t groups,
                                          std::int64_t per_group, const float* wo_a, std::int64_t dg);

// Device-pointer form (asynchronous on `stream`): y [rows, groups·dg]; undecided [rows, groups·dg]
// bytes, 1 where the element must be recomputed on the host.
void grouped_projection_device(const float* o, std::int64_t rows, std::int64_t groups, std::int64_t per_group,
                               const float* wo_a, std::int64_t dg, float* y, std::uint8_t* undecided,
                               void* stream = nullptr);

}  // namespace dsv4::gpu
