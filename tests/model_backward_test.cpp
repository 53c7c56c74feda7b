// ctest-labels: model
// The whole-model backward of one training step (ref/train/model_backward, spec 06 §6.12–§6.13):
// its forward is the reference's exact forward, and its gradient agrees with central finite
// differences of that forward's loss along random directions over every parameter and along single
// coordinates of every parameter family — at a point whose discrete decisions (routing, index lists)
// do not change between the ±h forwards, which each check asserts. Dropping mHC's gradient fails.
#include "dsv4/train/model_backward.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {
namespace {

// Tiny config, 40 tokens: the ratio-4 layers have 10 compressed entries, more than index_topk = 8,
// so the indexer's top-k really chooses; the ratio-128 layers have none (their compressor gets no
// gradient); layers 0–2 are hash-routed, 3–5 and the MTP block score-routed.
constexpr std::int64_t kTokens = 40;
// The weights and tokens seed: a point away from every discrete decision at the test's steps (each
// check asserts it). Seed 5 was until the synthetic weights' version 2 (wo_a on the FP8 grid,
// e87cd0e) moved its point next to a decision that the ±h forwards flip; seed 4's is clear of them.
constexpr std::uint64_t kSeed = 4;

struct Step {
  ModelConfig c = builtin_config("tiny");
  ModelWeights w = ModelWeights::synthetic(c, kSeed);
  ParameterMap params = model_parameters(c, w);
  std::vector<std::int64_t> tokens;
  ModelGradients base;
  Step() {
    const CounterRng rng(kSeed, stream_id("model_backward_test.tokens"));
    for (std::int64_t i = 0; i < kTokens; ++i)
      tokens.push_back(
          static_cast<std::int64_t>(rng.uniform(static_cast<std::uint64_t>(i)) * static_cast<double>(c.vocab_size)));
    base = model_backward(c, w, params, tokens);
  }
};

const Step& step() {
  static const Step s;
  return s;
}

double rms(const Mat& m) { return m.size() == 0 ? 0.0 : std::sqrt(m.squaredNorm() / static_cast<double>(m.size())); }

double dot(const ParameterMap& a, const ParameterMap& b) {
  double s = 0;
  for (const auto& [name, v] : a) s += (v.array() * b.at(name).array()).sum();
  return s;
}

// Central difference of the surrogate's loss (the step's quantisation offsets, model_backward.hpp)
// along v with step h; asserts the decisions of both forwards are the step's.
struct Fd {
  double fd = 0, loss_plus = 0, loss_minus = 0;
};
Fd central_difference(const Step& st, const ParameterMap& v, double h) {
  const auto at = [&](double t) {
    ParameterMap p = st.params;
    for (auto& [name, x] : p) x += t * v.at(name);
    return training_loss(st.c, st.w, p, st.tokens, {}, &st.base.loss.offsets);
  };
  const TrainingLoss plus = at(h), minus = at(-h);
  EXPECT_TRUE(plus.decisions == st.base.loss.decisions) << "a decision changed at +h";
  EXPECT_TRUE(minus.decisions == st.base.loss.decisions) << "a decision changed at −h";
  return {(plus.total - minus.total) / (2 * h), plus.total, minus.total};
}

// The agreement bound. Truncation of the central difference, h²/6·|f'''|: every tensor moves by h
// times its RMS, so the curvature scale along v is O(1) and the truncation is ~h² ≤ 1e-8 of the
// derivative (h ≤ 1e-4). Rounding: each loss is a double evaluation of a well-conditioned forward;
// two summation orders of it (this forward and Transformer::forward) agree to 1.8e-15 in the logits,
// so 1e-13·|L| (L ≈ 10) bounds each loss's error with a wide margin and the difference quotient errs
// by at most 2·1e-13·|L|/(2h). Bound: 1e-6 of the derivative plus that rounding term.
constexpr double kRelative = 1e-6;
double bound(double derivative, double loss, double h) { return kRelative * std::abs(derivative) + 1e-13 * loss / h; }

TEST(ModelBackward, ForwardIsTheReferenceExactForward) {
  const Step& st = step();
  // The main logits of the last position and the MTP logits of position s−2 (the MTP block runs
  // on positions 0..s−2 with ids t₁..t_{s−1}) against Transformer::forward in exact mode.
  const Transformer t(Precision(Mode::kExact), st.c, st.w);
  std::vector<SequenceState> s1{t.new_sequence()};
  const ModelOutput full = t.forward({st.tokens}, 0, s1);
  const double scale = full.logits[0].cwiseAbs().maxCoeff();
  const double main_err = (full.logits[0] - st.base.loss.last_logits).cwiseAbs().maxCoeff() / scale;
  const std::vector<std::int64_t> head(st.tokens.begin(), st.tokens.end() - 1),
      next(st.tokens.begin() + 1, st.tokens.end());
  const std::vector<std::vector<std::int64_t>> mtp_ids{next};
  std::vector<SequenceState> s2{t.new_sequence()};
  const ModelOutput shorter = t.forward({head}, 0, s2, nullptr, "", &mtp_ids);
  const double mtp_err = (shorter.mtp_logits[0] - st.base.loss.mtp_last_logits).cwiseAbs().maxCoeff() /
                         shorter.mtp_logits[0].cwiseAbs().maxCoeff();
  std::printf(
      "forward vs reference: logits %.2e, MTP logits %.2e (relative); loss %.15g (lm %.15g mtp %.15g "
      "balance %.3e), smallest routing gap %.3e\n",
      main_err, mtp_err, st.base.loss.total, st.base.loss.lm, st.base.loss.mtp, st.base.loss.balance,
      st.base.loss.decisions.min_routing_gap);
  EXPECT_LE(main_err, 1e-12);
  EXPECT_LE(mtp_err, 1e-12);
  EXPECT_GT(st.base.loss.balance, 0.0);
  EXPECT_GT(st.base.loss.mtp, 0.0);
}

TEST(ModelBackward, EveryParameterHasAGradientOfItsShape) {
  const Step& st = step();
  ASSERT_EQ(st.base.grad.size(), st.params.size());
  for (const auto& [name, v] : st.params) {
    const Mat& g = st.base.grad.at(name);
    EXPECT_EQ(g.rows(), v.rows()) << name;
    EXPECT_EQ(g.cols(), v.cols()) << name;
    EXPECT_TRUE(g.allFinite()) << name;
    // Zero exactly: what only chooses (router bias, the indexer) and the ratio-128 compressors, which
    // a prompt shorter than 128 never completes (spec 06 §6.12).
    const bool zero =
        name.find(".gate.bias") != std::string::npos || name.find(".indexer.") != std::string::npos ||
        ((name.rfind("layers.1.attn.compressor", 0) == 0 || name.rfind("layers.3.attn.compressor", 0) == 0));
    if (zero)
      EXPECT_EQ(g.cwiseAbs().maxCoeff(), 0.0) << name;
    else
      EXPECT_GT(g.cwiseAbs().maxCoeff(), 0.0) << name;
  }
}

ParameterMap random_direction(const Step& st, std::uint64_t seed) {
  ParameterMap v;
  for (const auto& [name, x] : st.params) {
    const CounterRng rng(seed, stream_id(name.c_str()));
    const double s = std::max(rms(x), 1e-3);
    Mat d(x.rows(), x.cols());
    for (Eigen::Index i = 0; i < d.size(); ++i) d.data()[i] = s * rng.normal(static_cast<std::uint64_t>(i));
    v[name] = d;
  }
  return v;
}

// Every tensor moves by h times its RMS along v: h = 1e-5 keeps every routing cut and indexer choice
// (the smallest biased-score gap of the point is 6.9e-4) while the rounding term stays ≈ 1e-7.
constexpr double kDirectionStep = 1e-5;

TEST(ModelBackward, RandomDirectionsOverEveryParameter) {
  const Step& st = step();
  const double h = kDirectionStep;
  for (const std::uint64_t seed : {11ULL, 12ULL, 13ULL}) {
    const ParameterMap v = random_direction(st, seed);
    const double gv = dot(st.base.grad, v);
    const Fd fd = central_difference(st, v, h);
    const double err = std::abs(fd.fd - gv);
    std::printf("direction %llu: g·v = %.15g  fd = %.15g  |diff|/|g·v| = %.2e (bound %.2e)\n",
                static_cast<unsigned long long>(seed), gv, fd.fd, err / std::abs(gv),
                bound(gv, st.base.loss.total, h) / std::abs(gv));
    EXPECT_LE(err, bound(gv, st.base.loss.total, h)) << "direction " << seed;
  }
}

// One coordinate of each family: the element of largest |gradient|·RMS, step h·RMS of the tensor.
TEST(ModelBackward, SingleCoordinatesOfEveryFamily) {
  const Step& st = step();
  const std::vector<std::string> families{
      "embed.weight",
      "layers.2.attn.wq_a.weight",
      "layers.2.attn.q_norm.weight",
      "layers.2.attn.wq_b.weight",
      "layers.2.attn.wkv.weight",
      "layers.2.attn.kv_norm.weight",
      "layers.2.attn.wo_a.weight",
      "layers.2.attn.wo_b.weight",
      "layers.2.attn.attn_sink",
      "layers.2.attn.compressor.wkv.weight",
      "layers.2.attn.compressor.wgate.weight",
      "layers.2.attn.compressor.ape",
      "layers.2.attn.compressor.norm.weight",
      "layers.4.attn.compressor.wgate.weight",
      "layers.2.hc_attn_fn",
      "layers.2.hc_attn_base",
      "layers.2.hc_attn_scale",
      "layers.4.hc_ffn_fn",
      "layers.4.hc_ffn_scale",
      "layers.2.attn_norm.weight",
      "layers.2.ffn_norm.weight",
      "layers.0.ffn.gate.weight",
      "layers.4.ffn.gate.weight",
      "layers.4.ffn.experts.3.w1.weight",
      "layers.4.ffn.experts.3.w2.weight",
      "layers.4.ffn.experts.3.w3.weight",
      "layers.1.ffn.shared_experts.w2.weight",
      "hc_head_fn",
      "hc_head_base",
      "hc_head_scale",
      "norm.weight",
      "head.weight",
      "mtp.0.e_proj.weight",
      "mtp.0.h_proj.weight",
      "mtp.0.enorm.weight",
      "mtp.0.hnorm.weight",
      "mtp.0.norm.weight",
      "mtp.0.hc_head_fn",
      "mtp.0.attn.wkv.weight",
      "mtp.0.ffn.gate.weight",
  };
  const double h0 = 1e-4;
  double worst = 0;
  for (const std::string& name : families) {
    const Mat& x = st.params.at(name);
    const Mat& g = st.base.grad.at(name);
    const double s = std::max(rms(x), 1e-3);
    Eigen::Index at = 0;
    g.cwiseAbs().reshaped<Eigen::RowMajor>().maxCoeff(&at);
    ParameterMap v;
    for (const auto& [n, p] : st.params) v[n] = Mat::Zero(p.rows(), p.cols());
    v.at(name).data()[at] = 1.0;
    const double h = h0 * s;
    const double gi = g.data()[at];
    const Fd fd = central_difference(st, v, h);
    const double err = std::abs(fd.fd - gi);
    worst = std::max(worst, err / std::abs(gi));
    std::printf("%-40s [%ld] g = %+.10e  fd = %+.10e  rel %.2e (bound %.2e)\n", name.c_str(), static_cast<long>(at), gi,
                fd.fd, err / std::abs(gi), bound(gi, st.base.loss.total, h) / std::abs(gi));
    EXPECT_NE(gi, 0.0) << name;
    EXPECT_LE(err, bound(gi, st.base.loss.total, h)) << name;
  }
  std::printf("largest relative disagreement over the families: %.2e\n", worst);
}

// What only chooses has no gradient, and the loss does not move with it (decisions fixed).
TEST(ModelBackward, IndexerAndRouterBiasOnlyChoose) {
  const Step& st = step();
  for (const std::string name : {"layers.2.attn.indexer.wq_b.weight", "layers.4.ffn.gate.bias"}) {
    const Mat& x = st.params.at(name);
    ParameterMap v;
    for (const auto& [n, p] : st.params) v[n] = Mat::Zero(p.rows(), p.cols());
    v.at(name).setConstant(std::max(rms(x), 1e-3));
    const Fd fd = central_difference(st, v, 1e-4);
    EXPECT_EQ(st.base.grad.at(name).cwiseAbs().maxCoeff(), 0.0) << name;
    EXPECT_EQ(fd.fd, 0.0) << name;
  }
}

// The check can fail: without mHC's parameter gradients (every hc_* tensor zeroed) the same random
// direction and an hc coordinate disagree far beyond the bound.
TEST(ModelBackward, DroppingTheMhcGradientFails) {
  const Step& st = step();
  ParameterMap g = st.base.grad;
  for (auto& [name, d] : g)
    if (name.find("hc_") != std::string::npos) d.setZero();
  const double h = kDirectionStep;
  const ParameterMap v = random_direction(st, 11);
  const double gv = dot(g, v);
  const Fd fd = central_difference(st, v, h);
  std::printf("mHC gradient dropped: g·v = %.10g  fd = %.10g  rel %.2e\n", gv, fd.fd,
              std::abs(fd.fd - gv) / std::abs(fd.fd));
  EXPECT_GT(std::abs(fd.fd - gv), 1e3 * bound(fd.fd, st.base.loss.total, h));
}

}  // namespace
}  // namespace dsv4
