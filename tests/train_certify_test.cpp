// ctest-labels: model
// `dsv4 certify` / `dsv4 diff` of a training engine's dump of the golden's training step (issue 16
// item 7; goldens/README.md §Certifying a training engine): every loss and gradient judged by the
// certify tolerance model against the exact step, with the official-style step (ref/train
// train_step_official, spec 06 §6.17) as the yardstick; every optimizer state and updated parameter
// by the teacher-forced optimizer (recomputed from the candidate's own gradient, the yardstick its
// fp32 storage); the first failing value blamed in the order of the step's backward.
//
//  * the official-style step's own dump (fp32) passes, and so does the exact step's (float64);
//  * the training catalogue's legitimate variant (precision.hpp all_training_legitimate_variants():
//    every §6.14 reduction, sparse attention's dkv included, in a shuffled fp32 order) is live and
//    passes, with AdamW signs flipped that only the teacher-forced optimizer accepts (which sites it
//    reaches: official_step_reductions_test); without the gradients in the dump the optimizer is
//    judged end to end (and the variant fails so); an optimizer value inconsistent with the
//    candidate's own gradient fails; a PyTorch-style fp32 AdamW: what passes (spec 06 §6.17);
//  * each training bug (all_training_deviations()) is live, fails, and is blamed on its module:
//    the SwiGLU backward without the clamp mask on the experts' backward, the Muon bugs and AdamW
//    on the router on the optimizer of the parameter they break, the balance loss on the biased
//    scores on the balance loss;
//  * the CLI: certify names the blame and exits 1, diff prints the step's table and exits 1 for a
//    bug, 0 for the official-style dump; bad input to the teacher-forced optimizer (no pre-step
//    state, a gradient of another shape) is one line, exit 2.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/golden/train_golden.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "dsv4/train/adamw.hpp"
#include "dsv4/train/model_backward.hpp"
#include "dsv4/train/optimizer_assignment.hpp"
#include "dsv4/train/train_step.hpp"
#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

constexpr std::uint64_t kSeed = 3;
constexpr std::int64_t kTokens = 12;
constexpr double kLr = 1e-3;

// What each training bug must be blamed on: the first failing value's kind and a part of its name.
struct Blame {
  TrainDataset kind;
  std::string name_part;
};
const std::map<Deviation, Blame>& expected_blame() {
  static const std::map<Deviation, Blame> m{
      {Deviation::kSwigluNoClampGrad, {TrainDataset::kGrad, ".ffn."}},
      {Deviation::kMuonTransposeNotUndone, {TrainDataset::kUpdated, ""}},
      {Deviation::kAdamWOnRouter, {TrainDataset::kUpdated, ".ffn.gate.weight"}},
      {Deviation::kNsFastCoefficientsOnly, {TrainDataset::kUpdated, ""}},
      {Deviation::kBalanceOnBiasedScores, {TrainDataset::kLoss, "balance"}},
  };
  return m;
}

class TrainCertify : public testing_support::CliDir {
 protected:
  static std::filesystem::path shared_;
  static ModelConfig config_, low_limit_;
  static std::vector<std::int64_t> tokens_;

  static void SetUpTestSuite() {
    shared_ = std::filesystem::temp_directory_path() / ("dsv4_train_certify_" + std::to_string(::getpid()));
    std::filesystem::remove_all(shared_);
    std::filesystem::create_directories(shared_);
    config_ = builtin_config("tiny");
    // The clamp bug is only observable where a SwiGLU input lies outside the clamp: the tiny weights
    // keep |g|, |u| far under V4's limit 10, so its golden has limit 1 (as the forward catalogue's).
    low_limit_ = config_;
    low_limit_.swiglu_limit = 1.0;
    tokens_ = synthetic_tokens(kTokens, config_.vocab_size, 1).front();
    generate(config_, "g.h5");
    generate(low_limit_, "g_low.h5");
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(shared_); }
  static std::string path(const std::string& n) { return (shared_ / n).string(); }

  static TrainStepOptions options() {
    TrainStepOptions o;
    o.lr = kLr;
    return o;
  }

  static void generate(const ModelConfig& c, const std::string& name) {
    GoldenGenerateOptions o;
    o.config = c;
    o.weights = WeightsSpec{kSeed, ""};
    o.tokens = {tokens_};
    o.deflate = 0;
    o.train = options();
    generate_golden(o, path(name));
  }

  // The step of an engine: exact, or official-style with one catalogue entry (the exact steps and
  // the faithful official-style ones computed once per config).
  static TrainStepResult step(const ModelConfig& c, bool exact, Deviation d = Deviation::kNone) {
    static std::map<double, TrainStepResult> exact_steps;
    static std::map<std::pair<double, Deviation>, TrainStepResult> official_steps;
    const ModelWeights w = make_weights(c, WeightsSpec{kSeed, ""});
    const ParameterMap params = model_parameters(c, w);
    auto e = exact_steps.find(c.swiglu_limit);
    if (e == exact_steps.end())
      e = exact_steps.emplace(c.swiglu_limit, train_step(c, w, params, tokens_, options())).first;
    if (exact) return e->second;
    if (const auto o = official_steps.find({c.swiglu_limit, d}); o != official_steps.end()) return o->second;
    OfficialStyleOptions style;
    style.deviation = d;
    TrainStepResult r = train_step_official(c, w, params, tokens_, e->second.step.loss.decisions, options(), style);
    official_steps.emplace(std::pair{c.swiglu_limit, d}, r);
    return r;
  }

  // The engine's dump: every value of the step under its train/ name, in the golden's shapes, as
  // float32 (an fp32 engine) or float64; the optimizer states the engine's own optimizer holds.
  // with_grad false: the dump holds no train/grad/… (the optimizer is then judged end to end).
  static std::string dump(const Golden& g, const TrainStepResult& r, const std::string& name, bool f64,
                          bool with_grad = true) {
    const std::string file = path(name);
    Hdf5File f = Hdf5File::create(file);
    const auto put = [&](TrainDataset kind, const std::string& n, const double* data, std::int64_t size) {
      const std::string p = train_dataset_path(kind, n);
      std::vector<std::int64_t> shape{1};
      // (a state the golden's optimizer does not have — AdamW on a Muon parameter: the parameter's shape)
      const GoldenEntry* e = g.find(p);
      if (e == nullptr && kind != TrainDataset::kLoss) e = g.find(train_dataset_path(TrainDataset::kGrad, n));
      if (e != nullptr) shape = e->shape;
      Tensor t(f64 ? DType::kF64 : DType::kF32, shape);
      ASSERT_EQ(t.numel(), size) << p;
      for (std::int64_t i = 0; i < size; ++i) {
        if (f64)
          t.values<double>()[static_cast<std::size_t>(i)] = data[i];
        else
          t.values<float>()[static_cast<std::size_t>(i)] = static_cast<float>(data[i]);
      }
      f.write(p, t);
    };
    const TrainingLoss& L = r.step.loss;
    for (const auto& [part, v] :
         std::map<std::string, double>{{"total", L.total}, {"lm", L.lm}, {"mtp", L.mtp}, {"balance", L.balance}})
      put(TrainDataset::kLoss, part, &v, 1);
    for (const auto& [n, gr] : r.step.grad) {
      if (with_grad) put(TrainDataset::kGrad, n, gr.data(), gr.size());
      put(TrainDataset::kUpdated, n, r.updated.at(n).data(), gr.size());
      if (const auto a = r.adamw.find(n); a != r.adamw.end()) {
        put(TrainDataset::kAdamWM, n, a->second.m.data(), gr.size());
        put(TrainDataset::kAdamWV, n, a->second.v.data(), gr.size());
      }
      if (const auto m = r.muon.find(n); m != r.muon.end())
        put(TrainDataset::kMuonMomentum, n, m->second.momentum.data(), gr.size());
    }
    f.commit();
    return file;
  }

  static report::CertifyReport judge(const std::string& golden, const std::string& cand) {
    const Golden g = Golden::open(golden);
    const MappedTensorSource src(TensorSource::open(cand), NameMap{});
    return certify(g, src, CertifyOptions{});
  }

  static std::int64_t train_values(const Golden& g) { return static_cast<std::int64_t>(train_tolerances(g).size()); }
};
std::filesystem::path TrainCertify::shared_;
ModelConfig TrainCertify::config_, TrainCertify::low_limit_;
std::vector<std::int64_t> TrainCertify::tokens_;

std::string failures(const report::CertifyReport& r) {
  std::string s;
  for (const auto& t : r.tensors)
    if (!t.passes()) s += t.name + ": " + (t.local && t.local->available ? t.local->reason : t.verdict.reason) + "\n";
  return s;
}

// The golden holds the official-style twins and their figures, and verify accepts it.
TEST_F(TrainCertify, GoldenHoldsTheOfficialStyleStep) {
  const Golden g = Golden::open(path("g.h5"));
  const auto tol = train_tolerances(g);
  ASSERT_GT(tol.size(), 100u);
  std::int64_t nonzero = 0;
  for (const auto& [p, t] : tol) {
    ASSERT_NE(g.find(p), nullptr) << p;
    const std::optional<TrainDatasetDesc> d = describe_train_dataset(p);
    ASSERT_TRUE(d && !d->official) << p;
    ASSERT_NE(g.find(train_dataset_path(d->kind, d->name, true)), nullptr) << p;
    nonzero += t.official->error.max_abs > 0 ? 1 : 0;
  }
  // The official-style step is another computation: most values differ from the exact ones.
  EXPECT_GT(nonzero, static_cast<std::int64_t>(tol.size()) / 2);
  const GoldenVerifyResult v = verify_golden(path("g.h5"));
  EXPECT_TRUE(v.problems.empty()) << v.problems.front().dataset << ": " << v.problems.front().what;
}

TEST_F(TrainCertify, OfficialStyleAndExactDumpsPass) {
  const Golden g = Golden::open(path("g.h5"));
  for (const bool exact : {false, true}) {
    const std::string cand = dump(g, step(config_, exact), exact ? "exact.h5" : "official.h5", exact);
    const report::CertifyReport r = judge(path("g.h5"), cand);
    EXPECT_TRUE(r.pass()) << (exact ? "exact" : "official-style") << "\n" << failures(r) << r.first_failure;
    EXPECT_EQ(r.checked(), train_values(g));
    EXPECT_TRUE(r.unmatched.empty());
    EXPECT_TRUE(r.required_missing.empty());
  }
}

// The optimizer values whose end-to-end verdict (against the golden's step) fails and whose
// teacher-forced one (recomputed from the candidate's gradients) passes: the judge decided them.
std::vector<std::string> decided_by_teacher_forcing(const report::CertifyReport& r) {
  std::vector<std::string> v;
  for (const auto& t : r.tensors)
    if (t.verdict.verdict == compare::Verdict::kFail && t.local && t.local->available && t.local->pass)
      v.push_back(t.name);
  return v;
}

// The legitimate variant takes the shuffled schedule at every site of spec 06 §6.14, sparse
// attention's dkv included: an activation gradient, so every gradient upstream moves, and
// cancelling mHC AdamW gradients within rounding of 0 flip sign — AdamW's first step moves those
// elements by 2·lr. It must PASS: the gradients by their yardstick, the optimizer recomputed from
// the candidate's own gradients. The test requires that such a flip happens (an optimizer value
// that fails end to end and passes teacher-forced), so the PASS shows the judge at work.
TEST_F(TrainCertify, LegitimateVariantsPass) {
  const Golden g = Golden::open(path("g.h5"));
  const TrainStepResult good = step(config_, false);
  for (const Deviation d : all_training_legitimate_variants()) {
    const TrainStepResult v = step(config_, false, d);
    bool live = false;
    for (const auto& [n, gr] : v.step.grad) live = live || gr != good.step.grad.at(n);
    EXPECT_TRUE(live) << deviation_name(d) << " changes no gradient: its PASS would prove nothing";
    const report::CertifyReport r = judge(path("g.h5"), dump(g, v, deviation_name(d) + ".h5", false));
    EXPECT_TRUE(r.pass()) << deviation_name(d) << "\n" << failures(r);
    const std::vector<std::string> decided = decided_by_teacher_forcing(r);
    std::printf("  %s: %zu optimizer values fail end to end and pass recomputed from the candidate's gradients\n",
                deviation_name(d).c_str(), decided.size());
    for (const std::string& n : decided) std::printf("    %s\n", n.c_str());
    EXPECT_FALSE(decided.empty()) << deviation_name(d)
                                  << ": no AdamW sign flip; the test no longer exercises the judge";
    for (const std::string& n : decided) EXPECT_NE(describe_train_dataset(n)->kind, TrainDataset::kGrad) << n;
  }
}

// Without the gradients in the dump the optimizer cannot be recomputed from them: every optimizer
// value is judged end to end against the golden's step (marked, with the reason) — the faithful
// official-style step's values pass so (the dump fails --require all, which asks for the
// gradients), the legitimate variant's flipped AdamW signs fail so (named, spec 06 §6.17).
TEST_F(TrainCertify, WithoutGradientsTheOptimizerIsJudgedEndToEnd) {
  const Golden g = Golden::open(path("g.h5"));
  const report::CertifyReport ok = judge(path("g.h5"), dump(g, step(config_, false), "nograd.h5", false, false));
  EXPECT_EQ(ok.failed_tensors(), 0) << failures(ok);
  EXPECT_FALSE(ok.required_missing.empty());  // --require all asks for the gradients
  std::int64_t optimizer_values = 0;
  for (const auto& t : ok.tensors) {
    const std::optional<TrainDatasetDesc> d = describe_train_dataset(t.name);
    ASSERT_TRUE(d.has_value()) << t.name;
    ASSERT_NE(d->kind, TrainDataset::kGrad) << t.name;
    if (d->kind == TrainDataset::kLoss) continue;
    ++optimizer_values;
    ASSERT_TRUE(t.local.has_value()) << t.name;
    EXPECT_FALSE(t.local->available) << t.name;
    if (optimizer_for(d->name).kind != OptimizerKind::kNone) {
      EXPECT_NE(t.local->reason.find("holds no train/grad/" + d->name), std::string::npos) << t.local->reason;
    }
  }
  EXPECT_GT(optimizer_values, 100);
  const Deviation variant = all_training_legitimate_variants().front();
  const report::CertifyReport r =
      judge(path("g.h5"), dump(g, step(config_, false, variant), "nograd_variant.h5", false, false));
  EXPECT_GT(r.failed_tensors(), 0) << "the variant's flipped AdamW signs pass end to end: the test documents a gap "
                                      "that is gone";
  for (const auto& t : r.tensors)
    if (!t.passes()) {
      EXPECT_EQ(optimizer_for(describe_train_dataset(t.name)->name).kind, OptimizerKind::kAdamW) << t.name;
    }
}

// The teacher-forced optimizer fails an optimizer value inconsistent with the candidate's own
// (passing) gradient, blamed on that parameter's optimizer: one AdamW element moved the other way
// (2·lr: what a sign flip does, here without the flip in the gradient), and the second moment of
// another scaled by 1 + 2⁻¹⁰ — far outside the fp32 storage of the recomputation, and within the
// end-to-end yardstick (the official-style step's v, a few percent from exact): the judge is
// sharper than the end-to-end comparison it replaces, not only looser where signs flip.
TEST_F(TrainCertify, OptimizerInconsistentWithItsOwnGradientFails) {
  const Golden g = Golden::open(path("g.h5"));
  const std::string victim = "layers.0.hc_attn_scale";
  ASSERT_EQ(optimizer_for(victim).kind, OptimizerKind::kAdamW);
  {
    TrainStepResult r = step(config_, false);
    const double gi = r.step.grad.at(victim).data()[0];
    ASSERT_NE(gi, 0.0);
    r.updated.at(victim).data()[0] += 2 * kLr * (gi > 0 ? 1.0 : -1.0);  // moved against −sign(g)
    const report::CertifyReport c = judge(path("g.h5"), dump(g, r, "flip_update.h5", false));
    EXPECT_FALSE(c.pass());
    EXPECT_EQ(c.first_failure, train_dataset_path(TrainDataset::kUpdated, victim)) << c.first_failure_blame;
    EXPECT_EQ(c.first_failure_blame, "optimizer of " + victim + " (" + c.first_failure + ")");
    for (const auto& t : c.tensors)
      if (t.name == c.first_failure) {
        ASSERT_TRUE(t.local && t.local->available);
        EXPECT_NE(t.local->reason.find("recomputed from the candidate's gradients"), std::string::npos)
            << t.local->reason;
      }
  }
  {
    TrainStepResult r = step(config_, false);
    const std::string name = "layers.1.hc_ffn_base";
    ASSERT_EQ(optimizer_for(name).kind, OptimizerKind::kAdamW);
    r.adamw.at(name).v *= 1 + std::ldexp(1.0, -10);
    const report::CertifyReport c = judge(path("g.h5"), dump(g, r, "scaled_v.h5", false));
    EXPECT_FALSE(c.pass());
    EXPECT_EQ(c.first_failure, train_dataset_path(TrainDataset::kAdamWV, name)) << c.first_failure_blame;
    for (const auto& t : c.tensors)
      if (t.name == c.first_failure) {
        EXPECT_EQ(t.verdict.verdict, compare::Verdict::kPass) << "end to end: " << t.verdict.reason;
      }
  }
}

TEST_F(TrainCertify, EveryTrainingBugFailsAndIsBlamed) {
  ASSERT_EQ(expected_blame().size(), all_training_deviations().size());
  for (const Deviation d : all_training_deviations()) {
    const bool clamp = d == Deviation::kSwigluNoClampGrad;
    const ModelConfig& c = clamp ? low_limit_ : config_;
    const std::string golden = path(clamp ? "g_low.h5" : "g.h5");
    const Golden g = Golden::open(golden);
    const TrainStepResult good = step(c, false), bad = step(c, false, d);
    bool live = bad.step.loss.total != good.step.loss.total || bad.step.loss.balance != good.step.loss.balance;
    for (const auto& [n, u] : bad.updated) live = live || u != good.updated.at(n);
    ASSERT_TRUE(live) << deviation_name(d) << " is dead";
    const report::CertifyReport r = judge(golden, dump(g, bad, deviation_name(d) + ".h5", false));
    EXPECT_FALSE(r.pass()) << deviation_name(d);
    const Blame& want = expected_blame().at(d);
    const std::optional<TrainDatasetDesc> got = describe_train_dataset(r.first_failure);
    ASSERT_TRUE(got.has_value()) << deviation_name(d) << ": first failure '" << r.first_failure << "'";
    EXPECT_EQ(got->kind, want.kind) << deviation_name(d) << ": " << r.first_failure_blame;
    EXPECT_NE(r.first_failure.find(want.name_part), std::string::npos)
        << deviation_name(d) << ": " << r.first_failure_blame;
    EXPECT_EQ(r.first_failure_blame, train_blame(r.first_failure));
    if (got->kind != TrainDataset::kGrad && got->kind != TrainDataset::kLoss)  // by the teacher-forced optimizer
      for (const auto& t : r.tensors)
        if (t.name == r.first_failure) {
          ASSERT_TRUE(t.local && t.local->available) << t.name;
          EXPECT_FALSE(t.local->pass);
          EXPECT_NE(t.local->reason.find("recomputed from the candidate's gradients"), std::string::npos);
        }
    std::printf("  %-26s FAIL, blamed: %s\n", deviation_name(d).c_str(), r.first_failure_blame.c_str());
  }
}

// Muon without the transpose-back breaks only the tall matrices: the blamed one is tall.
TEST_F(TrainCertify, TransposeBugIsBlamedOnATallMatrix) {
  const Golden g = Golden::open(path("g.h5"));
  const report::CertifyReport r =
      judge(path("g.h5"), dump(g, step(config_, false, Deviation::kMuonTransposeNotUndone), "tall.h5", false));
  const std::optional<TrainDatasetDesc> d = describe_train_dataset(r.first_failure);
  ASSERT_TRUE(d.has_value()) << r.first_failure;
  const GoldenEntry* e = g.find(r.first_failure);
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->shape.size(), 2u);
  EXPECT_GT(e->shape[0], e->shape[1]) << r.first_failure;
}

TEST_F(TrainCertify, CliCertifyAndDiffBlameTheModule) {
  const Golden g = Golden::open(path("g.h5"));
  const std::string bad = dump(g, step(config_, false, Deviation::kBalanceOnBiasedScores), "cli_bad.h5", false);
  const std::string good = dump(g, step(config_, false), "cli_good.h5", false);
  const auto c = dsv4("certify --golden " + path("g.h5") + " --candidate " + bad + " --quiet");
  EXPECT_EQ(c.status, 1) << c.out << c.err;
  EXPECT_NE(c.out.find("in the order of its backward: loss balance"), std::string::npos) << c.out;
  const auto d = dsv4("diff --teacher-forced --golden " + path("g.h5") + " --candidate " + bad);
  EXPECT_EQ(d.status, 1) << d.out << d.err;
  EXPECT_NE(d.out.find("first divergent: loss balance"), std::string::npos) << d.out;
  const auto ok = dsv4("diff --teacher-forced --golden " + path("g.h5") + " --candidate " + good);
  EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("training step: PASS"), std::string::npos) << ok.out;
}

// Not bit for bit: an engine whose AdamW runs in fp32 arithmetic on its fp32 gradient as PyTorch's
// single-tensor AdamW does (torch/optim/adamw.py: hyper-parameters and bias corrections in double,
// as Python scalars, cast to fp32 where a tensor operation takes them; every tensor operation one
// fp32 rounding: m.lerp_(g, 1 − β1), v.mul_(β2).addcmul_(g, g, 1 − β2), p.mul_(1 − ηλ),
// denom = v.sqrt() / √(1 − β2^t) + ε, p.addcdiv_(m, denom, −η/(1 − β1^t))): its values differ from
// the double recomputation's fp32 storage, and its updated parameters and first moments pass the
// teacher-forced optimizer. Its second moments v = fl(fl((1 − β2)·g)·g) round twice where the
// yardstick (one fp32 rounding) allows one: measured, 2 of the tiny step's AdamW v fail the RMS
// test by ~25 % (layers.0.hc_attn_base: 3.5e-12 against 2.8e-12; 24 and 3 elements), the others
// pass — a yardstick of fp32 optimizer arithmetic is not yet derived (spec 06 §6.17: named). The
// test pins what passes; v is printed.
TEST_F(TrainCertify, TorchStyleFp32AdamW) {
  const Golden g = Golden::open(path("g.h5"));
  TrainStepResult r = step(config_, false);
  const ParameterMap theta0 = model_parameters(config_, make_weights(config_, WeightsSpec{kSeed, ""}));
  const AdamWConfig a = options().adamw;
  const auto f = [](double x) { return static_cast<float>(x); };
  const double bc1 = 1 - a.beta1, bc2_sqrt = std::sqrt(1 - a.beta2);  // step 1
  const float w1 = f(1 - a.beta1), w2 = f(1 - a.beta2), decay = f(1 - kLr * a.weight_decay);
  const float step_size = f(-(kLr / bc1)), bc2 = f(bc2_sqrt), eps = f(a.eps);
  std::int64_t moved = 0;
  for (auto& [name, st] : r.adamw) {
    const Mat& gr = r.step.grad.at(name);
    Mat& w = r.updated.at(name);
    for (Eigen::Index i = 0; i < gr.size(); ++i) {
      const float gi = f(gr.data()[i]);
      const float m = w1 * gi;         // lerp from 0
      const float v = (w2 * gi) * gi;  // addcmul onto β2·0
      const float denom = std::sqrt(v) / bc2 + eps;
      const float p = f(theta0.at(name).data()[i]) * decay;
      const float wi = p + step_size * (m / denom);
      moved += static_cast<double>(m) != st.m.data()[i] || static_cast<double>(v) != st.v.data()[i] ||
                       static_cast<double>(wi) != w.data()[i]
                   ? 1
                   : 0;
      st.m.data()[i] = m;
      st.v.data()[i] = v;
      w.data()[i] = wi;
    }
  }
  std::printf("  torch-style fp32 AdamW: %lld elements differ from the double step stored fp32\n",
              static_cast<long long>(moved));
  EXPECT_GT(moved, 0) << "fp32 arithmetic reproduced every bit: the test proves nothing";
  const report::CertifyReport c = judge(path("g.h5"), dump(g, r, "fp32_adamw.h5", false));
  std::int64_t v_failing = 0, v_total = 0;
  for (const auto& t : c.tensors) {
    const TrainDataset kind = describe_train_dataset(t.name)->kind;
    if (kind == TrainDataset::kAdamWV) {
      ++v_total;
      v_failing += t.passes() ? 0 : 1;
      if (!t.passes()) std::printf("    %s: %s\n", t.name.c_str(), t.local->reason.c_str());
      continue;
    }
    EXPECT_TRUE(t.passes()) << t.name << ": " << (t.local && t.local->available ? t.local->reason : t.verdict.reason);
  }
  std::printf("  torch-style fp32 AdamW: %lld of %lld second moments fail (two roundings, the yardstick one)\n",
              static_cast<long long>(v_failing), static_cast<long long>(v_total));
}

// A copy of golden `from` whose manifest `edit` changed, resealed (seal_golden: the hashes hold).
void copy_with_manifest(const std::string& from, const std::string& to,
                        const std::function<void(nlohmann::ordered_json&)>& edit) {
  const Golden g = Golden::open(from);
  auto manifest = nlohmann::ordered_json::parse(g.manifest_text());
  edit(manifest);
  Hdf5File out = Hdf5File::create(to);
  for (const std::string& n : g.file().list_datasets())
    if (n != "manifest") out.write(n, g.file().read(n));
  seal_golden(out, manifest.dump(1));
}

// Bad input to the teacher-forced optimizer: one line, exit 2 — a golden without the pre-step
// state (a hyper-parameter of its step; the weights of a golden of checkpoint weights, without
// --weights: certify --end-to-end-only and diff, which need no forward recomputation, still need
// θ₀ for the optimizer), and a candidate gradient of another shape than the golden's.
TEST_F(TrainCertify, CliOptimizerJudgeBadInput) {
  const Golden g = Golden::open(path("g.h5"));
  const std::string cand = dump(g, step(config_, false), "cli_tf.h5", false);
  copy_with_manifest(path("g.h5"), file("no_lr.h5"), [](nlohmann::ordered_json& m) { m.at("train").erase("lr"); });
  expect_bad_input(dsv4("certify --end-to-end-only --golden " + file("no_lr.h5") + " --candidate " + cand), "certify",
                   "train.lr is missing (the pre-step state of the training step)");
  copy_with_manifest(path("g.h5"), file("no_beta2.h5"),
                     [](nlohmann::ordered_json& m) { m.at("train").at("adamw").erase("beta2"); });
  expect_bad_input(dsv4("certify --end-to-end-only --golden " + file("no_beta2.h5") + " --candidate " + cand),
                   "certify", "train.adamw.beta2 is missing");
  copy_with_manifest(path("g.h5"), file("ckpt.h5"), [](nlohmann::ordered_json& m) {
    m.at("weights") = {{"source", "checkpoint"}, {"file", "w.safetensors"}, {"content_sha256", std::string(64, 'a')}};
  });
  for (const std::string cmd : {"certify --end-to-end-only", "diff --teacher-forced"})
    expect_bad_input(dsv4(cmd + " --golden " + file("ckpt.h5") + " --candidate " + cand), cmd.substr(0, cmd.find(' ')),
                     "--weights: required");
  // A gradient of another shape (the golden's parameter shape is [n, m] or [n]).
  const std::string victim = "layers.0.hc_attn_scale";
  Hdf5File bad = Hdf5File::create(file("bad_shape.h5"));
  const Tensor src = Hdf5File::open(cand).read(train_dataset_path(TrainDataset::kGrad, victim));
  const Tensor wrong = src.reshaped({src.numel(), 1});
  ASSERT_NE(wrong.shape(), g.find(train_dataset_path(TrainDataset::kGrad, victim))->shape);
  bad.write(train_dataset_path(TrainDataset::kGrad, victim), wrong);
  bad.write(train_dataset_path(TrainDataset::kUpdated, victim),
            Hdf5File::open(cand).read(train_dataset_path(TrainDataset::kUpdated, victim)));
  bad.commit();
  expect_bad_input(dsv4("certify --end-to-end-only --golden " + path("g.h5") + " --candidate " + file("bad_shape.h5")),
                   "certify", "differs from the golden's");
}

}  // namespace
}  // namespace dsv4
