// The gradient check (spec 06 §6.12, gpu/ops dsv4/ops/gradient_check.hpp) over every backward pass
// of the op registry: the exact-mode backward against central finite differences in 50-digit
// arithmetic, relative agreement ≤ 1e-10, at check points chosen away from kinks (each case's label
// says how: linear maps have none; the SwiGLU clamp's edges are missed by ≥ 0.01). Also: the check
// fails wrong backwards and forwards that are not the reference's; the conventions of spec 06 §6.12
// (the clamp's zero gradient and its boundary, the straight-through QAT weight, the flat form).
#include "dsv4/ops/gradient_check.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/ops/registry.hpp"
#include "dsv4/train/balance_loss.hpp"
#include "dsv4/train/compressor_pool_backward.hpp"
#include "dsv4/train/expert_backward.hpp"
#include "dsv4/train/linear_backward.hpp"

namespace dsv4::ops {
namespace {

std::vector<std::string> backward_stems() {
  std::vector<std::string> s;
  for (const Op& o : all_ops()) {
    if (o.backward_reference) s.push_back(o.stem);
  }
  return s;
}

TEST(GradientCheck, TheBackwardsOfTheTrainingHalfAreRegistered) {
  const std::vector<std::string> stems = backward_stems();
  const std::set<std::string> have(stems.begin(), stems.end());
  for (const char* s : {"embedding", "rmsnorm", "rope", "hadamard", "linear", "expert", "hc_split_sinkhorn", "hc_post",
                        "hc_pre", "gate", "sparse_attention", "grouped_projection", "moe_combine", "compressor_pool",
                        "head", "cross_entropy", "indexer_loss"}) {
    EXPECT_TRUE(have.count(s) == 1) << s << " has no registered backward";
  }
  for (const Op& o : all_ops()) {
    // One mechanism: a backward is registered with its forms, never one without the other.
    EXPECT_EQ(static_cast<bool>(o.backward_reference), o.gradient != nullptr) << o.stem;
    if (o.gradient == nullptr) continue;
    EXPECT_TRUE(o.gradient->forward_exact && o.gradient->forward_mp50 && o.gradient->backward && o.gradient->cases)
        << o.stem;
    EXPECT_FALSE(o.gradient->wrt.empty()) << o.stem;
    EXPECT_FALSE(o.gradient->outputs.empty()) << o.stem;
  }
}

class EveryBackward : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryBackward, AgreesWithFiftyDigitFiniteDifferences) {
  const Op& op = *find_op(GetParam());
  GradientCheckOptions opt;
  for (const std::uint64_t seed : {1u, 2u}) {
    opt.seed = seed;
    const std::vector<GradientCaseCheck> checks = check_gradient_cases(op, opt);
    ASSERT_FALSE(checks.empty());
    for (const GradientCaseCheck& c : checks) {
      std::printf("%s seed %llu | %s\n", op.stem.c_str(), static_cast<unsigned long long>(seed), c.text().c_str());
      EXPECT_TRUE(c.error.empty()) << c.text();
      EXPECT_GT(c.differences, 0) << c.text();
      EXPECT_LE(c.max_rel, opt.tolerance) << c.text();
      EXPECT_LE(c.forward_rel, opt.forward_tolerance) << c.text();
    }
  }
  const SelfCheckLine line = check_gradient(op, GradientCheckOptions{});
  std::printf("%s\n", line.what.c_str());
  EXPECT_EQ(line.failures, 0) << line.first_failure;
}

INSTANTIATE_TEST_SUITE_P(Registry, EveryBackward, ::testing::ValuesIn(backward_stems()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---- the sequence-wise balance loss (not a per-row op: one loss per sequence) ----

// The balance loss (ref/train/balance_loss.hpp) through the same gradient check, as an unregistered
// op: reals {alpha, k}; inputs scores [T, E] (every score > 0, as √softplus gives), chosen [T, k]
// (expert ids as exact integers, held fixed) → loss [1, 1]; d(scores) from dloss.
std::vector<std::int64_t> chosen_ids(const Call& c) { return checked_integers(c.inputs.at(1)); }

Op balance_loss_check_op() {
  Op op;
  op.stem = "balance_loss";
  GradientForms g;
  g.outputs = {"loss"};
  g.wrt = {0};
  g.forward_exact = [](const Call& c) {
    return Doubles{
        {balance_loss(to_mat(c.inputs.at(0)), chosen_ids(c), static_cast<std::int64_t>(c.reals.at(1)), c.reals.at(0))}};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& s = c.inputs.at(0);
    const std::vector<double> f =
        balance_frequencies(chosen_ids(c), s.rows, s.cols, static_cast<std::int64_t>(c.reals.at(1)));
    return Mp50s{{balance_loss_of(x.at(0).data(), s.rows, s.cols, f, c.reals.at(0))}};
  };
  g.backward = [](const Call& c) {
    return Doubles{
        flat(balance_loss_backward(to_mat(c.inputs.at(0)), chosen_ids(c), static_cast<std::int64_t>(c.reals.at(1)),
                                   c.inputs.at(2).f32.at(0), c.reals.at(0)))};
  };
  g.cases = [](std::uint64_t seed) {
    std::vector<Case> cases;
    for (const Shape s : std::vector<Shape>{{5, 8}, {3, 16}}) {
      const std::int64_t k = s.cols / 4;
      Case c;
      c.label = shape_label(s) + " scores, k " + std::to_string(k) + " (smooth: f held fixed)";
      std::vector<float> scores = normals(s.rows * s.cols, 1.0, seed * 100 + s.cols, "grad.balance.scores");
      for (float& v : scores) v = 0.05f + std::fabs(v);
      std::vector<float> ids;
      for (std::int64_t t = 0; t < s.rows; ++t) {
        for (std::int64_t j = 0; j < k; ++j) ids.push_back(static_cast<float>((t * 3 + j) % s.cols));
      }
      c.call.reals = {1e-4, static_cast<double>(k)};
      c.call.inputs = {Array::floats("scores", s.rows, s.cols, std::move(scores)),
                       Array::floats("chosen", s.rows, k, std::move(ids)),
                       Array::floats("dloss", 1, 1, std::vector<float>{1.0f})};
      cases.push_back(std::move(c));
    }
    return cases;
  };
  set_backward(op, std::move(g));
  return op;
}

TEST(GradientCheck, BalanceLossAgreesWithFiftyDigitFiniteDifferences) {
  const SelfCheckLine l = check_gradient(balance_loss_check_op(), GradientCheckOptions{});
  std::printf("%s\n", l.what.c_str());
  EXPECT_EQ(l.cases, 2);
  EXPECT_EQ(l.failures, 0) << l.first_failure;
}

TEST(GradientCheck, CatchesABalanceLossBackwardWithoutTheNormalisation) {
  // ∂L/∂s_j = (α/T)·f_j/S_t forgets that s' = s/S_t moves with every score of the token.
  Op op = balance_loss_check_op();
  GradientForms f = *op.gradient;
  f.backward = [](const Call& c) {
    const Mat s = to_mat(c.inputs.at(0));
    const std::vector<double> fr =
        balance_frequencies(chosen_ids(c), s.rows(), s.cols(), static_cast<std::int64_t>(c.reals.at(1)));
    Mat d(s.rows(), s.cols());
    for (Eigen::Index t = 0; t < s.rows(); ++t) {
      for (Eigen::Index j = 0; j < s.cols(); ++j) {
        d(t, j) = c.reals.at(0) / static_cast<double>(s.rows()) * fr[static_cast<std::size_t>(j)] / s.row(t).sum();
      }
    }
    return Doubles{flat(d)};
  };
  set_backward(op, f);
  const SelfCheckLine l = check_gradient(op, GradientCheckOptions{});
  EXPECT_EQ(l.failures, l.cases) << l.what;
}

// ---- the check can fail ----

// op with its backward (or forward) replaced by `edit` of the registered forms.
template <class Edit>
Op edited(const std::string& stem, Edit edit) {
  Op op = *find_op(stem);
  GradientForms f = *op.gradient;
  edit(f);
  set_backward(op, f);
  return op;
}

// op with its registered backward's gradients changed by `wrong` (a backward with that bug).
template <class Wrong>
Op wrong_gradients(const std::string& stem, Wrong wrong) {
  return edited(stem, [wrong](GradientForms& f) {
    f.backward = [orig = f.backward, wrong](const Call& c) {
      Doubles g = orig(c);
      wrong(g);
      return g;
    };
  });
}

TEST(GradientCheck, CatchesAGradientWrongInOneElementByOnePartIn1e8) {
  const Op bad = wrong_gradients("rmsnorm", [](Doubles& g) { g[1].back() *= 1.0 + 1e-8; });  // the last of d(weight)
  const SelfCheckLine l = check_gradient(bad, GradientCheckOptions{});
  EXPECT_EQ(l.failures, l.cases);
  EXPECT_NE(l.first_failure.find("dweight[0, 7]"), std::string::npos) << l.first_failure;  // the first case: dim 8
}

TEST(GradientCheck, CatchesANaNOrInfiniteGradient) {
  for (const double bad : {std::nan(""), static_cast<double>(INFINITY)}) {
    const Op op = wrong_gradients("rope", [bad](Doubles& g) { g[0][3] = bad; });
    const SelfCheckLine l = check_gradient(op, GradientCheckOptions{});
    EXPECT_EQ(l.failures, l.cases) << bad;
    EXPECT_NE(l.first_failure.find("dx[0, 3]"), std::string::npos) << l.first_failure;
  }
}

TEST(GradientCheck, CatchesAMissingClampGradient) {
  // A backward that forgets the clamp (lets the gradient through where g > λ or |u| > λ) —
  // only the clamped check points can see it.
  const Op bad = edited("expert", [](GradientForms& f) {
    f.backward = [](const Call& c) {
      const Vec w = to_vec(c.inputs[1]);
      const ExpertGrads u = expert_backward(to_mat(c.inputs[0]), &w, to_mat(c.inputs[2]), to_mat(c.inputs[3]),
                                            to_mat(c.inputs[4]), 0.0, to_mat(c.inputs[5]));
      return Doubles{flat(u.dx), flat(u.droute_weight), flat(u.dw1), flat(u.dw3), flat(u.dw2)};
    };
  });
  std::int64_t clamped = 0, failed = 0;
  for (const GradientCaseCheck& c : check_gradient_cases(bad, GradientCheckOptions{})) {
    const bool is_clamped = c.label.find("clamped") != std::string::npos;
    clamped += is_clamped ? 1 : 0;
    failed += c.passed(GradientCheckOptions{}) ? 0 : 1;
    EXPECT_EQ(c.passed(GradientCheckOptions{}), !is_clamped) << c.text();
  }
  EXPECT_GT(clamped, 0);
  EXPECT_EQ(failed, clamped);
}

TEST(GradientCheck, CatchesAFiftyDigitForwardThatIsNotTheReferences) {
  // The Mp50 forward drops eps: backward and finite differences could then agree on the wrong
  // function; the comparison with the reference's own exact forward refuses it.
  const Op bad = edited("rmsnorm", [](GradientForms& f) {
    f.forward_mp50 = [orig = f.forward_mp50](const Call& c, const Mp50s& x) {
      Call no_eps = c;
      no_eps.reals[0] = 0.0;
      return orig(no_eps, x);
    };
  });
  const std::vector<GradientCaseCheck> checks = check_gradient_cases(bad, GradientCheckOptions{});
  bool refused = false;
  for (const GradientCaseCheck& c : checks)
    refused = refused || c.forward_rel > GradientCheckOptions{}.forward_tolerance;
  EXPECT_TRUE(refused);
}

TEST(GradientCheck, CatchesAMissingSinkGradient) {
  // Sparse attention with the sink's gradient left out (a backward that treats the sink as a
  // constant): every check point fails at dsink.
  const Op bad = wrong_gradients("sparse_attention", [](Doubles& g) { std::fill(g[2].begin(), g[2].end(), 0.0); });
  const SelfCheckLine l = check_gradient(bad, GradientCheckOptions{});
  EXPECT_EQ(l.failures, l.cases);
  EXPECT_NE(l.first_failure.find("dsink"), std::string::npos) << l.first_failure;
}

TEST(GradientCheck, CatchesAnIndexerLossThatDetachesTheKeys) {
  // The indexer's KL term with the compressed keys treated as constants (their gradient left out):
  // every check point fails at dkeys.
  const Op bad = wrong_gradients("indexer_loss", [](Doubles& g) { std::fill(g[2].begin(), g[2].end(), 0.0); });
  const SelfCheckLine l = check_gradient(bad, GradientCheckOptions{});
  EXPECT_EQ(l.failures, l.cases);
  EXPECT_NE(l.first_failure.find("dkeys"), std::string::npos) << l.first_failure;
}

TEST(GradientCheck, AStructuralMismatchIsAFailureNotACrash) {
  const Op bad = wrong_gradients("hadamard", [](Doubles& g) { g[0].pop_back(); });
  const SelfCheckLine l = check_gradient(bad, GradientCheckOptions{});
  EXPECT_EQ(l.failures, l.cases);
  EXPECT_NE(l.first_failure.find("wrong size"), std::string::npos) << l.first_failure;
}

// ---- the conventions of spec 06 §6.12 ----

TEST(GradientConventions, ClampGradientIsZeroOutsideAndPassesAtTheBoundary) {
  // One token, d = 2, de = 3: g = (λ + 1, λ, λ − 1)·x0 and u = (−λ − 1, λ, 0.5) with x = (1, 0).
  const double lim = 2.0;
  Mat x(1, 2);
  x << 1.0, 0.0;
  Mat w1(3, 2), w3(3, 2), w2(2, 3);
  w1 << lim + 1, 0.3, lim, -0.2, lim - 1, 0.1;
  w3 << -lim - 1, 0.4, lim, 0.6, 0.5, -0.7;
  w2 << 0.5, -1.0, 0.25, 1.5, 0.75, -0.5;
  Mat dy(1, 2);
  dy << 1.0, -2.0;
  const Vec w = Vec::Constant(1, 0.8);
  const ExpertGrads closed = expert_backward(x, &w, w1, w3, w2, lim, dy, ClampBoundary::kClosed);
  const ExpertGrads open = expert_backward(x, &w, w1, w3, w2, lim, dy, ClampBoundary::kOpen);
  // Outside: g = λ + 1 > λ → dw1 row 0 zero; u = −λ − 1 < −λ → dw3 row 0 zero (both conventions).
  EXPECT_EQ(closed.dw1(0, 0), 0.0);
  EXPECT_EQ(closed.dw3(0, 0), 0.0);
  EXPECT_EQ(open.dw1(0, 0), 0.0);
  EXPECT_EQ(open.dw3(0, 0), 0.0);
  // At the boundary (g = λ, u = λ exactly): kClosed passes the gradient, kOpen does not.
  EXPECT_NE(closed.dw1(1, 0), 0.0);
  EXPECT_NE(closed.dw3(1, 0), 0.0);
  EXPECT_EQ(open.dw1(1, 0), 0.0);
  EXPECT_EQ(open.dw3(1, 0), 0.0);
  // Inside: both pass, with the same value.
  EXPECT_NE(closed.dw1(2, 0), 0.0);
  EXPECT_EQ(closed.dw1(2, 0), open.dw1(2, 0));
  EXPECT_EQ(closed.dw3(2, 0), open.dw3(2, 0));
}

TEST(GradientConventions, CompressorPaddingSlotsGetNoGradient) {
  // Entry 0 of an overlapping compressor (spec 02 §2.6.2): slots 0..3 are padding (u = 0, z = −∞),
  // weight exactly 0 — no gradient to them; the valid slots' gradients are those of the valid
  // slots pooled alone.
  const std::int64_t S = 8, D = 3;
  Mat u(S, D), z(S, D);
  for (Eigen::Index j = 0; j < S; ++j) {
    for (Eigen::Index c = 0; c < D; ++c) {
      u(j, c) = j < 4 ? 0.0 : 0.3 * static_cast<double>(j) - 0.7 * static_cast<double>(c);
      z(j, c) = j < 4 ? -INFINITY : 0.1 * static_cast<double>(j * c) - 0.4;
    }
  }
  RowVec dc(D);
  dc << 1.0, -0.5, 2.0;
  const CompressorPoolGrads all = compressor_pool_backward(u, z, dc);
  const CompressorPoolGrads valid = compressor_pool_backward(u.bottomRows(4), z.bottomRows(4), dc);
  EXPECT_TRUE(all.du.topRows(4).isZero(0.0));
  EXPECT_TRUE(all.dz.topRows(4).isZero(0.0));
  EXPECT_EQ(all.du.bottomRows(4), valid.du);
  EXPECT_EQ(all.dz.bottomRows(4), valid.dz);
  EXPECT_FALSE(valid.dz.isZero(0.0));
  EXPECT_THROW(compressor_pool_backward(u.topRows(4), z.topRows(4), dc), std::invalid_argument);
}

TEST(GradientConventions, SparseAttentionListsAreHeldFixed) {
  // spec 06 §6.12: the index lists are inputs, not differentiable: the registered backward returns
  // dq, dkv, dsink only, and a kv row that no list names receives exactly no gradient.
  const Op& op = *find_op("sparse_attention");
  EXPECT_EQ(op.gradient->wrt, (std::vector<std::size_t>{0, 2, 3}));
  for (const Case& c : op.gradient->cases(1)) {
    const Doubles g = op.gradient->backward(c.call);
    const Array& lists = c.call.inputs[1];
    const Array& kv = c.call.inputs[2];
    std::set<std::int64_t> named;
    for (const float v : lists.f32) named.insert(static_cast<std::int64_t>(v));
    for (std::int64_t r = 0; r < kv.rows; ++r) {
      bool zero = true;
      for (std::int64_t j = 0; j < kv.cols; ++j) zero = zero && g[1][static_cast<std::size_t>(r * kv.cols + j)] == 0.0;
      EXPECT_EQ(zero, named.count(r) == 0) << c.label << " kv row " << r;
    }
  }
}

TEST(GradientConventions, QatWeightGradientIsStraightThrough) {
  // spec 06 §6.8/§6.12: d(master) = dyᵀ x whatever the quantiser did; dx uses Q(W).
  const Op& op = *find_op("linear");
  for (const Case& c : op.gradient->cases(1)) {
    if (c.call.ints[0] == 0) continue;
    const Doubles g = op.gradient->backward(c.call);
    const Mat x = to_mat(c.call.inputs[0]), w = to_mat(c.call.inputs[1]), dy = to_mat(c.call.inputs[2]);
    const Mat q = fp4_qat_weight(w);
    EXPECT_NE(q, w) << "the QAT simulation changed nothing: the case does not test the STE";
    const Precision exact(Mode::kExact);
    const Mat dy_t = dy.transpose();
    EXPECT_EQ(g[1], flat(exact.matmul_nn(dy_t, x)));
    EXPECT_EQ(g[0], flat(exact.matmul_nn(dy, q)));
    EXPECT_NE(g[0], flat(exact.matmul_nn(dy, w)));
  }
}

TEST(GradientConventions, FlatFormIsTheDoubleBackwardRoundedOnceToFp32AndDeterministic) {
  for (const std::string& stem : backward_stems()) {
    const Op& op = *find_op(stem);
    for (const Case& c : op.gradient->cases(1)) {
      const Doubles g = op.gradient->backward(c.call);
      const Outputs a = op.backward_reference(c.call), b = op.backward_reference(c.call);
      ASSERT_EQ(a.size(), g.size()) << stem;
      for (std::size_t i = 0; i < g.size(); ++i) {
        EXPECT_EQ(a[i].name, "d" + c.call.inputs[op.gradient->wrt[i]].name) << stem;
        ASSERT_EQ(a[i].f32.size(), g[i].size()) << stem;
        for (std::size_t j = 0; j < g[i].size(); ++j) EXPECT_EQ(a[i].f32[j], static_cast<float>(g[i][j])) << stem;
        EXPECT_EQ(a[i].f32, b[i].f32) << stem;
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::ops
