// The whole model (spec 05): decode ≡ prefill at model level for every recorded module output,
// batch independence, MTP, and bad input — on the built-in tiny config with synthetic weights.
// ctest-labels: model
#include "dsv4/model/transformer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/audit/self_audit.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {
namespace {

std::vector<std::int64_t> random_tokens(std::int64_t n, std::int64_t vocab, std::uint64_t stream) {
  const CounterRng rng(11, stream);
  std::vector<std::int64_t> t;
  for (std::int64_t i = 0; i < n; ++i)
    t.push_back(static_cast<std::int64_t>(rng.words(static_cast<std::uint64_t>(i))[0] % vocab));
  return t;
}

// Row `row` of a recorded [b, s, c] tensor of sequence 0.
std::vector<double> row_of(const RecordedTensor& t, std::int64_t row) {
  const std::int64_t c = t.shape.at(2);
  return {t.values.begin() + row * c, t.values.begin() + (row + 1) * c};
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (double_bits(a[i]) != double_bits(b[i])) return false;
  return true;
}

// Position-wise outputs of a block: identical math in prefill and decode (the attention module's
// own decode ≡ prefill is proven in attention_test; MoE, mHC and norms are row-wise, spec 05 §5.6);
// the list `dsv4 audit` checks too.
const std::vector<std::string>& rowwise_outputs() { return audit::positionwise_outputs(); }

// Prefill of n+k tokens vs prefill n then k decode steps: every per-position output of every
// block (and MTP), and the logits of the last position, bit for bit.
void expect_decode_equals_prefill(Mode mode, std::int64_t n, std::int64_t k) {
  const ModelConfig c = builtin_config("tiny");
  const Transformer model(Precision(mode), c, ModelWeights::synthetic(c, 3));
  const std::vector<std::int64_t> toks = random_tokens(n + k + 1, c.vocab_size, 1);
  const std::vector<std::int64_t> all(toks.begin(), toks.begin() + n + k);
  const std::vector<std::int64_t> next_all(toks.begin() + 1, toks.begin() + n + k + 1);

  MemoryRecorder full;
  std::vector<SequenceState> s_full{model.new_sequence()};
  const std::vector<std::vector<std::int64_t>> mtp_full{next_all};
  const ModelOutput o_full = model.forward({all}, 0, s_full, &full, "prefill", &mtp_full);

  MemoryRecorder inc;
  std::vector<SequenceState> s_inc{model.new_sequence()};
  const std::vector<std::vector<std::int64_t>> mtp_pre{{next_all.begin(), next_all.begin() + n}};
  model.forward({{all.begin(), all.begin() + n}}, 0, s_inc, &inc, "prefill", &mtp_pre);
  ModelOutput last;
  for (std::int64_t i = 0; i < k; ++i) {
    const std::vector<std::vector<std::int64_t>> mtp_one{{next_all[static_cast<std::size_t>(n + i)]}};
    last = model.forward({{all[static_cast<std::size_t>(n + i)]}}, n + i, s_inc, &inc, "decode" + std::to_string(i),
                         &mtp_one);
  }
  std::vector<std::string> prefixes;
  for (std::int64_t l = 0; l < c.n_layers; ++l) prefixes.push_back("layers." + std::to_string(l));
  prefixes.push_back("mtp.0");
  std::int64_t compared = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    for (const std::string& p : prefixes) {
      for (const std::string& o : rowwise_outputs()) {
        const std::string name = p + o;
        const auto a = row_of(full.at("prefill/" + name), n + i);
        const auto b = row_of(inc.at("decode" + std::to_string(i) + "/" + name), 0);
        EXPECT_TRUE(same_bits(a, b)) << mode_name(mode) << " " << name << " at position " << n + i;
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, k * static_cast<std::int64_t>(prefixes.size() * rowwise_outputs().size()));
  ASSERT_EQ(last.logits.size(), 1u);
  const Mat& a = o_full.logits[0];
  const Mat& b = last.logits[0];
  ASSERT_EQ(a.cols(), c.vocab_size);
  for (std::int64_t v = 0; v < a.cols(); ++v) ASSERT_EQ(double_bits(a(0, v)), double_bits(b(0, v))) << "logit " << v;
  for (std::int64_t v = 0; v < a.cols(); ++v)
    ASSERT_EQ(double_bits(o_full.mtp_logits[0](0, v)), double_bits(last.mtp_logits[0](0, v)));
}

// n = 126, k = 4: decode crosses the ratio-128 boundary (entry 0 completes at position 127) and
// three ratio-4 boundaries; the window (16) wraps. n ≥ window keeps official mode away from the
// §2.11.4 chunking change (covered with its bound in attention_test).
TEST(TransformerDecodeEqualsPrefill, Exact) { expect_decode_equals_prefill(Mode::kExact, 126, 4); }
TEST(TransformerDecodeEqualsPrefill, Official) { expect_decode_equals_prefill(Mode::kOfficial, 126, 4); }

TEST(Transformer, BatchRowsAreIndependent) {
  const ModelConfig c = builtin_config("tiny");
  const Transformer model(Precision(Mode::kOfficial), c, ModelWeights::synthetic(c, 5));
  const auto a = random_tokens(20, c.vocab_size, 2), b = random_tokens(20, c.vocab_size, 3);
  std::vector<SequenceState> s1{model.new_sequence()};
  const ModelOutput alone = model.forward({a}, 0, s1);
  std::vector<SequenceState> s2{model.new_sequence(), model.new_sequence()};
  const ModelOutput both = model.forward({b, a}, 0, s2);
  for (std::int64_t v = 0; v < c.vocab_size; ++v)
    ASSERT_EQ(double_bits(alone.logits[0](0, v)), double_bits(both.logits[1](0, v)));
  // and the other row really is a different sequence
  EXPECT_NE(double_bits(both.logits[0](0, 0)), double_bits(both.logits[1](0, 0)));
}

TEST(Transformer, OfficialLogitsAreFp32AndFinite) {
  const ModelConfig c = builtin_config("tiny");
  const Transformer model(Precision(Mode::kOfficial), c, ModelWeights::synthetic(c, 7));
  std::vector<SequenceState> s{model.new_sequence()};
  const ModelOutput o = model.forward({random_tokens(9, c.vocab_size, 4)}, 0, s);
  double spread = 0;
  for (std::int64_t v = 0; v < c.vocab_size; ++v) {
    const double x = o.logits[0](0, v);
    ASSERT_TRUE(std::isfinite(x));
    ASSERT_EQ(static_cast<double>(static_cast<float>(x)), x);
    spread = std::max(spread, std::abs(x));
  }
  EXPECT_GT(spread, 0.0);
}

TEST(Transformer, BadInputNamesTheField) {
  const ModelConfig c = builtin_config("tiny");
  const Transformer model(Precision(Mode::kOfficial), c, ModelWeights::synthetic(c, 7));
  const auto expect_msg = [&](const std::vector<std::vector<std::int64_t>>& ids, std::int64_t pos,
                              const std::string& field) {
    std::vector<SequenceState> s(ids.size(), model.new_sequence());
    for (auto& st : s) st.next_pos = pos;
    try {
      model.forward(ids, pos, s);
      ADD_FAILURE() << "no error for " << field;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_msg({{1, 2, c.vocab_size}}, 0, "token_ids");
  expect_msg({{1, -1}}, 0, "token_ids");
  expect_msg({{1, 2}, {3}}, 0, "ids");
  expect_msg({{}}, 0, "ids");
  expect_msg({{1}}, c.max_seq_len, "max_seq_len");
}

}  // namespace
}  // namespace dsv4
