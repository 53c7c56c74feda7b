// Top-k selection with margins (spec 01 §1.11 C4; ref/README.md §Precision design, "Margins").
//
// Every top-k of the model (the Lightning Indexer's compressed-entry choice, spec 02 §2.7 step 6)
// returns its decision *and* its margin: the scores of the k-th and (k+1)-th candidates and their
// gap. In exact mode the caller also supplies a rigorous error bound for every double score; where
// the bounds do not decide the cut, the undecided candidates are recomputed with a caller-supplied
// multiprecision (Mp50) callback and the cut is re-decided — and the result records that.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "dsv4/numerics/multiprecision.hpp"

namespace dsv4 {

// The margin of one top-k cut. Scores of −∞ (masked candidates) are exact; a cut that falls at or
// beyond the last finite candidate cannot flip among finite scores, so its gap is +∞.
struct TopkMargin {
  bool has_cut = false;    // a (k+1)-th candidate exists (k < n)
  double kth = 0.0;        // score of the k-th selected candidate (−∞ when k = 0 … never: k ≥ 1 if has_cut)
  double next = 0.0;       // score of the best unselected candidate ((k+1)-th); −∞ when !has_cut
  double gap = 0.0;        // kth − next (+∞ when next = −∞ or !has_cut); ≥ 0
  double bound = 0.0;      // error bound of kth plus that of next (0 in official mode)
  bool redecided = false;  // the double scores did not decide the cut: recomputed in Mp50
  std::int64_t recomputed = 0;  // number of candidates recomputed in Mp50
};

struct TopkResult {
  std::vector<std::int64_t> indices;  // k candidate indices, descending score, ties ascending index
  TopkMargin margin;
};

// spec 01 §1.11 C4: the k largest scores, ordered by descending value, equal values by ascending
// index (official mode: the scores are exact bf16/fp32 values, so the decision is exact).
// Throws std::invalid_argument for k < 0, k > n or a NaN score.
TopkResult topk(std::span<const double> scores, std::int64_t k);

// Recomputes the true score of candidate `index` in multiprecision (≥ 50 decimal digits) from the
// component's inputs.
using TopkRecompute = std::function<Mp50(std::int64_t index)>;

// Exact mode (ref/README.md §Precision design): scores[i] is a double approximation of the true
// score with |error| ≤ bounds[i] (−∞ scores must have bound 0: they are exact masks). The set is
// certified when every selected candidate's lower end exceeds every unselected candidate's upper
// end; otherwise every candidate whose interval overlaps the cut is recomputed with `recompute`
// and the open slots go to the best of them by (Mp50 value desc, index asc). The order of the
// returned indices follows the double scores (recomputed candidates: their Mp50 value rounded to
// double). The margin reports the recomputed values where that happened.
// Throws std::invalid_argument on size mismatch, negative/NaN bounds, or when a re-decision is
// needed and `recompute` is empty.
TopkResult topk_exact(std::span<const double> scores, std::span<const double> bounds, std::int64_t k,
                      const TopkRecompute& recompute);

}  // namespace dsv4
