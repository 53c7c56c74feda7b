// The small golden of fuzz_golden and fuzz_certify (fuzz_golden_common.hpp).
#include "fuzz_golden_common.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/golden/config_json.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/report/certify_report.hpp"
#include "small_model_config.hpp"

namespace dsv4::fuzz {

namespace {

[[noreturn]] void harness_failure(const std::string& what) {
  std::fprintf(stderr, "fuzz harness setup failed: %s\n", what.c_str());
  std::abort();
}

}  // namespace

const std::string& scratch_dir() {
  // Never destroyed: the atexit handler below runs after static destructors registered later.
  static const std::string& dir = *new std::string([] {
    const char* t = std::getenv("TMPDIR");
    std::string d = std::string(t && *t ? t : "/tmp") + "/dsv4_fuzz_golden_" + std::to_string(::getpid());
    std::error_code ec;
    std::filesystem::create_directories(d, ec);
    if (ec) harness_failure("cannot create " + d + ": " + ec.message());
    std::atexit([] {
      std::error_code e;
      std::filesystem::remove_all(scratch_dir(), e);
    });
    return d;
  }());
  return dir;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) harness_failure("cannot write " + path);
}

std::string seeds_dir_requested() {
  const char* d = std::getenv("DSV4_FUZZ_WRITE_SEEDS");
  return d && *d ? std::string(d) : std::string();
}

void certify_and_report(const Golden& g, const MappedTensorSource& cand, CertifyOptions opts,
                        const ModelWeights* weights) {
  if (weights != nullptr)
    opts.local_verdicts = [&] { return diff::local_verdicts_of(diff::diff_against_golden(g, cand, *weights)); };
  const report::CertifyReport rep = certify(g, cand, opts);
  (void)rep.pass();
  (void)report::format_text(rep, report::Detail::kVerbose);
  (void)report::to_json(rep).dump(1);
}

const GoldenTemplate& golden_template() {
  static const GoldenTemplate t = [] {
    GoldenTemplate g;
    g.path = scratch_dir() + "/template.h5";
    GoldenGenerateOptions o;
    o.config = parse_config_json(kSmallModelConfig, "small_model_config.hpp");
    o.config.name = "fuzz-small";
    o.weights = WeightsSpec{1, ""};
    o.tokens = synthetic_tokens(5, o.config.vocab_size, 1);
    o.decode_steps = 1;
    o.tokens_source = "synthetic_tokens(n=5, seed=1)";
    generate_golden(o, g.path);
    const Golden opened = Golden::open_verified(g.path);
    g.manifest = opened.manifest_text();
    g.config = opened.config();
    g.config_json = config_to_json(g.config);
    for (const GoldenEntry& e : opened.entries()) {
      g.order.push_back(e.path);
      g.data.emplace(e.path, opened.read(e.path));
    }
    static const ModelWeights w = make_weights(g.config, WeightsSpec{1, ""});
    g.weights = &w;
    return g;
  }();
  return t;
}

}  // namespace dsv4::fuzz
