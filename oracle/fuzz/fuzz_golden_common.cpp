// The small golden of fuzz_golden and fuzz_certify (fuzz_golden_common.hpp).
#include "fuzz_golden_common.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "dsv4/golden/config_json.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/hdf5_file.hpp"

namespace dsv4::fuzz {

namespace {

// A 3-layer model small enough that generating its golden and recomputing its modules takes
// milliseconds: one SWA layer, one CSA layer (compressor + indexer), one HCA layer, the MTP block.
constexpr const char* kConfig = R"({"max_batch_size": 1, "max_seq_len": 64, "vocab_size": 64, "dim": 128,
 "moe_inter_dim": 128, "n_layers": 3, "n_hash_layers": 1, "n_mtp_layers": 1, "n_heads": 2, "n_routed_experts": 4,
 "n_shared_experts": 1, "n_activated_experts": 2, "score_func": "sqrtsoftplus", "route_scale": 2.5,
 "swiglu_limit": 10.0, "q_lora_rank": 128, "head_dim": 128, "rope_head_dim": 64, "o_groups": 1, "o_lora_rank": 128,
 "window_size": 4, "compress_ratios": [0, 4, 128, 0], "rope_theta": 10000.0, "compress_rope_theta": 160000.0,
 "rope_factor": 16.0, "original_seq_len": 65536, "beta_fast": 32.0, "beta_slow": 1.0, "index_n_heads": 2,
 "index_head_dim": 128, "index_topk": 4, "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-06, "norm_eps": 1e-06,
 "dtype": "fp8", "scale_fmt": "ue8m0", "expert_dtype": "fp4"})";

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

const GoldenTemplate& golden_template() {
  static const GoldenTemplate t = [] {
    GoldenTemplate g;
    g.path = scratch_dir() + "/template.h5";
    GoldenGenerateOptions o;
    o.config = parse_config_json(kConfig, "fuzz_golden_common.cpp");
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
