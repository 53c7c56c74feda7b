// ctest-labels: model
// The catalogue's verdicts (issue 15 items 2 and 3; ref/README.md §Deliberate deviations): on a
// tiny golden (weights seed 1, prompt 36, 2 decode steps, as in the issue) every legitimate engine
// variant (all_legitimate_variants()) must PASS `dsv4 certify` (with local verdicts) and `dsv4 diff
// --teacher-forced`; every deviation (all_deviations()) must FAIL both, blamed on its module's
// component (support/bug_catalogue.hpp; the layer index dropped, as diff_test compares); and
// certify's first failing module must be diff's first divergent module. What today's statistics
// do not yet achieve is listed in kNotYetPassing, kNotYetCaught, kNotYetBlamedRight and
// kNotYetAgreeing, and the test checks each list is exactly the set of entries that misses today:
// when a sharper statistic fixes one, the test fails until it leaves its list. The measured
// verdict table is printed (entry, certify verdict and first failing output, diff verdict, first
// divergent module and step, the quantised elements diff accepted as near-tie rounding flips,
// seconds), each row followed by the quantised outputs' direction test with the smallest p
// (compare::quant_direction_test) and diff's first failing reason.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/compare/structure.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/diff/teacher_forced.hpp"
#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/dump.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "dsv4/model/transformer.hpp"
#include "support/bug_catalogue.hpp"
#include "support/suite_golden.hpp"

namespace dsv4 {
namespace {

constexpr std::uint64_t kSeed = 1;
constexpr std::int64_t kDecode = 2;
// The prompt length: 36 (CI), or DSV4_CATALOGUE_PROMPT — ctest `catalogue_verdicts_140` (label
// long) runs 138, the 140-token run of issue 15's goal. The "not yet" lists below are measured per
// length (kLongPrompt's where they differ).
constexpr std::int64_t kLongPrompt = 138;
static_assert(kLongPrompt + kDecode == 140, "the long run is issue 15's 140-token golden");
std::int64_t prompt_len() {
  const char* v = std::getenv("DSV4_CATALOGUE_PROMPT");
  return v && *v ? std::stoll(v) : 36;
}
const std::int64_t kPrompt = prompt_len();
// DSV4_CATALOGUE_ONLY=name,name (deviation_name): judge only those entries and print their rows;
// the "not yet" lists are then not checked (a development aid, never set by ctest).
std::string only_list() {
  const char* v = std::getenv("DSV4_CATALOGUE_ONLY");
  return v ? std::string(v) : std::string();
}
bool selected(Deviation d) {
  const std::string list = only_list();
  if (list.empty()) return true;
  return ("," + list + ",").find("," + deviation_name(d) + ",") != std::string::npos;
}

// What today's statistics do not yet achieve (measured at this commit; issue 15 items 1 and 3 are
// to empty every list). Each is checked to be exactly the set that misses today.
// Legitimate variants that FAIL today: none since diff's yardstick includes the sequential-fp32
// summation order (oracle/README.md, "The yardstick"); the sum-sequential engine failed the fp32 hc
// post/comb before (3.7e-7 against an allowance of 3.0e-7).
// On the 140-token run (kLongPrompt) bf16-jitter FAILed at decode0/layers.0.attn/kv until the
// quantised outputs had their near-tie rule: one FP8 quantum (0.25) in a nope dim, where the
// jittered input moved the value across an FP8 rounding boundary (max|c−e| 0.25 > 0.151 = 2 ×
// official 0.0679 + 1 ulp). The size checks now accept a one-quantum flip whose exact
// pre-quantisation value lies within the yardstick of the boundary (compare/quant_flips.hpp).
const std::set<Deviation> kNotYetPassing{};
// Deviations that PASS certify or diff today, each at a measured limit (bug_catalogue.hpp
// diff_misses for the clamp and the RMSNorm eps). The Sinkhorn column-first order, measured on this
// run (2026-12-07, an ad-hoc program recording both full runs): the column-first and the official
// comb differ by at most 6 fp32 ulp (1.2e-7) at layers.0.hc_attn, while the official's own error
// against exact there is 9.1e-8 — its 39 fp32 normalisations round as much as the order changes.
// The seed-1 logits let Sinkhorn converge within its 20 iterations, where the two orders meet;
// diff_test's golden (seed 9), less converged, catches it. The 140-token run misses the same three.
const std::set<Deviation> kNotYetCaught{Deviation::kSinkhornColumnFirst, Deviation::kClampGateBothSides,
                                        Deviation::kRmsNormEpsOutside};
// Deviations both FAIL whose first failing module (certify's or diff's) is not the bug's component:
// none since certify judges every output by the local verdict (issue 15 item 3).
const std::set<Deviation> kNotYetBlamedRight{};
// Entries whose certify first failing module is not diff's first divergent module (issue 15 item 3):
// none — certify's verdicts are diff's.
const std::set<Deviation> kNotYetAgreeing{};

// The module path of a canonical name `<step>/<module>/<output>` ("" for "").
std::string module_of(const std::string& name) {
  if (name.empty()) return "";
  const std::size_t a = name.find('/'), b = name.rfind('/');
  return name.substr(a + 1, b - a - 1);
}

// The component of a module path: the layer index dropped (`layers.3.hc_attn` → `layers.hc_attn`),
// as diff_test compares blame (a bug in shared code is first detectable in any layer).
std::string component(const std::string& module) {
  if (module.rfind("layers.", 0) != 0) return module;
  const std::size_t dot = module.find('.', 7);
  return "layers" + (dot == std::string::npos ? std::string() : module.substr(dot));
}

struct Verdicts {
  bool certify_pass = false;
  std::string certify_first;   // certify's first failing output ("" when it passes)
  std::string certify_reason;  // its verdict's reason (and its local verdict's)
  std::string diff_reason;     // diff's first failing module's reason
  bool diff_pass = false;
  std::string diff_module, diff_step;  // diff's first divergent module and its step ("" when none)
  bool live = false;                   // the candidate's dump differs from the official engine's somewhere
  std::int64_t quant_flips = 0;        // quantised elements diff accepted as near-tie rounding flips
  std::string direction;               // the quantised outputs' direction test with the smallest p
  double direction_p = 2.0;            // … its p (2: none ran)
  double seconds = 0.0;
  std::string certify_module() const { return module_of(certify_first); }
};

class CatalogueVerdicts : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing_support::suite_temp_dir("catalogue_verdicts");
    config_ = builtin_config("tiny");
    // The clamp bug changes only SwiGLU gates below −limit: the tiny weights keep |g| far under
    // V4's limit 10, so its golden has limit 1 (deviation_test, diff_test do the same).
    low_limit_ = config_;
    low_limit_.swiglu_limit = 1.0;
    tokens_ = synthetic_tokens(kPrompt + kDecode, config_.vocab_size, kSeed);
    generate(config_, "g.h5");
    generate(low_limit_, "g_low.h5");
    official_ = new MemoryRecorder(record(config_, Precision(Mode::kOfficial)));
    official_low_ = new MemoryRecorder(record(low_limit_, Precision(Mode::kOfficial)));
  }
  static void TearDownTestSuite() {
    delete official_;
    delete official_low_;
    std::filesystem::remove_all(dir_);
  }
  static std::string path(const std::string& n) { return (dir_ / n).string(); }

  static void generate(const ModelConfig& c, const std::string& name) {
    testing_support::generate_synthetic_golden(c, kSeed, tokens_, kDecode, path(name));
  }

  static MemoryRecorder record(const ModelConfig& c, const Precision& p) {
    const Transformer model(p, c, make_weights(c, WeightsSpec{kSeed, ""}));
    MemoryRecorder rec;
    run_plan(model, tokens_, plan_steps(c, 1, kPrompt + kDecode, kDecode), rec);
    return rec;
  }

  static bool differ(const MemoryRecorder& a, const MemoryRecorder& b) {
    for (const std::string& n : a.order())
      if (a.at(n).values != b.at(n).values) return true;
    return false;
  }

  // The official-mode engine with `d` dumped, then judged by diff and by certify (its local
  // verdicts from that diff, as certify_local_judge would compute them).
  static Verdicts judge(Deviation d) {
    const auto t0 = std::chrono::steady_clock::now();
    const bool clamp = d == Deviation::kClampGateBothSides;
    const ModelConfig& c = clamp ? low_limit_ : config_;
    const std::string golden = path(clamp ? "g_low.h5" : "g.h5"), cand = path(deviation_name(d) + ".h5");
    Verdicts v;
    {
      const MemoryRecorder rec = record(c, Precision(Mode::kOfficial, d));
      v.live = differ(clamp ? *official_low_ : *official_, rec);
      write_run_dump(cand,
                     RunDumpInfo{c, Mode::kOfficial, WeightsSpec{kSeed, ""}, tokens_, kDecode,
                                 plan_steps(c, 1, kPrompt + kDecode, kDecode)},
                     rec);
    }
    const Golden g = Golden::open(golden);
    const MappedTensorSource source(TensorSource::open(cand), NameMap{});
    const diff::DiffReport dr = diff::diff_against_golden(g, source);
    v.diff_pass = !dr.first_divergent_module.has_value();
    v.diff_module = dr.first_divergent_module.value_or("");
    v.diff_step = dr.first_divergent_step.value_or("");
    v.quant_flips = dr.quant_flips_accepted;
    for (const diff::ModuleResult& m : dr.modules) {
      if (!m.pass && v.diff_reason.empty()) v.diff_reason = m.step + "/" + m.module + ": " + m.reason;
      for (const diff::OutputResult& o : m.outputs)
        for (const compare::StructureStat& st : o.structure)
          if (st.kind == compare::StructureKind::kQuantDirection && st.ran && st.p < v.direction_p) {
            v.direction_p = st.p;
            v.direction = o.name + ": " + compare::describe(st);
          }
    }
    CertifyOptions opts;
    opts.local_verdicts = [&dr] { return diff::local_verdicts_of(dr); };
    const report::CertifyReport r = certify(g, source, opts);
    v.certify_pass = r.pass();
    v.certify_first = r.first_failure;
    for (const report::TensorResult& t : r.tensors)
      if (t.name == r.first_failure)
        v.certify_reason = t.verdict.reason + (t.local ? " / local: " + t.local->reason : std::string());
    for (const report::SetResult& st : r.sets)
      if (st.name == r.first_failure) v.certify_reason = st.local ? "local: " + st.local->reason : "set rows rejected";
    v.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::filesystem::remove(cand);
    return v;
  }

  static void print_row(Deviation d, const Verdicts& v) {
    std::printf("  %-24s %-4s certify %-4s %-44s diff %-4s %-28s %-8s flips %-3lld %6.1f s\n",
                deviation_name(d).c_str(), v.live ? "live" : "DEAD", v.certify_pass ? "PASS" : "FAIL",
                v.certify_first.empty() ? "-" : v.certify_first.c_str(), v.diff_pass ? "PASS" : "FAIL",
                v.diff_module.empty() ? "-" : v.diff_module.c_str(), v.diff_step.empty() ? "-" : v.diff_step.c_str(),
                static_cast<long long>(v.quant_flips), v.seconds);
    if (!v.direction.empty()) std::printf("    smallest-p direction test: %s\n", v.direction.c_str());
    if (!v.diff_reason.empty()) std::printf("    diff: %.300s\n", v.diff_reason.c_str());
    std::fflush(stdout);
  }

  static std::string both(const Verdicts& v) {
    std::string s = "certify first failing: '" + v.certify_first + "' (module '" + v.certify_module() +
                    "'), diff first divergent: '" + v.diff_module + "' in '" + v.diff_step + "'";
    if (!v.certify_reason.empty()) s += "\n      certify: " + v.certify_reason;
    if (!v.diff_reason.empty()) s += "\n      diff: " + v.diff_reason;
    return s;
  }

  static inline std::filesystem::path dir_;
  static inline ModelConfig config_, low_limit_;
  static inline std::vector<std::vector<std::int64_t>> tokens_;
  static inline MemoryRecorder *official_ = nullptr, *official_low_ = nullptr;  // the faithful engine's runs
};

// Lists each name whose `holds` is false; checks that set is `expected_misses`.
void check_misses(const char* what, const std::vector<std::pair<Deviation, bool>>& holds,
                  const std::set<Deviation>& expected_misses, const char* list) {
  if (!only_list().empty()) {
    std::printf("%s: not checked (DSV4_CATALOGUE_ONLY)\n", what);
    return;
  }
  std::printf("%s, not yet:", what);
  for (const auto& [d, ok] : holds) {
    if (!ok) std::printf(" %s", deviation_name(d).c_str());
    EXPECT_EQ(ok, !expected_misses.contains(d))
        << deviation_name(d) << (ok ? " now holds: remove it from " : " does not hold: it is not in ") << list;
  }
  std::printf("\n");
}

TEST_F(CatalogueVerdicts, LegitimateVariantsPassCertifyAndDiff) {
  std::printf("legitimate variants (must PASS):\n");
  std::vector<std::pair<Deviation, bool>> pass, agree;
  for (const Deviation d : all_legitimate_variants()) {
    if (!selected(d)) continue;
    const Verdicts v = judge(d);
    print_row(d, v);
    pass.emplace_back(d, v.certify_pass && v.diff_pass);
    agree.emplace_back(d, v.certify_module() == v.diff_module);
    if (!pass.back().second || !agree.back().second) std::printf("    %s\n", both(v).c_str());
  }
  check_misses("every legitimate variant passes certify and diff", pass, kNotYetPassing, "kNotYetPassing");
  check_misses("certify's first failing module is diff's first divergent one", agree, kNotYetAgreeing,
               "kNotYetAgreeing");
}

TEST_F(CatalogueVerdicts, DeviationsFailBlamedOnTheirModuleByCertifyAndDiff) {
  const auto& expected = testing_support::expected_first_divergent_module();
  std::printf("deviations (must FAIL, blamed on their module):\n");
  std::vector<std::pair<Deviation, bool>> caught, blamed, agree;
  for (const Deviation d : all_deviations()) {
    if (!selected(d)) continue;
    const Verdicts v = judge(d);
    print_row(d, v);
    const std::string want = component(expected.at(d));
    caught.emplace_back(d, !v.certify_pass && !v.diff_pass);
    if (caught.back().second)
      blamed.emplace_back(d, component(v.certify_module()) == want && component(v.diff_module) == want);
    agree.emplace_back(d, v.certify_module() == v.diff_module);
    if (!caught.back().second || (!blamed.empty() && !blamed.back().second) || !agree.back().second)
      std::printf("    expected module %s; %s\n", expected.at(d).c_str(), both(v).c_str());
  }
  check_misses("every deviation fails certify and diff", caught, kNotYetCaught, "kNotYetCaught");
  check_misses("each caught deviation is blamed on its module's component by both", blamed, kNotYetBlamedRight,
               "kNotYetBlamedRight");
  check_misses("certify's first failing module is diff's first divergent one", agree, kNotYetAgreeing,
               "kNotYetAgreeing");
}

}  // namespace
}  // namespace dsv4
