// Margins of the block quantisers' discrete decisions (ref/README.md §Margins), and the exact-mode
// (double) form of the two activation quantisers that the model defines as quantisation points:
// act_quant with UE8M0 scales (spec 01 §1.4) and fp4_act_quant (spec 01 §1.5).
//
// A block quantiser takes two kinds of decisions:
//   * the power-of-two scale s = 2^k, k = ⌈log2 t⌉ with t = max(amax, floor) / qmax — it flips
//     when t crosses a power of two (or amax crosses the floor);
//   * per element, the round-to-nearest-even of v = clamp(x / s, ±qmax) to the FP8 / FP4 grid —
//     it flips when v crosses a rounding boundary (the midpoint of two adjacent grid values).
// QuantMargin reports, for a span of blocks, the smallest distance of each kind.
#pragma once

#include <cstdint>
#include <limits>
#include <span>

#include "dsv4/numerics/formats.hpp"

namespace dsv4 {

enum class BlockQuant {
  kFp8Ue8m0,  // act_quant: e4m3fn, qmax 448, amax floor fl32(1e-4), power-of-two (UE8M0) scale
  kFp4,       // fp4_act_quant: e2m1fn, qmax 6, amax floor 6·2^−126, power-of-two scale
};

struct QuantMargin {
  // min over the elements of |v − β| / q: v = clamp(x/s, ±qmax) the value that is rounded, β the
  // nearest rounding boundary (midpoint of the two grid values around v), q the grid spacing there
  // (the quantum). In [0, 0.5]: 0.5 = v on the grid (exactly representable, or clamped), 0 = a tie.
  double element = 0.5;
  std::int64_t element_index = -1;  // index in the quantised span of the element attaining it
  // min over the blocks of the relative distance of the scale decision from flipping: with
  // t ∈ (2^(k−1), 2^k] the scale argument, min((t − 2^(k−1))/t, (2^k − t)/t); where the amax floor
  // is active also (floor − amax)/floor. 0 = t exactly a power of two (the step is at t).
  double scale = std::numeric_limits<double>::infinity();
  std::int64_t scale_block = -1;  // index (in the span, counting blocks of all rows) attaining it

  // Fold another span's margins in; `element_offset` / `block_offset` shift its indices.
  void merge(const QuantMargin& other, std::int64_t element_offset = 0, std::int64_t block_offset = 0);
};

// The element format of a quantiser.
const MinifloatFormat& block_quant_format(BlockQuant kind);

// |v − β| / q for a value v already clamped to ±qmax of `f` (see QuantMargin::element). Works for
// every format of at most 8 bits (e4m3fn, e5m2, e2m1fn).
double rounding_margin(const MinifloatFormat& f, double v);

// Official mode: the margins of the fp32 quantiser (act_quant_inplace with ScaleFormat::kUE8M0,
// or fp4_act_quant_inplace) applied to x — rows of `cols`, blocks of `block` from element 0 of each
// row. x is not modified. Throws std::invalid_argument like the quantisers.
QuantMargin block_quant_margin_fp32(std::span<const float> x, std::int64_t cols, int block, BlockQuant kind);

// Exact mode: the quantiser on double inputs with every decision taken exactly — amax floor,
// k = ⌈log2(amax/qmax)⌉ by exact comparison with qmax·2^k, v = x / 2^k (exact), clamp, RNE to the
// grid — and x ← q·2^k (exactly representable; no bf16 storage rounding). Returns the margins.
QuantMargin block_quant_exact_inplace(std::span<double> x, std::int64_t cols, int block, BlockQuant kind);

}  // namespace dsv4
