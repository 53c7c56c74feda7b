// Device-resident weights (gpu/README.md §GpuModel, issue 18): a weight copied to the device once
// and kept, and the host-memory forms of the kernels whose weight is such a copy. The host values
// stay the source of the host half of the precision contract: an element the device leaves
// undecided is recomputed on the host from the host weight, as in the plain host-memory forms
// (which are these forms on a weight uploaded for the one call).
//
// Plain C++17 header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "dsv4/gpu/grouped_projection.hpp"
#include "dsv4/gpu/linear.hpp"
#include "dsv4/gpu/moe_combine.hpp"

namespace dsv4::gpu {

// An owning device copy of `bytes` host bytes (cudaMalloc and one cudaMemcpy; cudaFree when the
// last owner goes). bytes == 0: an empty owner (nullptr).
std::shared_ptr<const void> device_copy(const void* host, std::size_t bytes);

// `linear` (linear.hpp) with the weight on the device: `host_w` the weight's host storage (read by
// the recomputation of undecided elements), `device_w` the same weight's device copy (read by the
// kernel). x is copied in and y out for the call.
LinearBatch linear_resident(const float* x, std::int64_t rows, const LinearWeightView& host_w,
                            const LinearWeightView& device_w, ScaleFormat act_fmt);

// `moe_combine` (moe_combine.hpp) with the expert weights on the device: `host_w` (the
// recomputation of undecided tokens) and `device_w` (the same experts' device copies, same shapes).
MoeCombineBatch moe_combine_resident(const float* x, std::int64_t tokens, const float* weights,
                                     const std::int64_t* indices, std::int64_t k, const MoeExpertsView& host_w,
                                     const MoeExpertsView& device_w, double limit);

// `rope` (rope.hpp) with the cos / sin tables on the device (no host recomputation: every element
// is decided on the device).
std::vector<float> rope_resident(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t head_dim,
                                 const std::int64_t* positions, const float* device_cos, const float* device_sin,
                                 std::int64_t table_positions, std::int64_t rope_head_dim, bool inverse);

// `embedding` (embedding.hpp) with the table on the device.
std::vector<float> embedding_resident(const std::int64_t* ids, std::int64_t rows, const float* device_embed,
                                      std::int64_t vocab, std::int64_t dim);

// `grouped_projection` (grouped_projection.hpp) with wo_a on the device: `wo_a` its host values (the
// recomputation of undecided elements), `device_wo_a` their device copy.
GroupedProjectionBatch grouped_projection_resident(const float* o, std::int64_t rows, std::int64_t groups,
                                                   std::int64_t per_group, const float* wo_a, const float* device_wo_a,
                                                   std::int64_t dg);

}  // namespace dsv4::gpu
