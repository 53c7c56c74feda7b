// GpuModel wired into the oracle (issues 18 and 17): `dsv4 golden generate --device gpu` (official
// values from GpuModel, the rest from the CPU), `dsv4 golden verify --recompute [--device gpu]`
// and the self-audit's row "GPU vs CPU official". GpuModel's reference backend (each op's CPU
// reference under the same orchestration) runs the same wiring everywhere, so the library paths
// are proved on the CPU; the CUDA backend's runs are skipped without a GPU, where the CLI must
// exit 2 with one line (generate, verify) or report the audit row skipped with the reason.
// ctest-labels: model
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/audit/self_audit.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/golden/recompute.hpp"
#include "dsv4/gpu/gpu_model_run.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/ops/registry.hpp"
#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

const std::string kCommitted = std::string(DSV4_SOURCE_DIR) + "/goldens/tiny-s1-p6-d2.h5";

// Every dataset under `prefix` ("official/", "exact/", "inputs/") of golden `a` is in `b` with the
// same dtype, shape and bytes, and `b` has no other; returns how many were compared.
std::int64_t expect_same_datasets(const std::string& a, const std::string& b, const std::string& prefix) {
  const Hdf5File fa = Hdf5File::open(a), fb = Hdf5File::open(b);
  std::vector<std::string> na, nb;
  for (const std::string& n : fa.list_datasets())
    if (n.rfind(prefix, 0) == 0) na.push_back(n);
  for (const std::string& n : fb.list_datasets())
    if (n.rfind(prefix, 0) == 0) nb.push_back(n);
  EXPECT_EQ(na, nb) << prefix;
  std::int64_t compared = 0;
  for (const std::string& n : na) {
    if (!fb.is_dataset(n)) continue;
    const Tensor ta = fa.read(n), tb = fb.read(n);
    EXPECT_EQ(ta.dtype(), tb.dtype()) << n;
    EXPECT_EQ(ta.shape(), tb.shape()) << n;
    if (ta.nbytes() != tb.nbytes() || std::memcmp(ta.bytes(), tb.bytes(), ta.nbytes()) != 0) {
      ADD_FAILURE() << n << ": the bytes differ";
      continue;
    }
    ++compared;
  }
  return compared;
}

// The committed golden's run (goldens/README.md): tiny, seed 1, 6 prompt + 2 decode seeded tokens.
GoldenGenerateOptions committed_options() {
  GoldenGenerateOptions o;
  o.config = builtin_config("tiny");
  o.weights.seed = 1;
  o.tokens = synthetic_tokens(8, o.config.vocab_size, 1);
  o.tokens_source = "synthetic_tokens(n=8, seed=1)";
  o.decode_steps = 2;
  return o;
}

class GpuModelGolden : public testing_support::CliDir {};

// generate_golden with GpuModel (reference backend) computing the official values writes the
// committed golden's every dataset bit for bit, names the device in its manifest, verifies, and its
// official values recompute on the CPU; the committed golden recomputes on GpuModel too.
TEST_F(GpuModelGolden, OfficialValuesFromGpuModelEqualTheCpuGolden) {
  GoldenGenerateOptions o = committed_options();
  o.official_runner = gpu::official_runner(gpu::OpBackend::kReference);
  generate_golden(o, file("g.h5"));
  EXPECT_GT(expect_same_datasets(kCommitted, file("g.h5"), "official/"), 300);
  EXPECT_GT(expect_same_datasets(kCommitted, file("g.h5"), "exact/"), 300);
  EXPECT_EQ(expect_same_datasets(kCommitted, file("g.h5"), "inputs/"), 4);

  const Golden g = Golden::open_verified(file("g.h5"));
  EXPECT_EQ(g.official_device(), "gpu-reference");
  EXPECT_EQ(Golden::open(kCommitted).official_device(), "cpu");
  const auto man = nlohmann::json::parse(g.manifest_text());
  EXPECT_NE(man.at("official_device").at("cpu").get<std::string>().find("exact/"), std::string::npos);
  EXPECT_TRUE(verify_golden(file("g.h5")).ok());

  const ModelWeights w = ModelWeights::synthetic(g.config(), 1);
  const GoldenRecomputeResult cpu = recompute_official(g, w);
  EXPECT_TRUE(cpu.ok()) << cpu.first->output;
  EXPECT_EQ(cpu.device, "cpu");
  EXPECT_GT(cpu.outputs, 300);
  const OfficialRunner ref = gpu::official_runner(gpu::OpBackend::kReference);
  const GoldenRecomputeResult on_model = recompute_official(Golden::open_verified(kCommitted), w, &ref);
  EXPECT_TRUE(on_model.ok()) << on_model.first->output;
  EXPECT_EQ(on_model.outputs, cpu.outputs);
  EXPECT_EQ(on_model.device, "gpu-reference");

  // A runner that gets one value wrong is caught by the recompute, named with its coordinate.
  OfficialRunner bad = ref;
  bad.run = [&ref](const ModelConfig& c, const ModelWeights& wt, const std::vector<std::vector<std::int64_t>>& t,
                   const std::vector<StepPlan>& plan, Recorder& rec, const StepProgressFn& p) {
    MemoryRecorder m;
    ref.run(c, wt, t, plan, m, p);
    for (const std::string& n : m.order()) {
      RecordedTensor v = m.at(n);
      if (n == "decode0/layers.4.ffn/out") v.values[5] = std::nextafter(v.values[5], 1e9);
      rec.record(n, std::move(v));
    }
  };
  const GoldenRecomputeResult caught = recompute_official(g, w, &bad);
  ASSERT_FALSE(caught.ok());
  EXPECT_EQ(caught.first->output, "decode0/layers.4.ffn/out");
  EXPECT_EQ(caught.first->coordinate, (std::vector<std::int64_t>{0, 0, 5}));
  EXPECT_EQ(caught.first->differing, 1);
  EXPECT_EQ(caught.differing_outputs, 1);

  // More sequences than GpuModel runs: refused naming --device, before any work.
  GoldenGenerateOptions two = committed_options();
  two.tokens.push_back(two.tokens.front());
  two.official_runner = ref;
  EXPECT_THROW(generate_golden(two, file("two.h5")), InputError);
  EXPECT_FALSE(std::filesystem::exists(file("two.h5")));
}

// --exact-layers none with GpuModel (reference backend) computing the official values: no exact
// run on the CPU at all (seconds_exact 0), every official dataset the committed golden's bit for
// bit, no exact/ dataset; a selection keeps the committed golden's exact values of those modules.
TEST_F(GpuModelGolden, OfficialOnlyGoldenFromGpuModelHoldsTheCommittedOfficialValues) {
  GoldenGenerateOptions o = committed_options();
  o.official_runner = gpu::official_runner(gpu::OpBackend::kReference);
  o.exact = parse_exact_coverage("none");
  const GoldenGenerateStats st = generate_golden(o, file("n.h5"));
  EXPECT_EQ(st.seconds_exact, 0.0);
  EXPECT_EQ(st.exact_outputs, 0);
  EXPECT_GT(expect_same_datasets(kCommitted, file("n.h5"), "official/"), 300);
  EXPECT_EQ(expect_same_datasets(kCommitted, file("n.h5"), "inputs/"), 4);
  for (const std::string& d : Hdf5File::open(file("n.h5")).list_datasets()) EXPECT_NE(d.rfind("exact/", 0), 0u) << d;
  EXPECT_TRUE(verify_golden(file("n.h5")).ok());
  EXPECT_EQ(Golden::open_verified(file("n.h5")).official_device(), "gpu-reference");

  o.exact = parse_exact_coverage("layers.3");
  const GoldenGenerateStats sel = generate_golden(o, file("s.h5"));
  EXPECT_GT(sel.exact_outputs, 30);
  EXPECT_LT(sel.exact_outputs, sel.outputs);
  for (const char* step : {"exact/prefill/layers.3", "exact/decode0/layers.3", "exact/decode1/layers.3"})
    EXPECT_GT(expect_same_datasets(kCommitted, file("s.h5"), step), 10) << step;
  EXPECT_EQ(expect_same_datasets(kCommitted, file("s.h5"), "official/"),
            expect_same_datasets(kCommitted, file("n.h5"), "official/"));
  EXPECT_TRUE(verify_golden(file("s.h5")).ok());
}

// GpuModel's progress reports the modules the Transformer's run_plan reports, in the same order
// (per-layer progress of long runs), and its op times count every op call per stem.
TEST(GpuModelRunPlan, ProgressPerModuleAndOpTimes) {
  const GoldenGenerateOptions o = committed_options();
  const ModelWeights w = ModelWeights::synthetic(o.config, 1);
  const std::vector<StepPlan> plan = plan_steps(o.config, 1, 8, 2);
  std::vector<std::string> cpu, model;
  MemoryRecorder rc, rg;
  run_plan(Transformer(Precision(Mode::kOfficial), o.config, w), o.tokens, plan, rc,
           [&](const std::string& step, const std::string& m) { cpu.push_back(step + " " + m); });
  gpu::OpTimes times;
  gpu::run_plan(
      gpu::GpuModel(o.config, w, gpu::OpBackend::kReference), o.tokens.front(), plan, rg,
      [&](const std::string& step, const std::string& m) { model.push_back(step + " " + m); }, &times);
  EXPECT_EQ(model, cpu);
  EXPECT_EQ(cpu.size(), 3u * 7u + 2u);  // 6 layers + head in each of the 3 steps, mtp.0 in 2
  ASSERT_TRUE(times.count("linear") && times.count("moe_combine") && times.count("sparse_attention"));
  // One embedding call per step (3) and per MTP input (mtp.0 runs in the prefill and decode0).
  EXPECT_EQ(times.at("embedding").calls, 3 + 2);
  for (const auto& [stem, t] : times) EXPECT_GE(t.seconds, 0.0) << stem;
  const std::string text = gpu::op_times_text(times);
  EXPECT_NE(text.find("moe_combine"), std::string::npos) << text;
  EXPECT_EQ(text.rfind("op times (host wall", 0), 0u) << text;
}

// `dsv4 golden generate --device gpu`: without a GPU exit 2 with one line and nothing written;
// with one, the committed golden's every official (and exact) dataset bit for bit, the manifest
// naming the GPU, and the GPU golden's recompute on the CPU and the committed golden's on the GPU OK.
TEST_F(GpuModelGolden, CliGenerateOnTheGpuEqualsTheCommittedGoldenOrExits2) {
  const std::string args = "golden generate --device gpu --config tiny --seed 1 --prompt-len 6 --decode-steps 2 --out ";
  const auto r = dsv4(args + file("g.h5"));
  if (!ops::device_available()) {
    expect_bad_input(r, "golden generate", "--device: no GPU");
    EXPECT_FALSE(std::filesystem::exists(file("g.h5")));
    const auto v = dsv4("golden verify --recompute --device gpu " + kCommitted);
    expect_bad_input(v, "golden verify", "--device: no GPU");
    EXPECT_EQ(v.out, "") << "refused before any check runs";
    GTEST_SKIP() << "no GPU: " << ops::device_unavailable_reason();
  }
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GT(expect_same_datasets(kCommitted, file("g.h5"), "official/"), 300);
  EXPECT_GT(expect_same_datasets(kCommitted, file("g.h5"), "exact/"), 300);
  EXPECT_EQ(Golden::open(file("g.h5")).official_device(), "gpu");
  const auto cpu = dsv4("golden verify --recompute " + file("g.h5"));
  EXPECT_EQ(cpu.status, 0) << cpu.out << cpu.err;
  EXPECT_NE(cpu.out.find("recompute OK on cpu (official values of the golden computed by gpu)"), std::string::npos)
      << cpu.out;
  const auto gpu = dsv4("golden verify --recompute --device gpu " + kCommitted);
  EXPECT_EQ(gpu.status, 0) << gpu.out << gpu.err;
  EXPECT_NE(gpu.out.find("recompute OK on gpu"), std::string::npos) << gpu.out;
  // --exact-layers none on the GPU: the committed golden's official values, no exact/, proved on the CPU.
  const auto none = dsv4(args + file("n.h5") + " --exact-layers none");
  ASSERT_EQ(none.status, 0) << none.err;
  EXPECT_GT(expect_same_datasets(kCommitted, file("n.h5"), "official/"), 300);
  EXPECT_EQ(dsv4("golden verify --recompute-only layers.2 " + file("n.h5")).status, 0);
}

// Refused on any machine: more than one sequence on the GPU (checked before the GPU is looked for),
// a device that is neither cpu nor gpu.
TEST_F(GpuModelGolden, CliRefusesBatchesAndUnknownDevices) {
  Tensor toks(DType::kI64, {2, 5});
  for (std::size_t i = 0; i < 10; ++i) toks.values<std::int64_t>()[i] = static_cast<std::int64_t>(7 * i);
  write_npy(file("t.npy"), toks);
  const std::string gen = "golden generate --config tiny --seed 1 --tokens " + file("t.npy") + " --out " + file("g.h5");
  expect_bad_input(dsv4(gen + " --device gpu"), "golden generate", "--device: gpu runs 1 sequence at most");
  expect_bad_input(dsv4(gen + " --device tpu"), "golden generate", "--device: must be cpu or gpu");
  EXPECT_FALSE(std::filesystem::exists(file("g.h5")));
}

// The audit's row "GPU vs CPU official" (issue 17 item 1) on the smallest matrix: run with GpuModel
// (reference backend) it compares every output and passes; a runner one ulp off fails naming the
// output; without a runner it is skipped with the reason — not passed, and the JSON says so.
audit::AuditOptions gpu_row_only() {
  audit::AuditOptions o = audit::quick_options(builtin_config("tiny"));
  o.modes = {Mode::kOfficial};
  o.repeats = 0;
  o.threads = {};
  o.batch_sizes = {};
  o.prefill_vs_decode = false;
  return o;
}

const audit::VariantResult& gpu_row(const audit::AuditReport& r) {
  const auto it = std::find_if(r.variants.begin(), r.variants.end(),
                               [](const audit::VariantResult& v) { return v.variant == "GPU vs CPU official"; });
  if (it == r.variants.end()) throw std::logic_error("no GPU row");
  return *it;
}

TEST(GpuModelAudit, GpuRowPassesFailsOrIsSkipped) {
  audit::AuditOptions o = gpu_row_only();
  o.gpu = gpu::official_runner(gpu::OpBackend::kReference);
  const audit::AuditReport ok = audit::run_self_audit(o);
  ASSERT_EQ(ok.variants.size(), 2u);  // the yardstick and the GPU row
  const audit::VariantResult& row = gpu_row(ok);
  EXPECT_FALSE(row.skipped);
  EXPECT_FALSE(row.mismatch.has_value()) << row.mismatch->output;
  EXPECT_GT(row.compared, 100);
  EXPECT_EQ(row.compared, ok.variants.front().compared);
  EXPECT_EQ(row.sha256, ok.variants.front().sha256);
  EXPECT_TRUE(ok.pass());

  const OfficialRunner ref = *o.gpu;
  o.gpu->run = [&ref](const ModelConfig& c, const ModelWeights& w, const std::vector<std::vector<std::int64_t>>& t,
                      const std::vector<StepPlan>& plan, Recorder& rec, const StepProgressFn& p) {
    MemoryRecorder m;
    ref.run(c, w, t, plan, m, p);
    for (const std::string& n : m.order()) {
      RecordedTensor v = m.at(n);
      if (n == "prefill/layers.2.attn/out") v.values[9] = std::nextafter(v.values[9], -1e9);
      rec.record(n, std::move(v));
    }
  };
  const audit::AuditReport bad = audit::run_self_audit(o);
  ASSERT_TRUE(gpu_row(bad).mismatch.has_value());
  EXPECT_EQ(gpu_row(bad).mismatch->output, "prefill/layers.2.attn/out");
  EXPECT_EQ(gpu_row(bad).mismatch->element, 9);
  EXPECT_FALSE(bad.pass());
  EXPECT_NE(audit::audit_text(bad).find("official GPU vs CPU official: first module whose bits move: "
                                        "prefill/layers.2.attn/out"),
            std::string::npos)
      << audit::audit_text(bad);

  audit::AuditOptions none = gpu_row_only();
  none.gpu_unavailable = "no GPU: test";
  const audit::AuditReport skipped = audit::run_self_audit(none);
  EXPECT_TRUE(gpu_row(skipped).skipped);
  EXPECT_EQ(gpu_row(skipped).compared, 0);
  EXPECT_EQ(gpu_row(skipped).note, "skipped: no GPU: test");
  EXPECT_TRUE(skipped.pass());  // a skipped row fails nothing …
  const std::string text = audit::audit_text(skipped);
  EXPECT_NE(text.find("1 runs, every module output bit-identical to the yardstick, 1 skipped"), std::string::npos)
      << text;  // … and passes nothing: it is not counted as a run
  EXPECT_NE(text.find("skipped\n"), std::string::npos) << text;
  const nlohmann::json j = audit::audit_json(skipped);
  EXPECT_EQ(j.at("schema"), "dsv4-audit-report/2");
  const auto& jr = j.at("variants").back();
  EXPECT_EQ(jr.at("variant"), "GPU vs CPU official");
  EXPECT_TRUE(jr.at("skipped").get<bool>());
  EXPECT_TRUE(jr.at("identical").is_null());
  EXPECT_EQ(jr.at("note"), "skipped: no GPU: test");

  // Without the official mode the row is skipped saying so.
  audit::AuditOptions exact = gpu_row_only();
  exact.modes = {Mode::kExact};
  exact.gpu = ref;
  const audit::AuditReport ex = audit::run_self_audit(exact);
  EXPECT_TRUE(gpu_row(ex).skipped);
  EXPECT_NE(gpu_row(ex).note.find("--modes"), std::string::npos);
}

// `dsv4 audit`: the GPU row runs on a GPU and passes; without one it is skipped with the reason and
// the audit still passes (exit 0) — the JSON row says skipped, not identical.
TEST_F(GpuModelGolden, CliAuditGpuRow) {
  const auto r = dsv4("audit --config tiny --quick --modes official --json " + file("a.json"));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(slurp(file("a.json")));
  const auto& vs = j.at("variants");
  const auto it =
      std::find_if(vs.begin(), vs.end(), [](const auto& v) { return v.at("variant") == "GPU vs CPU official"; });
  ASSERT_NE(it, vs.end()) << j.dump(1);
  if (!ops::device_available()) {
    EXPECT_TRUE(it->at("skipped").get<bool>()) << it->dump();
    EXPECT_TRUE(it->at("identical").is_null()) << it->dump();
    EXPECT_EQ(it->at("note").get<std::string>().rfind("skipped: no GPU", 0), 0u) << it->dump();
    EXPECT_NE(r.out.find("official  GPU vs CPU official"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("skipped: no GPU"), std::string::npos) << r.out;
    GTEST_SKIP() << "no GPU: the row is skipped, as it must be";
  }
  EXPECT_FALSE(it->at("skipped").get<bool>()) << it->dump();
  EXPECT_TRUE(it->at("identical").get<bool>()) << it->dump();
  EXPECT_GT(it->at("outputs").get<std::int64_t>(), 100) << it->dump();
  EXPECT_EQ(it->at("sha256"), vs.front().at("sha256"));  // the yardstick's bits
}

}  // namespace
}  // namespace dsv4
