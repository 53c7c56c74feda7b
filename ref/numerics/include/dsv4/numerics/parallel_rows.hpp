// Row-parallel loops of the reference: f(r0, r1) over [0, rows) split into contiguous ranges,
// one per thread (at most gemm_threads(), at least `min_rows` rows each). Every row is computed
// by exactly one call, so where f computes each row on its own — no reduction across rows — the
// thread count never changes a bit (the determinism tests run 1 and 4 threads). The first
// exception of any range is rethrown after every thread has finished.
#pragma once

#include <cstdint>
#include <functional>

namespace dsv4 {

void parallel_rows(std::int64_t rows, std::int64_t min_rows, const std::function<void(std::int64_t, std::int64_t)>& f);

}  // namespace dsv4
