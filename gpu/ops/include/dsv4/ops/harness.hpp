// The one harness of the op registry (gpu/README.md §The op registry): for every op and every case
// of its generator, an implementation (the device kernel, a plugin, or the reference itself) is
// checked for
//   - bit equality with the reference, reporting the first mismatching coordinate and both values;
//   - batch invariance: a row alone gives the same bits as inside batches of 1…512 rows, at other
//     positions, with other rows' contents changed;
//   - determinism: reruns give identical bits.
// Each check returns one SelfCheckLine (what, cases, failures, first failure) — the lines that
// `dsv4 demo` prints and tests/ops_test.cpp asserts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/ops/op.hpp"
#include "dsv4/selfcheck/formats_selfcheck.hpp"

namespace dsv4::ops {

// The first place where two output sets differ bit for bit (floats by their bit patterns, so −0
// differs from +0 and NaN payloads count).
struct Mismatch {
  std::string output;     // the output's name ("" when the sets differ in structure)
  std::int64_t row = -1;  // coordinate of the first differing element (−1: structural)
  std::int64_t col = -1;
  std::string got, want;       // both values: "0x1.8p-3 (0x3e400000)" or "0x7e"; or the structures
  std::int64_t differing = 0;  // elements of that output that differ
  std::int64_t total = 0;      // elements of that output
  std::string text() const;    // one line
};
std::optional<Mismatch> first_mismatch(const Outputs& got, const Outputs& want);

// Row `row` of every output.
Outputs output_row(const Outputs& out, std::int64_t row);

struct HarnessOptions {
  std::uint64_t seed = 1;
  // Batch sizes a row is placed in; each at positions 0, 3, 63 and last (those inside the batch).
  std::vector<std::int64_t> batch_sizes = {1, 2, 7, 64, 512};
  // A batch whose per-row inputs would exceed this many elements is skipped for that case (the
  // cost cap of wide rows on the CPU; the line's case count says how many placements ran).
  std::int64_t max_batch_elements = std::int64_t{1} << 21;
  int reruns = 20;
};

// impl against op.reference on every case.
SelfCheckLine check_matches_reference(const Op& op, const Fn& impl, const std::vector<Case>& cases);
// The first and last row of every case, alone and placed in batches (HarnessOptions) whose other
// rows come from `others` (the same op's cases of another seed) or from the case itself reversed.
SelfCheckLine check_batch_invariance(const Op& op, const Fn& impl, const std::vector<Case>& cases,
                                     const std::vector<Case>& others, const HarnessOptions& opt);
// impl run opt.reruns times on every case: identical bits each time.
SelfCheckLine check_reruns(const Op& op, const Fn& impl, const std::vector<Case>& cases, const HarnessOptions& opt);

// All three for one implementation (`impl_name`: "device", "reference", a plugin's name); the
// equality check is left out when impl is the reference itself (`against_reference` false).
std::vector<SelfCheckLine> check_op(const Op& op, const Fn& impl, const std::string& impl_name, bool against_reference,
                                    const HarnessOptions& opt);

}  // namespace dsv4::ops
