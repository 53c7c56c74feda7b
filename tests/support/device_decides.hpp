// The GPU tests' "the device decides nearly everything" check (tests/gpu_<stem>_test.cpp): a kernel
// may hand a row (token, element) whose C1 sum or C2 function it cannot decide back to the host,
// which recomputes it with the reference; this must be rare over every registry case of the op.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <utility>

#include "dsv4/ops/registry.hpp"

namespace dsv4::test {

// Over every case of the registered op `stem` (seed 1), run(case) → {recomputed on the host, units
// of the case} (units: tokens, rows or elements, named by `units`). Prints both totals; expects more
// than `at_least` units in all and at most one in `per` recomputed.
template <class Run>
void expect_device_decides(const char* stem, const char* units, std::int64_t at_least, std::int64_t per, Run run) {
  std::int64_t recomputed = 0, total = 0;
  for (const ops::Case& c : ops::find_op(stem)->cases(1)) {
    const std::pair<std::int64_t, std::int64_t> r = run(c);
    recomputed += r.first;
    total += r.second;
  }
  std::printf("%s %lld, recomputed on the host %lld\n", units, static_cast<long long>(total),
              static_cast<long long>(recomputed));
  EXPECT_GT(total, at_least);
  EXPECT_LE(recomputed * per, total);
}

}  // namespace dsv4::test
