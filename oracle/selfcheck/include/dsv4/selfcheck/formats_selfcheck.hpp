// The formats and quantisers self-check that `dsv4 demo` runs first: every bit pattern of every
// format round-trips, and every quantiser kind is idempotent with power-of-two (or fp32) scales on
// a seeded tensor. Each line is a real check that can fail.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4 {

struct SelfCheckLine {
  std::string what;  // e.g. "e4m3fn: encode(decode(p)) == p"
  std::int64_t cases = 0;
  std::int64_t failures = 0;
  std::string first_failure;  // empty when none
};

std::vector<SelfCheckLine> run_formats_selfcheck();
std::vector<SelfCheckLine> run_quant_selfcheck(std::uint64_t seed);

}  // namespace dsv4
