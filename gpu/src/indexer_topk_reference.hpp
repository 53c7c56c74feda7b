// The CPU reference for the query rows the indexer top-k kernels leave undecided (private header of
// gpu/src; implemented in indexer_topk_reference.cpp, compiled by the host compiler: it includes
// Eigen).
#pragma once

#include <cstdint>

#include "dsv4/gpu/indexer_topk.hpp"

namespace dsv4::gpu::detail {

// indexer_select_official of one row (ref/model/src/indexer.cpp): q [heads·head_dim], w [heads] →
// scores [entries], list [k].
void indexer_topk_reference(const float* q, const float* w, std::int32_t visible, const float* cache,
                            const IndexerTopkShape& shape, float* scores, std::int32_t* list);

}  // namespace dsv4::gpu::detail
