// GPU embedding (spec 05 §5.1; official code ParallelEmbedding at world size 1): h = embed[id], a
// bf16 row gather — bit-exact with the reference (dsv4/model/head.hpp embed_tokens) by being a copy,
// and batch-invariant: row r is the table row of ids[r] alone.
//
// Plain C++ header (no CUDA types). CUDA failures throw dsv4::gpu::CudaError, bad arguments (an id
// outside [0, vocab) included, as the reference) std::invalid_argument.
#pragma once

#include <cstdint>
#include <vector>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu {

// ids [rows], embed [vocab, dim] → h [rows, dim].
std::vector<float> embedding(const std::int64_t* ids, std::int64_t rows, const float* embed, std::int64_t vocab,
                             std::int64_t dim);

// Device-pointer form. A row whose id lies outside [0, vocab) is not read from the table: it is
// written as NaN (the host form refuses such an id first).
void embedding_device(const std::int64_t* ids, std::int64_t rows, const float* embed, std::int64_t vocab,
                      std::int64_t dim, float* h, void* stream = nullptr);

}  // namespace dsv4::gpu
