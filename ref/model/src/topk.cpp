// spec 01 §1.11 C4 (top-k order); ref/README.md §Precision design (margins, Mp50 re-decision).
#include "dsv4/model/topk.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace dsv4 {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_k(std::size_t n, std::int64_t k) {
  if (k < 0 || static_cast<std::size_t>(k) > n) {
    throw std::invalid_argument("topk: k = " + std::to_string(k) + " outside [0, " + std::to_string(n) + "]");
  }
}

// C4 order on (value, index): larger value first, equal values by ascending index.
std::vector<std::int64_t> c4_order(std::span<const double> v) {
  std::vector<std::int64_t> order(v.size());
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return v[static_cast<std::size_t>(a)] > v[static_cast<std::size_t>(b)];
  });
  return order;
}

double gap_of(double kth, double next) {
  if (next == -kInf) return kInf;  // masked candidates below the cut: cannot enter
  return kth - next;
}

}  // namespace

// spec 01 §1.11 C4: descending value, ties by ascending index; the margin of the cut.
TopkResult topk(std::span<const double> scores, std::int64_t k) {
  check_k(scores.size(), k);
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i])) throw std::invalid_argument("topk: score " + std::to_string(i) + " is NaN");
  }
  const std::vector<std::int64_t> order = c4_order(scores);
  TopkResult r;
  r.indices.assign(order.begin(), order.begin() + k);
  TopkMargin& m = r.margin;
  m.has_cut = k > 0 && static_cast<std::size_t>(k) < scores.size();
  m.kth = k > 0 ? scores[static_cast<std::size_t>(order[static_cast<std::size_t>(k - 1)])] : kInf;
  m.next = m.has_cut ? scores[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])] : -kInf;
  m.gap = m.has_cut ? gap_of(m.kth, m.next) : kInf;
  m.bound = 0.0;
  return r;
}

// ref/README.md §Precision design: a top-k cut decided by rigorous bounds, re-decided in Mp50
// where the bounds overlap (candidate i is certainly above candidate j iff s_i − b_i > s_j + b_j).
TopkResult topk_exact(std::span<const double> scores, std::span<const double> bounds, std::int64_t k,
                      const TopkRecompute& recompute) {
  const std::size_t n = scores.size();
  if (bounds.size() != n) {
    throw std::invalid_argument("topk_exact: bounds has " + std::to_string(bounds.size()) + " entries, scores " +
                                std::to_string(n));
  }
  check_k(n, k);
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(scores[i])) throw std::invalid_argument("topk_exact: score " + std::to_string(i) + " is NaN");
    if (!(bounds[i] >= 0.0) || std::isinf(bounds[i])) {
      throw std::invalid_argument("topk_exact: bound " + std::to_string(i) + " is negative, infinite or NaN");
    }
    if (std::isinf(scores[i]) && bounds[i] != 0.0) {
      throw std::invalid_argument("topk_exact: infinite score " + std::to_string(i) + " must have bound 0");
    }
  }
  std::vector<double> value(scores.begin(), scores.end());
  std::vector<double> bound(bounds.begin(), bounds.end());
  std::vector<std::int64_t> order = c4_order(value);
  const auto ks = static_cast<std::size_t>(k);
  std::int64_t recomputed = 0;
  bool redecided = false;

  if (k > 0 && ks < n) {
    const double kth = value[static_cast<std::size_t>(order[ks - 1])];
    const double next = value[static_cast<std::size_t>(order[ks])];
    // −∞ scores are exact; a cut next to them is decided.
    if (kth != -kInf && next != -kInf) {
      double min_lower_sel = kInf;
      for (std::size_t r = 0; r < ks; ++r) {
        const auto i = static_cast<std::size_t>(order[r]);
        min_lower_sel = std::min(min_lower_sel, value[i] - bound[i]);
      }
      double max_upper_uns = -kInf;
      for (std::size_t r = ks; r < n; ++r) {
        const auto i = static_cast<std::size_t>(order[r]);
        if (value[i] != -kInf) max_upper_uns = std::max(max_upper_uns, value[i] + bound[i]);
      }
      if (!(min_lower_sel > max_upper_uns)) {
        if (!recompute)
          throw std::invalid_argument("topk_exact: the cut needs a re-decision but no recompute callback");
        redecided = true;
        // Candidates whose interval overlaps the cut compete for the selected slots they occupy.
        std::vector<std::int64_t> undecided;
        std::size_t open_slots = 0;
        for (std::size_t r = 0; r < n; ++r) {
          const auto i = static_cast<std::size_t>(order[r]);
          if (value[i] == -kInf) continue;
          const bool sel = r < ks;
          const bool amb = sel ? (value[i] - bound[i] <= max_upper_uns) : (value[i] + bound[i] >= min_lower_sel);
          if (!amb) continue;
          undecided.push_back(order[r]);
          if (sel) ++open_slots;
        }
        std::vector<Mp50> mp(undecided.size());
        for (std::size_t a = 0; a < undecided.size(); ++a) mp[a] = recompute(undecided[a]);
        recomputed = static_cast<std::int64_t>(undecided.size());
        std::vector<std::size_t> rank(undecided.size());
        std::iota(rank.begin(), rank.end(), std::size_t{0});
        std::sort(rank.begin(), rank.end(), [&](std::size_t a, std::size_t b) {
          if (mp[a] != mp[b]) return mp[a] > mp[b];
          return undecided[a] < undecided[b];
        });
        // Replace the scores of the recomputed candidates by their Mp50 value (to double), and
        // order: certain members, then the winners of the re-decision, then everything else.
        std::vector<char> in_set(n, 0);
        for (std::size_t r = 0; r < ks; ++r) in_set[static_cast<std::size_t>(order[r])] = 1;
        for (std::size_t a = 0; a < undecided.size(); ++a) {
          const auto i = static_cast<std::size_t>(undecided[a]);
          in_set[i] = 0;
          value[i] = static_cast<double>(mp[a]);
          bound[i] = std::abs(value[i]) * 0x1.0p-53;
        }
        for (std::size_t q = 0; q < open_slots; ++q) in_set[static_cast<std::size_t>(undecided[rank[q]])] = 1;
        std::vector<std::int64_t> sel, uns;
        for (std::size_t i = 0; i < n; ++i) (in_set[i] ? sel : uns).push_back(static_cast<std::int64_t>(i));
        auto c4 = [&](std::int64_t a, std::int64_t b) {
          const double va = value[static_cast<std::size_t>(a)], vb = value[static_cast<std::size_t>(b)];
          if (va != vb) return va > vb;
          return a < b;
        };
        std::sort(sel.begin(), sel.end(), c4);
        std::sort(uns.begin(), uns.end(), c4);
        order = sel;
        order.insert(order.end(), uns.begin(), uns.end());
      }
    }
  }

  TopkResult r;
  r.indices.assign(order.begin(), order.begin() + k);
  TopkMargin& m = r.margin;
  m.has_cut = k > 0 && ks < n;
  m.kth = k > 0 ? value[static_cast<std::size_t>(order[ks - 1])] : kInf;
  m.next = m.has_cut ? value[static_cast<std::size_t>(order[ks])] : -kInf;
  m.gap = m.has_cut ? gap_of(m.kth, m.next) : kInf;
  m.bound =
      m.has_cut ? bound[static_cast<std::size_t>(order[ks - 1])] + bound[static_cast<std::size_t>(order[ks])] : 0.0;
  m.redecided = redecided;
  m.recomputed = recomputed;
  return r;
}

}  // namespace dsv4
