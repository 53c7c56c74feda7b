// Discrete outputs compared as sets (issue 5, certify): the indexer's top-k selection per query
// row and the routed expert ids per token. A candidate row may select a different set than the
// reference only where the reference's exact scores prove a near-tie (README §Discrete outputs).
//
// Criterion. Let R be the reference's set, C the candidate's, I = C \ R (swapped in) and O = R \ C
// (swapped out), s the exact reference scores. C is a top-k of scores that are each within τ/2 of
// s exactly when every member of C scores at least every non-member minus τ; because R is the
// exact top-k this reduces to the swapped candidates alone:
//     slack = min_{j ∈ I} s_j − max_{i ∈ O} s_i ≥ −τ.
// (Members kept from R score ≥ the k-th score ≥ every non-member of R; a swapped-in j with
// s_j ≥ s_i − τ for every swapped-out i is ≥ the k-th score − τ ≥ every other non-member − τ.)
// In particular every swapped-in index's score is within τ of the k-th score. τ comes from
// tolerance.hpp's tie_tolerance (the official-vs-exact score error and the score format's ulp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dsv4::compare {

enum class RowStatus { kIdentical, kNearTie, kRejected };
const char* row_status_name(RowStatus s);  // "identical", "near-tie", "rejected"

struct SetRow {
  std::int64_t row = 0;
  RowStatus status = RowStatus::kIdentical;
  std::vector<std::int64_t> swapped_in;   // C \ R, ascending
  std::vector<std::int64_t> swapped_out;  // R \ C, ascending
  std::vector<double> in_scores;          // exact reference scores of swapped_in (NaN: not in the golden)
  std::vector<double> out_scores;         // … of swapped_out
  double kth_score = 0.0;                 // the lowest exact score in R (NaN when not known)
  double slack = 0.0;                     // min(in_scores) − max(out_scores)
  double tau = 0.0;
  std::string reason;  // one line with the numbers
};

struct SetComparison {
  std::int64_t rows = 0;
  std::int64_t k = 0;
  std::int64_t identical = 0;
  std::int64_t near_tie = 0;  // differing rows accepted at a proven near-tie
  std::int64_t rejected = 0;
  std::vector<SetRow> differing;  // every row that is not identical, in row order
  bool pass() const { return rejected == 0; }
};

// The reference's exact score of item `index` in row `row` (−inf for a masked item), or nullopt
// where the golden does not hold it (a swap involving it is then rejected).
using ScoreLookup = std::function<std::optional<double>(std::int64_t row, std::int64_t index)>;

// candidate and reference: [rows × k] item indices, −1 = an empty slot (fewer valid items than k).
// n_items: valid indices are [0, n_items). tau: one value for every row, or one per row (≥ 0).
// A candidate row that repeats an index, holds one outside [0, n_items) or selects a different
// number of items is rejected (its reason says why). Throws std::invalid_argument naming the field
// for bad shapes, a bad reference row (out of range / repeated index), a NaN score, a bad τ.
SetComparison compare_sets(std::span<const std::int64_t> candidate, std::span<const std::int64_t> reference,
                           std::int64_t rows, std::int64_t k, std::int64_t n_items, const ScoreLookup& scores,
                           std::span<const double> tau);

// The same with the reference's exact scores as a dense [rows × n_items] matrix (row-major).
SetComparison compare_sets_dense(std::span<const std::int64_t> candidate, std::span<const std::int64_t> reference,
                                 std::int64_t rows, std::int64_t k, std::int64_t n_items,
                                 std::span<const double> scores, std::span<const double> tau);

}  // namespace dsv4::compare
