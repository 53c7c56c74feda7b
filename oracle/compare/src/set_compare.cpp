// Set comparison of discrete outputs with near-tie acceptance (set_compare.hpp).
#include "dsv4/compare/set_compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace dsv4::compare {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// The valid (≠ −1) entries of one row, sorted; `problem` names the first defect, if any.
std::vector<std::int64_t> row_set(std::span<const std::int64_t> row, std::int64_t n_items, std::string& problem) {
  std::vector<std::int64_t> s;
  for (const std::int64_t v : row) {
    if (v == -1) continue;
    if (v < 0 || v >= n_items) {
      if (problem.empty()) problem = "index " + std::to_string(v) + " outside [0, " + std::to_string(n_items) + ")";
      continue;
    }
    s.push_back(v);
  }
  std::sort(s.begin(), s.end());
  const auto dup = std::adjacent_find(s.begin(), s.end());
  if (dup != s.end() && problem.empty()) problem = "index " + std::to_string(*dup) + " selected twice";
  s.erase(std::unique(s.begin(), s.end()), s.end());
  return s;
}

double score_of(const ScoreLookup& scores, std::int64_t row, std::int64_t index) {
  const std::optional<double> s = scores(row, index);
  if (!s) return kNaN;
  if (std::isnan(*s)) {
    throw std::invalid_argument("compare_sets: reference score of row " + std::to_string(row) + ", index " +
                                std::to_string(index) + " is NaN");
  }
  return *s;
}

std::string list(const std::vector<std::int64_t>& idx, const std::vector<double>& sc) {
  std::string s;
  for (std::size_t i = 0; i < idx.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(idx[i]) + " (" + (std::isnan(sc[i]) ? std::string("score unknown") : num(sc[i])) + ")";
  }
  return s;
}

// set_compare.hpp §Criterion for one differing row.
void judge_row(SetRow& r, const std::vector<std::int64_t>& ref, const std::vector<std::int64_t>& cand,
               const ScoreLookup& scores) {
  std::set_difference(cand.begin(), cand.end(), ref.begin(), ref.end(), std::back_inserter(r.swapped_in));
  std::set_difference(ref.begin(), ref.end(), cand.begin(), cand.end(), std::back_inserter(r.swapped_out));
  for (const std::int64_t j : r.swapped_in) r.in_scores.push_back(score_of(scores, r.row, j));
  for (const std::int64_t i : r.swapped_out) r.out_scores.push_back(score_of(scores, r.row, i));
  r.kth_score = std::numeric_limits<double>::infinity();
  for (const std::int64_t i : ref) r.kth_score = std::min(r.kth_score, score_of(scores, r.row, i));
  if (ref.empty()) r.kth_score = kNaN;

  const std::string what =
      "swapped in " + list(r.swapped_in, r.in_scores) + "; swapped out " + list(r.swapped_out, r.out_scores);
  const bool unknown = std::any_of(r.in_scores.begin(), r.in_scores.end(), [](double v) { return std::isnan(v); }) ||
                       std::any_of(r.out_scores.begin(), r.out_scores.end(), [](double v) { return std::isnan(v); });
  if (unknown) {
    r.status = RowStatus::kRejected;
    r.slack = kNaN;
    r.reason = "rejected: the golden holds no score for a swapped item; " + what;
    return;
  }
  const double min_in = *std::min_element(r.in_scores.begin(), r.in_scores.end());
  const double max_out = *std::max_element(r.out_scores.begin(), r.out_scores.end());
  r.slack = min_in - max_out;  // −inf when a swapped-in item is masked
  const bool ok = r.slack >= -r.tau;
  r.status = ok ? RowStatus::kNearTie : RowStatus::kRejected;
  r.reason = std::string(ok ? "near-tie swap accepted" : "rejected") + ": " + what + "; k-th score " +
             num(r.kth_score) + ", min in - max out = " + num(r.slack) + (ok ? " >= " : " < ") +
             "-tau = " + num(-r.tau);
}

}  // namespace

const char* row_status_name(RowStatus s) {
  switch (s) {
    case RowStatus::kIdentical:
      return "identical";
    case RowStatus::kNearTie:
      return "near-tie";
    case RowStatus::kRejected:
      return "rejected";
  }
  return "?";
}

SetComparison compare_sets(std::span<const std::int64_t> candidate, std::span<const std::int64_t> reference,
                           std::int64_t rows, std::int64_t k, std::int64_t n_items, const ScoreLookup& scores,
                           std::span<const double> tau) {
  if (rows < 0 || k < 0 || n_items < 0) throw std::invalid_argument("compare_sets: rows, k and n_items must be ≥ 0");
  const auto cells = static_cast<std::size_t>(rows * k);
  if (candidate.size() != cells) {
    throw std::invalid_argument("compare_sets: candidate has " + std::to_string(candidate.size()) +
                                " entries, expected rows × k = " + std::to_string(cells));
  }
  if (reference.size() != cells) {
    throw std::invalid_argument("compare_sets: reference has " + std::to_string(reference.size()) +
                                " entries, expected rows × k = " + std::to_string(cells));
  }
  if (!(tau.size() == 1 || tau.size() == static_cast<std::size_t>(rows))) {
    throw std::invalid_argument("compare_sets: tau must hold 1 or rows = " + std::to_string(rows) + " values");
  }
  for (const double t : tau) {
    if (!(t >= 0.0) || !std::isfinite(t)) throw std::invalid_argument("compare_sets: tau must be finite and ≥ 0");
  }
  if (!scores) throw std::invalid_argument("compare_sets: no score lookup");

  SetComparison out;
  out.rows = rows;
  out.k = k;
  for (std::int64_t row = 0; row < rows; ++row) {
    const auto off = static_cast<std::size_t>(row * k);
    std::string ref_problem, cand_problem;
    const std::vector<std::int64_t> ref =
        row_set(reference.subspan(off, static_cast<std::size_t>(k)), n_items, ref_problem);
    if (!ref_problem.empty()) {
      throw std::invalid_argument("compare_sets: reference row " + std::to_string(row) + ": " + ref_problem);
    }
    const std::vector<std::int64_t> cand =
        row_set(candidate.subspan(off, static_cast<std::size_t>(k)), n_items, cand_problem);
    SetRow r;
    r.row = row;
    r.tau = tau.size() == 1 ? tau[0] : tau[static_cast<std::size_t>(row)];
    if (cand_problem.empty() && cand == ref) {
      ++out.identical;
      continue;
    }
    if (!cand_problem.empty()) {
      r.status = RowStatus::kRejected;
      r.reason = "rejected: candidate " + cand_problem;
    } else if (cand.size() != ref.size()) {
      r.status = RowStatus::kRejected;
      r.reason = "rejected: candidate selects " + std::to_string(cand.size()) + " items, reference " +
                 std::to_string(ref.size());
    } else {
      judge_row(r, ref, cand, scores);
    }
    (r.status == RowStatus::kNearTie ? out.near_tie : out.rejected) += 1;
    out.differing.push_back(std::move(r));
  }
  return out;
}

SetComparison compare_sets_dense(std::span<const std::int64_t> candidate, std::span<const std::int64_t> reference,
                                 std::int64_t rows, std::int64_t k, std::int64_t n_items,
                                 std::span<const double> scores, std::span<const double> tau) {
  if (rows < 0 || n_items < 0) throw std::invalid_argument("compare_sets_dense: rows and n_items must be ≥ 0");
  if (scores.size() != static_cast<std::size_t>(rows * n_items)) {
    throw std::invalid_argument("compare_sets_dense: scores has " + std::to_string(scores.size()) +
                                " entries, expected rows × n_items = " + std::to_string(rows * n_items));
  }
  const ScoreLookup lookup = [scores, n_items](std::int64_t row, std::int64_t index) -> std::optional<double> {
    return scores[static_cast<std::size_t>(row * n_items + index)];
  };
  return compare_sets(candidate, reference, rows, k, n_items, lookup, tau);
}

}  // namespace dsv4::compare
