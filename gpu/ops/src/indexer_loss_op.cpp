// Registration of indexer_loss (spec 06 §6.16; ref/train/indexer_loss.hpp): the Lightning Indexer's
// training signal per query token, KL(p ‖ softmax_S(I)) with I_j = Σ_h ω_h ReLU(⟨q_h, K_{S_j}⟩) and p
// the main attention's head-summed distribution renormalised over S (an input: stop-gradient). No
// official training code exists, so the registry's reference (official form) is the reference's own
// double loss rounded once to fp32; the batch's sum or mean is the caller's (every output is per row).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/indexer_loss.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {n_heads H}; inputs q [tokens, H·c] (per row), weights [tokens, H] (per row: ω with the
// constant factor folded in), keys [N, c] (shared: the compressed indexer keys), selected [tokens, k]
// (per row, entries of keys as exact integers, −1 = none), target [tokens, k] (per row: the main
// attention's head-summed probabilities at the selected entries) → loss [tokens, 1].
struct LossArgs {
  std::int64_t heads, c;
  Mat q, weights, keys, target;
  IndexLists selected;
  explicit LossArgs(const Call& call)
      : heads(call.ints.at(0)),
        c(call.inputs.at(2).cols),
        q(to_mat(call.inputs.at(0))),
        weights(to_mat(call.inputs.at(1))),
        keys(to_mat(call.inputs.at(2))),
        target(to_mat(call.inputs.at(4))) {
    const Array& s = call.inputs.at(3);
    selected = IndexLists(s.rows, s.cols);
    const std::vector<std::int64_t> v = checked_integers(s);
    for (std::size_t i = 0; i < v.size(); ++i) selected.data[i] = static_cast<std::int32_t>(v[i]);
  }
  Vec loss() const { return indexer_kl_loss(q, weights, keys, selected, target); }
};

Outputs reference(const Call& c) {
  const LossArgs a(c);
  return {Array::floats("loss", a.selected.rows, 1, to_floats(a.loss()))};
}

struct Spec {
  std::int64_t tokens, heads, c, n_keys, width;
};

// Selected lists: distinct entries (a partial shuffle: a top-k is a set), about one in six −1; the
// last row all −1 when there are three or more rows (an early token with no visible compressed
// entry: loss 0). Targets |N(0, 1)| + 0.05, one in seven exactly 0 (p log p = 0).
Call make_call(const Spec& s, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.indexer_loss.selected"));
  const CounterRng rt(seed, stream_id("ops.indexer_loss.target"));
  std::vector<float> sel(static_cast<std::size_t>(s.tokens * s.width)), tgt(sel.size());
  std::vector<std::int64_t> rows(static_cast<std::size_t>(s.n_keys));
  for (std::int64_t t = 0; t < s.tokens; ++t) {
    for (std::int64_t i = 0; i < s.n_keys; ++i) rows[static_cast<std::size_t>(i)] = i;
    for (std::int64_t j = 0; j < s.width; ++j) {
      const auto w = rng.words(static_cast<std::uint64_t>(t * s.width + j));
      const auto pick = static_cast<std::int64_t>(j + w[0] % static_cast<std::uint64_t>(s.n_keys - j));
      std::swap(rows[static_cast<std::size_t>(j)], rows[static_cast<std::size_t>(pick)]);
      std::int64_t e = rows[static_cast<std::size_t>(j)];
      if ((j > 0 && w[1] % 6 == 0) || (s.tokens >= 3 && t == s.tokens - 1)) e = -1;
      const std::size_t at = static_cast<std::size_t>(t * s.width + j);
      sel[at] = static_cast<float>(e);
      tgt[at] = j > 0 && w[2] % 7 == 0 ? 0.0f : static_cast<float>(std::fabs(rt.normal(at)) + 0.05);
    }
  }
  Call c;
  c.ints = {s.heads};
  c.inputs = {
      Array::floats("q", s.tokens, s.heads * s.c, normals(s.tokens * s.heads * s.c, 1.0, seed, "ops.indexer_loss.q")),
      Array::floats("weights", s.tokens, s.heads, normals(s.tokens * s.heads, 0.5, seed, "ops.indexer_loss.w")),
      Array::floats("keys", s.n_keys, s.c, normals(s.n_keys * s.c, 1.0, seed, "ops.indexer_loss.keys")),
      Array::floats("selected", s.tokens, s.width, std::move(sel)),
      Array::floats("target", s.tokens, s.width, std::move(tgt))};
  c.inputs[2].per_row = false;
  return c;
}

std::string label(const Spec& s) {
  return std::to_string(s.tokens) + " queries, " + std::to_string(s.heads) + " heads, c " + std::to_string(s.c) + ", " +
         std::to_string(s.n_keys) + " keys, " + std::to_string(s.width) + " selected";
}

std::vector<Case> indexer_loss_cases(std::uint64_t seed) {
  // The model's indexer heads (n_I 64, c_I 128) over 256 of 300 entries, and a small one.
  const std::vector<Spec> specs = {{3, 64, 128, 300, 256}, {16, 4, 32, 40, 24}};
  std::vector<Case> cases;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    Case c;
    c.call = make_call(specs[i], seed * 1000 + 900 + i);
    c.label = label(specs[i]);
    cases.push_back(std::move(c));
  }
  return cases;
}

// The smallest |⟨q_h, K_e⟩| over every (row, head, valid entry) — the ReLU's kink is at 0 — or 0
// when the point lacks either sign (then the ReLU's mask would go unchecked).
double relu_margin(const Call& c) {
  const LossArgs a(c);
  double m = INFINITY;
  bool positive = false, negative = false;
  for (std::int64_t r = 0; r < a.selected.rows; ++r) {
    for (std::int64_t j = 0; j < a.selected.width; ++j) {
      const std::int32_t e = a.selected.at(r, j);
      if (e < 0) continue;
      for (std::int64_t h = 0; h < a.heads; ++h) {
        double s = 0.0;
        for (std::int64_t d = 0; d < a.c; ++d) s += a.q(r, h * a.c + d) * a.keys(e, d);
        m = std::min(m, std::fabs(s));
        (s > 0 ? positive : negative) = true;
      }
    }
  }
  return positive && negative ? m : 0.0;
}

// The backward (spec 06 §6.16): dq, dweights, dkeys; selected and target carry none (integers; the
// target is the stop-gradient main attention). Check points: every ReLU argument at least 0.05 from
// 0 (the first seed in a fixed sequence whose point satisfies it), both signs present.
GradientForms indexer_loss_gradient() {
  GradientForms g;
  g.outputs = {"loss"};
  g.wrt = {0, 1, 2};
  g.forward_exact = [](const Call& c) { return Doubles{flat(LossArgs(c).loss())}; };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const LossArgs a(c);
    return Mp50s{indexer_kl_loss_exact(x.at(0), x.at(1), x.at(2), a.heads, a.c, a.selected, doubles(c.inputs.at(4)))};
  };
  g.backward = [](const Call& c) {
    const LossArgs a(c);
    const IndexerLossGrads r =
        indexer_kl_loss_backward(a.q, a.weights, a.keys, a.selected, a.target, to_vec(c.inputs.at(5)));
    return Doubles{flat(r.dq), flat(r.dweights), flat(r.dkeys)};
  };
  g.cases = [](std::uint64_t seed) {
    const std::vector<Spec> specs = {{2, 2, 4, 6, 4}, {3, 3, 3, 8, 5}, {1, 1, 6, 3, 3}};
    std::vector<Case> cases;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      for (std::uint64_t attempt = 0;; ++attempt) {
        const std::uint64_t s = seed * 100 + i * 10 + attempt * 100003;
        Case c;
        c.call = make_call(specs[i], s);
        if (relu_margin(c.call) < 0.05) continue;
        c.label = label(specs[i]) + " (every ReLU argument >= 0.05 from 0; selection and target held fixed)";
        c.call.inputs.push_back(
            Array::floats("dloss", specs[i].tokens, 1, normals(specs[i].tokens, 1.0, s, "grad.indexer_loss.dloss")));
        cases.push_back(std::move(c));
        break;
      }
    }
    return cases;
  };
  return g;
}

}  // namespace

Op indexer_loss_op() {
  return registration("indexer_loss", "spec 06 §6.16",
                      "indexer training signal per query token: KL(main attention's head-summed distribution, "
                      "renormalised over the selected entries ‖ softmax of the index scores) (double, rounded once)",
                      {"n_heads"}, {}, reference, Fn(), indexer_loss_cases, indexer_loss_gradient());
}

}  // namespace dsv4::ops::detail
