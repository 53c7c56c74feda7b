// The deliberate deviations of the bug catalogue (precision.hpp, Deviation): each one is live —
// the deviating official-mode run differs from the faithful one — and the first recorded output
// that differs (in execution order) belongs to the module the bug is in. Upstream of that module
// the two runs are bit-identical, so this is the attribution a plain (non-teacher-forced)
// comparison gives when the candidate's only difference is the bug; `dsv4 diff` must give the same
// blame when upstream drift is present too.
// ctest-labels: model
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "support/bug_catalogue.hpp"

namespace dsv4 {
namespace {

// The module path of a recorded name `<step>/<module>/<output>`.
std::string module_of(const std::string& name) {
  const std::size_t a = name.find('/'), b = name.rfind('/');
  return name.substr(a + 1, b - a - 1);
}

bool same(const RecordedTensor& a, const RecordedTensor& b) {
  if (a.shape != b.shape) return false;
  for (std::size_t i = 0; i < a.values.size(); ++i)
    if (double_bits(a.values[i]) != double_bits(b.values[i])) return false;
  return true;
}

MemoryRecorder run(const ModelConfig& c, Precision p) {
  const Transformer m(p, c, ModelWeights::synthetic(c, 9));
  const CounterRng rng(4, 4);
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(rng.words(static_cast<std::uint64_t>(i))[0] % c.vocab_size);
  MemoryRecorder rec;
  std::vector<SequenceState> s{m.new_sequence()};
  m.forward({ids}, 0, s, &rec, "prefill");
  return rec;
}

// First module whose output differs from the faithful run; "" when none does.
std::string first_divergent(const MemoryRecorder& good, const MemoryRecorder& bad) {
  for (const std::string& n : good.order()) {
    if (!same(good.at(n), bad.at(n))) return module_of(n);
  }
  return "";
}

using testing_support::expected_first_divergent_module;

// 40 tokens: past the window (16) and ten ratio-4 blocks (compressor, indexer).
// The clamp bug is only observable where the SwiGLU gate falls below −limit; the synthetic tiny
// weights keep |g| well under V4's limit 10, so that case runs with swiglu_limit = 1 (both runs).
TEST(Deviation, EveryDeviationIsLiveAndFirstDivergesInItsModule) {
  const ModelConfig c = builtin_config("tiny");
  ModelConfig low_limit = c;
  low_limit.swiglu_limit = 1.0;
  const MemoryRecorder good = run(c, Precision(Mode::kOfficial));
  const MemoryRecorder good_low = run(low_limit, Precision(Mode::kOfficial));
  ASSERT_EQ(all_deviations().size(), expected_first_divergent_module().size());
  for (const Deviation d : all_deviations()) {
    const bool clamp = d == Deviation::kClampGateBothSides;
    const MemoryRecorder bad = run(clamp ? low_limit : c, Precision(Mode::kOfficial, d));
    EXPECT_EQ(first_divergent(clamp ? good_low : good, bad), expected_first_divergent_module().at(d))
        << deviation_name(d);
  }
}

// The legitimate engine variants (all_legitimate_variants(): other fp32 summation orders, exp and
// rsqrt off by up to 2 ulp, bf16 jitter) change bits too, or their PASS in
// catalogue_verdicts_test would prove nothing.
TEST(Deviation, EveryLegitimateVariantIsLive) {
  const ModelConfig c = builtin_config("tiny");
  const MemoryRecorder good = run(c, Precision(Mode::kOfficial));
  for (const Deviation d : all_legitimate_variants())
    EXPECT_NE(first_divergent(good, run(c, Precision(Mode::kOfficial, d))), "") << deviation_name(d);
}

// Every catalogue entry is either a bug or a legitimate variant, never both.
TEST(Deviation, BugsAndLegitimateVariantsPartitionTheCatalogue) {
  std::set<Deviation> seen;
  for (const Deviation d : all_deviations()) EXPECT_TRUE(seen.insert(d).second) << deviation_name(d);
  for (const Deviation d : all_legitimate_variants()) EXPECT_TRUE(seen.insert(d).second) << deviation_name(d);
  for (const Deviation d : all_training_deviations()) EXPECT_TRUE(seen.insert(d).second) << deviation_name(d);
  for (const Deviation d : all_training_legitimate_variants()) EXPECT_TRUE(seen.insert(d).second) << deviation_name(d);
  EXPECT_FALSE(seen.contains(Deviation::kNone));
  const int last = static_cast<int>(Deviation::kReductionShuffled);
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(last));  // every value but kNone
  for (int i = 1; i <= last; ++i) EXPECT_NE(deviation_name(static_cast<Deviation>(i)), "?") << i;
}

TEST(Deviation, FaithfulRunsAreIdentical) {
  const ModelConfig c = builtin_config("tiny");
  EXPECT_EQ(first_divergent(run(c, Precision(Mode::kOfficial)), run(c, Precision(Mode::kOfficial, Deviation::kNone))),
            "");
}

TEST(Deviation, NeedsOfficialMode) {
  EXPECT_THROW(Precision(Mode::kExact, Deviation::kRopeHalfSplit), std::invalid_argument);
}

}  // namespace
}  // namespace dsv4
