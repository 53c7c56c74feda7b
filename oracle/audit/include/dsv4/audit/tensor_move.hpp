// One tensor whose bits move between two runs of the same sequence, and the plot of where bits
// first move — shared by `dsv4 audit` of our own stack (self_audit.hpp) and of a foreign engine's
// dumps (dump_audit.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dsv4/numerics/tensor.hpp"

namespace dsv4::audit {

inline constexpr int kUlpBins = 6;  // 1, 2, 3–4, 5–16, 17–256, more
struct TensorMove {
  std::string name;
  std::int64_t elements = 0, differing = 0;
  std::array<std::int64_t, kUlpBins> ulp_hist{};
  std::int64_t first_element = -1;
  double yardstick = 0, other = 0;
};

// The bin of a ULP distance in TensorMove::ulp_hist.
int ulp_bin(std::uint64_t ulps);
// `other` against `yardstick` bit for bit (values widened to double; ULPs in the number format
// `grid`, an integer grid's distance |a − b|; NaN or a missing element: the last bin): nullopt
// when every element's bits agree and the sizes do.
std::optional<TensorMove> tensor_move(const std::string& name, std::span<const double> yardstick,
                                      std::span<const double> other, DType grid);

// One comparison's moving tensors, in execution order (moved.front() is the cause), and what kind
// of comparison it was ("batch variance", "official threads 1", …).
struct MoveSet {
  std::string kind;
  const std::vector<TensorMove>* moved = nullptr;
};

// Where bits first move, per layer and module (report::svg_line_plot): x the main layer (−1 the
// embedding, `layers` the head's sites, layers + 1 + i MTP module i), one series per module output
// (its block-relative name, e.g. "attn/out", "block/out"), y the largest fraction of its elements
// whose bits move over every comparison and step (log axis; a module that does not move at a layer
// between its first and last move is a zero there, not drawn); a marker at each cause's layer
// labelled with its kind and tensor. `title` heads the plot, with PASS or FAIL.
std::string where_bits_move_svg(const std::string& title, bool pass, std::int64_t layers,
                                const std::vector<MoveSet>& sets);

}  // namespace dsv4::audit
