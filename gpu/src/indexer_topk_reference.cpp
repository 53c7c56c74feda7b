// Host fallback of the indexer top-k kernels: the official-mode reference (indexer_select_official)
// on one query row.
#include "indexer_topk_reference.hpp"

#include <algorithm>

#include "dsv4/model/indexer.hpp"

namespace dsv4::gpu::detail {

void indexer_topk_reference(const float* q, const float* w, std::int32_t visible, const float* cache,
                            const IndexerTopkShape& shape, float* scores, std::int32_t* list) {
  const IndexerRowSelection r =
      indexer_select_official(q, w, cache, shape.entries, shape.heads, shape.head_dim, visible, shape.k, shape.offset);
  std::transform(r.scores.begin(), r.scores.end(), scores, [](double v) { return static_cast<float>(v); });
  std::copy(r.list.begin(), r.list.end(), list);
}

}  // namespace dsv4::gpu::detail
