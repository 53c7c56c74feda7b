// Near-boundary rounding flips of a simulated-quantised output (issue 15; oracle/README.md "The
// yardstick", oracle/compare/README.md §Quantised outputs): the analogue, for an FP8 / FP4 block
// quantisation point, of the near-tie rule of set_compare.hpp.
//
// An output such as the window KV (`layers.N.attn/kv`) or a compressed entry holds, on its
// quantised dims, code × 2^k: a rounding decision per element and a power-of-two scale decision per
// block (ref/numerics quant_margin.hpp). A faithful engine's pre-quantisation value x_c may differ
// from the exact one x_e by the tolerance rule's max-abs allowance applied to that value,
//     τ(x) = k · E_pre + floor_max_ulps · ulp_pre(x),
// E_pre the larger max-abs error of the official and fp32-order recomputations' pre-quantisation
// values against the exact one (over the quantised dims), ulp_pre the spacing of their format. Where
// x_e lies within τ of a decision's boundary, that decision may legitimately go the other way — and
// the output then differs from the exact one by a whole quantum, far above the size check's limit.
// accept_quant_flips accepts exactly these, and nothing else:
//   element flip  c = (r ± one grid step) · s, r the exact code at the exact scale s, with the
//                 rounding boundary between the two codes (their midpoint, × s) within τ(x_e) of
//                 x_e: one quantum, at a near-tie. Two grid steps, or one step with x_e farther
//                 than τ from that boundary, is not accepted.
//   scale flip    every element of a block judged at the neighbouring scale s' = 2^(k±1), where the
//                 block's exact amax lies within τ(amax) of the power-of-two step between s and s'
//                 (qmax · 2^min(k, k') — or the amax floor): each element equal to its exact code at
//                 s', or one grid step from it under the element rule above. The whole block must
//                 fit s'; an accepted block counts its differing elements.
// Accepted elements are replaced by the exact recomputation's value in `judged`, on which the size
// checks (max abs, RMS, bias) are then computed; they are counted, not listed (like near-tie swaps).
// The structure tests keep the candidate's own values (they are paired with the official, which
// flips near the same boundaries).
//
// τ is wide (on the KV nearly every element lies within it of a boundary), so the size checks alone
// accept a systematic one-step error such as an e4m3 cast toward zero. quant_direction_test is its
// statistic: a sign test, paired with the official recomputation like the structure tests, on the
// DIRECTION of the candidate's decisions. Over the quantised dims, the elements whose value differs
// from the official's split into T nearer zero (|c| < |o|) and A farther (|c| > |o|). A faithful
// RNE engine differs from the official only where its own rounding noise, symmetric about its value,
// carries a value across a boundary — to the neighbour below or above alike: T ~ Bin(T + A, ½). A
// cast toward zero makes every difference T (ties away from zero, every one A). Allowed without
// evidence: |T − A| ≤ a = k × the exact recomputation's own |T_e − A_e| against the official beyond
// exact_sigmas × √(T_e + A_e) (an engine as exact as the exact one), plus a floor of
// 16 · scale_floor · N (N the quantised elements compared): what a systematic relative shift of the
// pre-quantisation values by the structure tests' scale floor can do — it carries a value across
// the boundary above it with probability ≤ shift / quantum < 16 · scale_floor (e4m3 and e2m1
// spacings are > |x|/16). p: two-sided exact binomial, max(T, A) against Bin(T + A, ½ + a / 2(T + A)).
// The test joins the structure tests' family (Holm at StructureParams::alpha over one diff/certify
// run), so certify's local verdict and diff's are the same function of the same statistics.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dsv4/compare/structure.hpp"
#include "dsv4/compare/tolerance.hpp"
#include "dsv4/numerics/quant_margin.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4::compare {

// Where an output is simulated-quantised: rows of `cols` (the last dimension), each quantised on
// its columns [0, quantised_cols) in blocks of `block` from column 0, by the quantiser `kind`.
struct QuantisedLayout {
  std::int64_t cols = 0;
  std::int64_t quantised_cols = 0;
  int block = 0;
  BlockQuant kind = BlockQuant::kFp8Ue8m0;
};

struct QuantFlips {
  std::vector<double> judged;            // the candidate, accepted elements replaced by the exact values
  std::int64_t quantised = 0;            // elements on the quantised dims
  std::int64_t element_flips = 0;        // accepted one-quantum flips at the exact scale
  std::int64_t scale_flips = 0;          // accepted blocks whose scale flipped
  std::int64_t scale_flip_elements = 0;  // elements of those blocks that differ from the exact value
  double largest_accepted = 0.0;         // max |c − e| over the accepted elements
  double smallest_slack = std::numeric_limits<double>::infinity();  // min τ − distance to the boundary
  std::int64_t accepted() const { return element_flips + scale_flip_elements; }
  // "3 FP8 rounding flips at a near-tie accepted (2 elements one quantum off, 1 block scale of 5
  // elements; largest 0.25, smallest slack 0.01)"; "" when none.
  std::string summary(BlockQuant kind) const;
};

// τ(x) = k · pre_max_abs_err + floor_max_ulps · ulp of `pre_dtype` at x (see above). Throws
// std::invalid_argument for a negative or non-finite pre_max_abs_err.
double quant_flip_tolerance(double pre_max_abs_err, double x, DType pre_dtype, const ToleranceParams& params = {});

// max |a − e| over the quantised dims of `layout` (elements finite in both): E_pre of one reference.
double quantised_max_abs_error(std::span<const double> a, std::span<const double> exact, const QuantisedLayout& layout);

// The rule above. candidate, exact: the output's values (exact: the exact recomputation's, from the
// candidate's own inputs); exact_pre: the exact recomputation's values before the quantisation
// point (same layout; only the quantised dims are read). Elements off the quantised dims, equal to
// the exact value or not finite are left as they are. Throws std::invalid_argument on sizes that
// do not match the layout.
QuantFlips accept_quant_flips(std::span<const double> candidate, std::span<const double> exact,
                              std::span<const double> exact_pre, double pre_max_abs_err, DType pre_dtype,
                              const QuantisedLayout& layout, const ToleranceParams& params = {});

// The elements of `a` on the quantised dims of `layout` that differ from `b` (both finite), by
// direction: |a| < |b| (toward zero) or |a| > |b| (away); equal magnitudes of opposite sign count
// in neither.
struct QuantDirections {
  std::int64_t compared = 0;  // quantised elements finite in both
  std::int64_t toward_zero = 0;
  std::int64_t away_from_zero = 0;
  std::int64_t differing() const { return toward_zero + away_from_zero; }
};
QuantDirections quant_directions(std::span<const double> a, std::span<const double> b, const QuantisedLayout& layout);

// P(X ≥ m), X ~ Bin(n, p) (exact, summed in log space); 1 for m ≤ 0, 0 for m > n.
double binomial_upper_tail(std::int64_t n, std::int64_t m, double p);

// The direction test above: the candidate's directions against the official, allowed k × the
// exact recomputation's (beyond params.exact_sigmas of its noise) plus 16 · params.scale_floor ·
// compared. A StructureStat of kind kQuantDirection: estimate T − A, se √(T + A), groups T + A,
// allowance, z = (|T − A| − a) / √(T + A), p. Not run when no element differs from the official.
// Throws std::invalid_argument on sizes that do not match the layout.
StructureStat quant_direction_test(std::span<const double> candidate, std::span<const double> official,
                                   std::span<const double> exact, const QuantisedLayout& layout, double k,
                                   const StructureParams& params = {});

}  // namespace dsv4::compare
