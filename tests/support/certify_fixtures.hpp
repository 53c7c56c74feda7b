// Checks shared by the exact-mode certification suites (kv_certify_test, indexer_certify_test).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>

namespace dsv4::test {

// The counters of a certification of `total` decisions on random inputs: every decision counted
// once (proven by the bound, or re-decided in Mp50) and at most 1% left to Mp50. Prints them;
// `recomputed` counts the rows (or heads) recomputed in Mp50.
inline void expect_mostly_certified(const char* what, std::int64_t total, std::int64_t certified,
                                    std::int64_t redecided, std::int64_t recomputed, std::int64_t flipped) {
  EXPECT_EQ(certified + redecided, total) << what;
  EXPECT_GT(certified, 0) << what;
  EXPECT_LE(redecided * 100, total) << what;
  std::printf("%s: %lld certified, %lld re-decided (%lld recomputed in Mp50), %lld flipped\n", what,
              static_cast<long long>(certified), static_cast<long long>(redecided), static_cast<long long>(recomputed),
              static_cast<long long>(flipped));
}

}  // namespace dsv4::test
