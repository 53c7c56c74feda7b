// `dsv4 demo`: the README's main job, on the built-in tiny config with no arguments.
// 1–2: the formats and quantisers self-check; 3: a tiny golden is generated and verified, the
// reference runs in official mode as a candidate, and `certify` judges it against the golden;
// 4: the op registry's harness on the GPU kernels (skipped, saying why, without a GPU).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.hpp"
#include "demo_gpu.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/golden/dump.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "dsv4/selfcheck/formats_selfcheck.hpp"

namespace dsv4::cli {

namespace {

struct DemoArgs {
  std::uint64_t seed = 20261122;  // the synthetic tensors of the self-checks
  std::uint64_t weights_seed = 1;
  std::int64_t prompt_len = 140;
  std::int64_t decode_steps = 2;
  std::string out_dir;
  bool skip_model = false;
};

int print_section(const char* title, const std::vector<SelfCheckLine>& lines) {
  std::printf("\n%s\n", title);
  int width = 62;  // the check column fits its longest label
  for (const auto& l : lines) width = std::max(width, static_cast<int>(l.what.size()));
  std::printf("  %-*s %10s %9s  %s\n", width, "check", "cases", "failures", "verdict");
  int failed = 0;
  for (const auto& l : lines) {
    std::printf("  %-*s %10lld %9lld  %s\n", width, l.what.c_str(), static_cast<long long>(l.cases),
                static_cast<long long>(l.failures), l.failures == 0 ? "PASS" : "FAIL");
    if (l.failures != 0) {
      std::printf("      first failure: %s\n", l.first_failure.c_str());
      ++failed;
    }
  }
  return failed;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Section 3: golden → verify → official-mode candidate → certify. Returns the number of failures.
int golden_section(const DemoArgs& a) {
  namespace fs = std::filesystem;
  std::printf(
      "\n3. golden and certify (tiny config, synthetic weights seed %llu, %lld prompt tokens + %lld decode "
      "steps)\n",
      static_cast<unsigned long long>(a.weights_seed), static_cast<long long>(a.prompt_len),
      static_cast<long long>(a.decode_steps));
  const bool temp = a.out_dir.empty();
  const fs::path dir =
      temp ? fs::temp_directory_path() / ("dsv4_demo_" + std::to_string(::getpid())) : fs::path(a.out_dir);
  fs::create_directories(dir);
  struct Cleanup {
    fs::path d;
    bool on;
    ~Cleanup() {
      std::error_code ec;
      if (on) fs::remove_all(d, ec);
    }
  } cleanup{dir, temp};
  const std::string golden_path = (dir / "tiny-golden.h5").string();
  const std::string cand_path = (dir / "candidate-official.h5").string();

  GoldenGenerateOptions o;
  o.config = load_config("tiny");
  o.weights.seed = a.weights_seed;
  o.tokens = synthetic_tokens(a.prompt_len + a.decode_steps, o.config.vocab_size, 1);
  o.tokens_source = "synthetic_tokens(n=" + std::to_string(a.prompt_len + a.decode_steps) + ", seed=1)";
  o.decode_steps = a.decode_steps;
  o.deflate = 0;  // a temporary file: speed over size
  auto t0 = std::chrono::steady_clock::now();
  const GoldenGenerateStats st = generate_golden(o, golden_path);
  std::printf("  golden     %s: %lld datasets, exact %.1f s + official %.1f s + write %.1f s\n", golden_path.c_str(),
              static_cast<long long>(st.datasets), st.seconds_exact, st.seconds_official, st.seconds_write);

  t0 = std::chrono::steady_clock::now();
  const GoldenVerifyResult vr = verify_golden(golden_path);
  std::printf("  verify     %lld datasets, manifest and SHA-256 of each: %s (%.1f s)\n",
              static_cast<long long>(vr.datasets_checked), vr.ok() ? "OK" : "FAILED", seconds_since(t0));
  for (const GoldenProblem& p : vr.problems) std::printf("    %s: %s\n", p.dataset.c_str(), p.what.c_str());
  if (!vr.ok()) return 1;

  // The candidate: the reference itself in official mode, dumped as `dsv4 run --mode official` does.
  t0 = std::chrono::steady_clock::now();
  const auto plan = plan_steps(o.config, 1, a.prompt_len + a.decode_steps, a.decode_steps);
  // Its weights and their content hash, declared in the dump as dsv4 run --dump declares it.
  RunWeights rw = make_run_weights(o.config, o.weights);
  const std::string content_sha = std::move(rw.content_sha256);
  const Transformer model(Precision(Mode::kOfficial), o.config, std::move(rw.weights));
  MemoryRecorder rec;
  run_plan(model, o.tokens, plan, rec);
  write_run_dump(cand_path, RunDumpInfo{o.config, Mode::kOfficial, o.weights, o.tokens, a.decode_steps, plan}, rec,
                 content_sha);
  std::printf("  candidate  %s: the reference in official mode, %zu tensors (%.1f s)\n", cand_path.c_str(),
              rec.entries().size(), seconds_since(t0));

  t0 = std::chrono::steady_clock::now();
  const Golden g = Golden::open(golden_path);
  const MappedTensorSource cand(TensorSource::open(cand_path), NameMap{});
  CertifyOptions opts;
  opts.local_verdicts = diff::certify_local_judge(g, cand);
  const report::CertifyReport rep = certify(g, cand, opts);
  std::printf("  certify    (%.1f s)\n\n", seconds_since(t0));
  // The verdict and any failure; `dsv4 certify` on the kept files prints the tables.
  std::printf("%s", report::format_text(rep, report::Detail::kQuiet).c_str());
  if (!temp) std::printf("\n  files kept in %s\n", dir.string().c_str());
  return rep.pass() && !rep.tensors.empty() ? 0 : 1;
}

}  // namespace

void register_demo(CLI::App& app) {
  auto a = std::make_shared<DemoArgs>();
  auto* cmd = app.add_subcommand(
      "demo",
      "Run the built-in demonstration (no arguments needed): the formats and quantisers self-check, then a\n"
      "tiny golden generated and verified, the reference in official mode certified against it, and\n"
      "(with a GPU) the CUDA kernels compared with the reference bit for bit.\n"
      "Exit 0 when every check passes, 1 otherwise.");
  cmd->add_option("--seed", a->seed, "seed of the self-checks' synthetic tensors")->capture_default_str();
  cmd->add_option("--weights-seed", a->weights_seed, "seed of the tiny model's synthetic weights")
      ->capture_default_str();
  cmd->add_option("--prompt-len", a->prompt_len, "prompt tokens of the golden (140 crosses a ratio-128 boundary)")
      ->capture_default_str();
  cmd->add_option("--decode-steps", a->decode_steps, "decode steps of the golden")->capture_default_str();
  cmd->add_option("--out-dir", a->out_dir, "keep the golden, the candidate dump there (default: a temporary dir)");
  cmd->add_flag("--skip-model", a->skip_model, "only the self-checks (sections 1-2)");
  cmd->callback([a]() {
    std::printf("dsv4 demo — DeepSeek-V4 reference oracle\n");
    const auto t0 = std::chrono::steady_clock::now();
    int failed = print_section("1. number formats (spec 01 §1.1–1.2)", run_formats_selfcheck());
    failed += print_section("2. QAT quantisers (spec 01 §1.3–1.5)", run_quant_selfcheck(a->seed));
    if (!a->skip_model) {
      const int rc = run_guarded("demo", [&] { return golden_section(*a); });
      if (rc == 2) {
        set_exit_code(2);
        return;
      }
      failed += rc;
    }
    {
      std::string skipped;
      const std::vector<SelfCheckLine> gpu_lines = run_gpu_selfcheck(a->seed, skipped);
      if (gpu_lines.empty()) {
        std::printf("\n4. GPU kernels (the op registry on the device): skipped (%s)\n", skipped.c_str());
      } else {
        const std::string title =
            "4. GPU kernels (the op registry on the device): bits == reference, batch invariance, reruns (" +
            gpu_device_text() + ")";
        failed += print_section(title.c_str(), gpu_lines);
      }
    }
    std::printf("\n%s (%.1f s)\n", failed == 0 ? "demo: all checks passed" : "demo: some checks FAILED",
                seconds_since(t0));
    set_exit_code(failed == 0 ? 0 : 1);
  });
}

}  // namespace dsv4::cli
