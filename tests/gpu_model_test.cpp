// GpuModel (gpu/README.md §GpuModel, issue 18 item 2): the whole forward composed from the op
// registry's ops equals the CPU reference's Transformer::forward in official mode, bit for bit, on
// every recorded module output. The reference backend (each op's CPU reference) runs everywhere and
// proves the orchestration; the device backend (each op's CUDA kernel) runs the same orchestration
// on a GPU and is skipped without one.
// ctest-labels: model
#include "dsv4/gpu/gpu_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/model/recorder.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

std::uint64_t bits(double v) {
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// The first difference of `got` from `want`, in want's execution order: an output missing or extra,
// a shape or kind that differs, or the first element whose bits differ (its canonical output name,
// flat index and both values); nullopt when every output is bit-identical.
std::optional<std::string> first_difference(const MemoryRecorder& want, const MemoryRecorder& got) {
  for (const std::string& name : want.order()) {
    const auto it = got.entries().find(name);
    if (it == got.entries().end()) return name + ": not recorded";
    const RecordedTensor& w = want.at(name);
    const RecordedTensor& g = it->second;
    if (w.shape != g.shape || w.integral != g.integral) return name + ": shape or kind differs";
    for (std::size_t i = 0; i < w.values.size(); ++i) {
      if (bits(w.values[i]) != bits(g.values[i])) {
        std::ostringstream s;
        s.precision(17);
        s << name << ": element " << i << " is " << g.values[i] << ", the reference's " << w.values[i];
        return s.str();
      }
    }
  }
  for (const std::string& name : got.order())
    if (want.entries().count(name) == 0) return name + ": recorded, but not by the reference";
  return std::nullopt;
}

std::vector<std::int64_t> prompt(std::int64_t n, std::int64_t vocab) {
  std::vector<std::int64_t> ids;
  for (std::int64_t i = 0; i < n; ++i) ids.push_back((37 * i * i + 11 * i + 5) % vocab);
  return ids;
}

// A run of one sequence over `tokens`: prefill of the first `prefill`, then one decode step per
// further position up to the last but one (steps named as dsv4 golden names them: prefill, decode0,
// decode1, ...); with `mtp`, every step runs the MTP block on the next tokens.
struct Run {
  std::int64_t length, prefill;
  bool mtp;
};

void PrintTo(const Run& r, std::ostream* os) {
  *os << r.length << " tokens, prefill " << r.prefill << (r.mtp ? ", MTP" : "");
}

std::vector<std::int64_t> slice(const std::vector<std::int64_t>& v, std::int64_t first, std::int64_t n) {
  return {v.begin() + first, v.begin() + first + n};
}

// Calls step(name, ids, start_pos, next ids or empty) for every step of the run.
template <class Step>
void for_each_step(const Run& r, std::int64_t vocab, Step step) {
  const std::vector<std::int64_t> t = prompt(r.length, vocab);
  const auto next = [&](std::int64_t first, std::int64_t n) {
    return r.mtp ? slice(t, first + 1, n) : std::vector<std::int64_t>{};
  };
  step("prefill", slice(t, 0, r.prefill), 0, next(0, r.prefill));
  for (std::int64_t pos = r.prefill; pos + 1 < r.length; ++pos)
    step("decode" + std::to_string(pos - r.prefill), slice(t, pos, 1), pos, next(pos, 1));
}

// The reference's official run, recorded.
MemoryRecorder reference_run(const ModelConfig& c, const ModelWeights& w, const Run& r) {
  const Transformer t(Precision(Mode::kOfficial), c, w);
  std::vector<SequenceState> states{t.new_sequence()};
  MemoryRecorder rec;
  for_each_step(r, c.vocab_size,
                [&](const std::string& name, const std::vector<std::int64_t>& ids, std::int64_t pos,
                    const std::vector<std::int64_t>& next) {
                  const std::vector<std::vector<std::int64_t>> mtp{next};
                  t.forward({ids}, pos, states, &rec, name, r.mtp ? &mtp : nullptr);
                });
  return rec;
}

MemoryRecorder gpu_model_run(const ModelConfig& c, const ModelWeights& w, const Run& r, gpu::OpBackend backend) {
  const gpu::GpuModel m(c, w, backend);
  gpu::GpuModel::Sequence seq = m.new_sequence();
  MemoryRecorder rec;
  for_each_step(
      r, c.vocab_size,
      [&](const std::string& name, const std::vector<std::int64_t>& ids, std::int64_t pos,
          const std::vector<std::int64_t>& next) { m.forward(ids, pos, seq, &rec, name, r.mtp ? &next : nullptr); });
  return rec;
}

class GpuModelRun : public ::testing::TestWithParam<Run> {};

void expect_equal_runs(gpu::OpBackend backend, const Run& r) {
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, 7);
  const MemoryRecorder want = reference_run(c, w, r);
  const MemoryRecorder got = gpu_model_run(c, w, r, backend);
  EXPECT_EQ(got.order().size(), want.order().size());
  const std::optional<std::string> diff = first_difference(want, got);
  EXPECT_FALSE(diff) << *diff;
  std::size_t values = 0;
  for (const auto& [name, t] : want.entries()) values += t.values.size();
  std::cout << "compared " << want.order().size() << " outputs, " << values << " values\n";
}

TEST_P(GpuModelRun, ReferenceBackendEqualsTheOfficialTransformerOnEveryOutput) {
  expect_equal_runs(gpu::OpBackend::kReference, GetParam());
}

TEST_P(GpuModelRun, DeviceBackendEqualsTheOfficialTransformerOnEveryOutput) {
  if (!ops::device_available()) GTEST_SKIP() << "no GPU: " << ops::device_unavailable_reason();
  expect_equal_runs(gpu::OpBackend::kDevice, GetParam());
}

// A prefill of 40 tokens without MTP (window, indexer and HCA lists, no compressed HCA entry); of 136
// with MTP (past one ratio-128 block: every kind of list and compressed entry of the tiny config);
// of 125 then decode steps at positions 125..129 with MTP (the ring wraps; position 127 completes a
// ratio-4 and the first ratio-128 entry in decode, the indexer's decode sees them); of 2 then decode
// at position 2 with MTP (no indexer list yet: nothing recorded for indexer/out, as for the
// compressor's entries).
INSTANTIATE_TEST_SUITE_P(Tiny, GpuModelRun,
                         ::testing::Values(Run{41, 40, false}, Run{137, 136, true}, Run{131, 125, true},
                                           Run{4, 2, true}));

// The comparison can fail: one flipped bit, a -0 for a +0, a missing output are each named.
TEST(GpuModelCompare, NamesTheFirstDifferingOutput) {
  MemoryRecorder a, b, c, d;
  const auto put = [](MemoryRecorder& r, double v) {
    r.record("prefill/embed/out", RecordedTensor{{1, 1, 2}, {1.0, 0.0}, false});
    r.record("prefill/layers.0.attn_norm/out", RecordedTensor{{1, 1, 2}, {2.0, v}, false});
  };
  put(a, 0.0);
  put(b, -0.0);
  EXPECT_FALSE(first_difference(a, a));
  const std::optional<std::string> sign = first_difference(a, b);
  ASSERT_TRUE(sign);
  EXPECT_NE(sign->find("prefill/layers.0.attn_norm/out: element 1"), std::string::npos) << *sign;
  c.record("prefill/embed/out", RecordedTensor{{1, 1, 2}, {1.0, 0.0}, false});
  const std::optional<std::string> missing = first_difference(a, c);
  ASSERT_TRUE(missing);
  EXPECT_EQ(*missing, "prefill/layers.0.attn_norm/out: not recorded");
  put(d, 5e-324);  // the smallest subnormal for +0
  ASSERT_TRUE(first_difference(a, d));
}

// `dsv4 run --device gpu`: without a GPU exit 2 with one line saying so and no dump; with one, the
// dump holds exactly what the CPU reference's official run records (every dataset bit for bit).
using CliRunDevice = testing_support::CliDir;

TEST_F(CliRunDevice, GpuRunWritesTheOfficialReferenceOrExits2WithoutAGpu) {
  Tensor toks(DType::kI64, {1, 9});
  const std::vector<std::int64_t> ids = prompt(9, 1024);
  for (std::size_t i = 0; i < ids.size(); ++i) toks.values<std::int64_t>()[i] = ids[i];
  write_npy(file("t.npy"), toks);
  const auto r = dsv4("run --device gpu --config tiny --seed 3 --tokens " + file("t.npy") +
                      " --decode-steps 2 --mode official --dump " + file("d.h5"));
  if (!ops::device_available()) {
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("no GPU"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(file("d.h5")));
    return;
  }
  ASSERT_EQ(r.status, 0) << r.err;
  const ModelConfig c = builtin_config("tiny");
  const Transformer model(Precision(Mode::kOfficial), c, ModelWeights::synthetic(c, 3));
  MemoryRecorder rec;
  run_plan(model, {ids}, plan_steps(c, 1, 9, 2), rec);
  const Hdf5File f = Hdf5File::open(file("d.h5"));
  ASSERT_EQ(f.list_datasets().size(), rec.entries().size());
  for (const auto& [name, t] : rec.entries()) {
    ASSERT_TRUE(f.is_dataset(name)) << name;
    const Tensor d = f.read(name);
    ASSERT_EQ(d.shape(), t.shape) << name;
    for (std::size_t i = 0; i < t.values.size(); ++i) {
      const double v = t.integral ? static_cast<double>(d.values<std::int64_t>()[i]) : d.values<double>()[i];
      ASSERT_EQ(bits(v), bits(t.values[i])) << name << " element " << i;
    }
  }
}

TEST_F(CliRunDevice, GpuRunRefusesTheExactModeAndBatches) {
  Tensor toks(DType::kI64, {2, 4});
  for (std::size_t i = 0; i < 8; ++i) toks.values<std::int64_t>()[i] = static_cast<std::int64_t>(i);
  write_npy(file("t.npy"), toks);
  const auto exact =
      dsv4("run --device gpu --config tiny --tokens " + file("t.npy") + " --mode exact --dump " + file("d.h5"));
  EXPECT_EQ(exact.status, 2) << exact.err;
  EXPECT_NE(exact.err.find("official mode only"), std::string::npos) << exact.err;
  const auto unknown = dsv4("run --device tpu --config tiny --tokens " + file("t.npy") + " --dump " + file("d.h5"));
  EXPECT_EQ(unknown.status, 2) << unknown.err;
  EXPECT_NE(unknown.err.find("--device"), std::string::npos) << unknown.err;
  if (!ops::device_available()) return;  // without a GPU the batch is refused earlier, for the GPU
  const auto batch =
      dsv4("run --device gpu --config tiny --tokens " + file("t.npy") + " --mode official --dump " + file("d.h5"));
  EXPECT_EQ(batch.status, 2) << batch.err;
  EXPECT_NE(batch.err.find("one sequence"), std::string::npos) << batch.err;
}

// ---- a broken step is caught and named ----
// Each op GpuModel calls for a step of the forward, replaced by its reference with one output
// element of every row doubled (the row's first nonzero one) on the calls the step makes (told
// apart by the call's parameters): the comparison with the official Transformer must fail, naming
// the first recorded output the step feeds. Covers the steps that were host steps before (the
// per-head q RMS, the compressors' projections, biased scores, pooling, bf16 cast and RoPE, the
// indexer's queries and head weights, the MTP input's add).
struct Break {
  const char* stem;
  std::size_t output;                        // which output of the op is broken
  std::function<bool(const ops::Call&)> on;  // the calls broken
  const char* first;                         // the output the comparison must name
};

void PrintTo(const Break& b, std::ostream* os) { *os << b.stem << " → " << b.first; }

class GpuModelBreak : public ::testing::TestWithParam<Break> {};

TEST_P(GpuModelBreak, IsCaughtAndNamed) {
  const Break& b = GetParam();
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, 7);
  const dsv4::Run r{21, 20, true};
  static const MemoryRecorder want = reference_run(c, w, r);
  gpu::GpuModel m(c, w, gpu::OpBackend::kReference);
  const ops::Fn reference = ops::find_op(b.stem)->reference;
  int broken = 0;
  m.replace_op(b.stem, [&](const ops::Call& call) {
    ops::Outputs o = reference(call);
    if (!b.on(call)) return o;
    ops::Array& y = o.at(b.output);
    for (std::int64_t row = 0; row < y.rows; ++row) {
      for (std::int64_t j = 0; j < y.cols; ++j) {
        float& v = y.f32[static_cast<std::size_t>(row * y.cols + j)];
        if (v != 0.0f && std::isfinite(v)) {
          v *= 2.0f;
          ++broken;
          break;
        }
      }
    }
    return o;
  });
  gpu::GpuModel::Sequence seq = m.new_sequence();
  MemoryRecorder got;
  for_each_step(r, c.vocab_size,
                [&](const std::string& name, const std::vector<std::int64_t>& ids, std::int64_t pos,
                    const std::vector<std::int64_t>& next) { m.forward(ids, pos, seq, &got, name, &next); });
  ASSERT_GT(broken, 0) << "the break never applied";
  const std::optional<std::string> diff = first_difference(want, got);
  ASSERT_TRUE(diff) << b.stem << ": broken, but every output still equals the reference's";
  EXPECT_EQ(diff->substr(0, diff->find(':')), b.first) << *diff;
}

// The tiny config's layers: 0 and 5 window only, 1 and 3 ratio 128 (no entry in 20 tokens), 2 and 4
// ratio 4 (the main compressor: D = head_dim, FP8 nope dims; the indexer's: D = c_I, rotated, FP4).
INSTANTIATE_TEST_SUITE_P(
    Steps, GpuModelBreak,
    ::testing::Values(
        Break{"head_rmsnorm", 0, [](const ops::Call&) { return true; }, "prefill/layers.0.attn.wo_a/out"},
        Break{"add", 0, [](const ops::Call& c) { return c.ints.at(0) == 0; }, "prefill/layers.2.attn.compressor/out"},
        Break{"add", 0, [](const ops::Call& c) { return c.ints.at(0) == 1; }, "prefill/mtp.0/in"},
        Break{"scale", 0, [](const ops::Call& c) { return c.reals.at(0) == 1.0; },
              "prefill/layers.2.attn.compressor/out"},
        Break{"scale", 0, [](const ops::Call& c) { return c.reals.at(0) != 1.0; },
              "prefill/layers.2.attn.indexer/scores"},
        Break{"linear", 0, [](const ops::Call& c) { return c.ints.at(1) == 1 && c.rows() > 1; },  // fp32: W_kv, W_gate
              "prefill/layers.2.attn.compressor/out"},
        Break{"rope", 0,  // the entries' positions m·i
              [](const ops::Call& c) { return c.rows() > 1 && c.inputs.at(1).f32[1] - c.inputs.at(1).f32[0] == 4.0f; },
              "prefill/layers.2.attn.compressor/out"},
        Break{"compressor_pool", 0, [](const ops::Call&) { return true; }, "prefill/layers.2.attn.compressor/out"},
        Break{"hadamard", 0, [](const ops::Call&) { return true; }, "prefill/layers.2.attn.indexer/scores"},
        Break{"fp4_act_quant", 2, [](const ops::Call&) { return true; }, "prefill/layers.2.attn.indexer/scores"}),
    [](const ::testing::TestParamInfo<Break>& i) { return std::to_string(i.index) + "_" + i.param.stem; });

// ---- residency (issue 18): the model's weights are marked resident, shared by every Call that
// carries them (an Array copy shares its values: no host copy of a weight per call) and, for the ops
// whose device function takes resident inputs (Op::resident_inputs), copied to the device once for
// the life of the model. The byte counts are the registry's (ops::call_bytes) on the same calls the
// device backend makes; before residency every byte was copied in on every call.
TEST(GpuModelResidency, WeightsAreSharedNotCopiedPerCall) {
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, 7);
  const gpu::GpuModel m(c, w, gpu::OpBackend::kReference);
  gpu::GpuModel::Sequence seq = m.new_sequence();
  const std::int64_t host_copies = ops::array_bytes_copied();
  const gpu::GpuModel::Output out = m.forward(prompt(40, c.vocab_size), 0, seq, nullptr, "prefill");
  EXPECT_EQ(ops::array_bytes_copied() - host_copies, 0) << "an array's values were copied on the host";
  const std::int64_t before = out.bytes.resident + out.bytes.copied;
  std::cout << "40-token prefill: " << before << " bytes of op inputs; copied to the device per call "
            << out.bytes.copied << " (before residency: all " << before << "), resident " << out.bytes.resident << "\n";
  // the weights of linear, moe_combine, rope (its tables), grouped_projection (wo_a) and embedding:
  // 15,818,892 bytes of this prefill's 31,235,664 when written; the other ops' weights (hc_pre's and
  // hc_head's mixes, the gate's, the norms') and every activation are still copied in.
  EXPECT_GT(out.bytes.resident, before / 2);
}

// ---- whole-model batch invariance (issue 18 item 3): prefills of n tokens, n in {1, 2, 7, 64, 200,
// 512} (the tiny config's max_seq_len). Causality makes the first k tokens' outputs comparable: every
// output recorded per token (second dimension n) and the compressed entries (second dimension the
// entries, a causal prefix) must agree bit for bit with the 512-token prefill's on their first rows;
// the indexer's lists after mapping their compressed part back from offset n (prefill lists index
// [this call's n kv rows ‖ the compressed entries], spec 02 §2.8). Left out: the indexer's scores
// (their width ⌊n/4⌋ depends on n), its lists and margins where their width k = min(index_topk,
// ⌊n/4⌋) differs (a top-k of another k), the last position's logits. Then reruns bit-identical.
std::optional<std::string> prefix_difference(const MemoryRecorder& big, std::int64_t n_big, const MemoryRecorder& small,
                                             std::int64_t n, std::int64_t& compared) {
  for (const std::string& name : small.order()) {
    const auto it = big.entries().find(name);
    if (it == big.entries().end()) return name + ": not recorded in the " + std::to_string(n_big) + "-token prefill";
    const RecordedTensor& a = small.at(name);
    const RecordedTensor& b = it->second;
    if (a.shape.size() < 2 || a.shape.size() != b.shape.size()) continue;
    const bool tokens = a.shape[1] == n && b.shape[1] == n_big;
    const bool entries = name.find("compressor/out") != std::string::npos;
    if (!tokens && !entries) continue;
    if (!std::equal(a.shape.begin() + 2, a.shape.end(), b.shape.begin() + 2)) continue;
    if (const std::size_t at = name.find("indexer/margin"); at != std::string::npos) {
      // the margins of a top-k whose k = min(index_topk, ⌊n/4⌋) depends on n: comparable when the
      // lists have the same width in both prefills
      const std::string out = name.substr(0, at) + "indexer/out";
      const auto la = small.entries().find(out), lb = big.entries().find(out);
      if (la == small.entries().end() || lb == big.entries().end() || la->second.shape[2] != lb->second.shape[2])
        continue;
    }
    const bool lists = name.find("indexer/out") != std::string::npos;
    const auto unoffset = [](double v, std::int64_t s) { return v >= static_cast<double>(s) ? v - s + 1e9 : v; };
    for (std::size_t i = 0; i < a.values.size(); ++i) {
      const double x = lists ? unoffset(a.values[i], n) : a.values[i];
      const double y = lists ? unoffset(b.values[i], n_big) : b.values[i];
      if (bits(x) != bits(y)) {
        std::ostringstream o;
        o.precision(17);
        o << name << ": element " << i << " of the " << n << "-token prefill is " << a.values[i] << ", the " << n_big
          << "-token prefill's " << b.values[i];
        return o.str();
      }
    }
    ++compared;
  }
  return std::nullopt;
}

MemoryRecorder prefill(const gpu::GpuModel& m, const std::vector<std::int64_t>& ids) {
  gpu::GpuModel::Sequence seq = m.new_sequence();
  MemoryRecorder rec;
  m.forward(ids, 0, seq, &rec, "prefill");
  return rec;
}

// Prefills of every n against the largest; `reruns` more prefills of `rerun_n` tokens identical.
void expect_batch_invariant(const gpu::GpuModel& m, const std::vector<std::int64_t>& sizes, std::int64_t rerun_n,
                            int reruns) {
  const ModelConfig c = builtin_config("tiny");
  const std::int64_t n_big = sizes.back();
  const std::vector<std::int64_t> ids = prompt(n_big, c.vocab_size);
  const MemoryRecorder big = prefill(m, ids);
  for (const std::int64_t n : sizes) {
    if (n == n_big) continue;
    std::int64_t compared = 0;
    const std::optional<std::string> diff = prefix_difference(big, n_big, prefill(m, slice(ids, 0, n)), n, compared);
    EXPECT_FALSE(diff) << *diff;
    EXPECT_GT(compared, 100) << n << " tokens";
    std::cout << n << " tokens vs " << n_big << ": " << compared << " outputs compared on their first rows\n";
  }
  const MemoryRecorder first = prefill(m, slice(ids, 0, rerun_n));
  for (int r = 0; r < reruns; ++r) {
    const std::optional<std::string> diff = first_difference(first, prefill(m, slice(ids, 0, rerun_n)));
    ASSERT_FALSE(diff) << "rerun " << r + 1 << ": " << *diff;
  }
  std::cout << reruns << " reruns of the " << rerun_n << "-token prefill bit-identical\n";
}

const std::vector<std::int64_t> kPrefillSizes{1, 2, 7, 64, 200, 512};

TEST(GpuModelBatchInvariance, ReferenceBackend) {
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, 7);
  expect_batch_invariant(gpu::GpuModel(c, w, gpu::OpBackend::kReference), kPrefillSizes, 7, 2);
}

TEST(GpuModelBatchInvariance, DeviceBackend) {
  if (!ops::device_available()) GTEST_SKIP() << "no GPU: " << ops::device_unavailable_reason();
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, 7);
  expect_batch_invariant(gpu::GpuModel(c, w, gpu::OpBackend::kDevice), kPrefillSizes, 512, 20);
}

// The comparison can fail: an rmsnorm whose rows read the batch's last row (a kernel that mixes
// rows) makes the first tokens' outputs depend on n, and the invariance check names the output.
TEST(GpuModelBatchInvariance, CatchesAnOpThatReadsAnotherRow) {
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, 7);
  gpu::GpuModel m(c, w, gpu::OpBackend::kReference);
  const ops::Fn reference = ops::find_op("rmsnorm")->reference;
  m.replace_op("rmsnorm", [&](const ops::Call& call) {
    ops::Outputs o = reference(call);
    ops::Array& y = o.at(0);
    const float last = call.inputs.at(0).f32.back();  // the last row's last element
    if (y.rows > 1 && last > 0.0f) y.f32[0] = std::nextafter(y.f32[0], 1e30f);
    return o;
  });
  const std::vector<std::int64_t> ids = prompt(64, c.vocab_size);
  const MemoryRecorder big = prefill(m, ids);
  bool caught = false;
  for (const std::int64_t n : {1, 2, 7}) {
    std::int64_t compared = 0;
    caught = caught || prefix_difference(big, 64, prefill(m, slice(ids, 0, n)), n, compared).has_value();
  }
  EXPECT_TRUE(caught) << "an op reading another row went unnoticed";
}

// Without a GPU the device backend is refused with the reason, before any work.
TEST(GpuModelDevice, RefusedWithoutAGpu) {
  if (ops::device_available()) GTEST_SKIP() << "a GPU is present";
  const ModelConfig c = builtin_config("tiny");
  const ModelWeights w = ModelWeights::synthetic(c, 7);
  EXPECT_THROW(gpu::GpuModel(c, w, gpu::OpBackend::kDevice), std::runtime_error);
}

}  // namespace
}  // namespace dsv4
