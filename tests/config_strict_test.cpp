// config.json is read strictly and conformingly (issue 14 item 5, issue 13 item 0; spec 00 §0.5.4):
// the official ModelArgs defaults for optional keys given as null or left out, required keys,
// integers that are integers, no duplicate or unknown keys, ranges checked before any work, no
// FIFO read as a config; the memory estimate and the CLI's exception contract (exit 2 / 3).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <new>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "dsv4/config/model_config.hpp"
#include "dsv4/config/resource_limits.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/golden/config_json.hpp"
#include "dsv4/io/input_error.hpp"
#include "support/expect_errors.hpp"
#include "support/temp_files.hpp"

namespace dsv4 {
namespace {

using nlohmann::json;
using testing_support::config_error_field;

// A small valid config of the required keys only.
json base() {
  return json{{"vocab_size", 256},
              {"dim", 128},
              {"moe_inter_dim", 128},
              {"n_layers", 2},
              {"n_heads", 2},
              {"n_routed_experts", 4},
              {"n_activated_experts", 2},
              {"q_lora_rank", 128},
              {"head_dim", 128},
              {"rope_head_dim", 64},
              {"o_groups", 2},
              {"o_lora_rank", 64},
              {"index_n_heads", 2},
              {"index_head_dim", 64},
              {"compress_ratios", {4, 128, 0}}};
}

std::string field_of_error(const json& j) { return config_error_field(j.dump()); }

TEST(ConfigStrict, RequiredKeysOnlyTakeTheOfficialDefaults) {
  const ModelConfig c = parse_config_json(base().dump(), "t.json");
  // ModelArgs defaults at 0ec3a03 (spec 00 §0.5.4).
  EXPECT_EQ(c.max_batch_size, 4);
  EXPECT_EQ(c.max_seq_len, 4096);
  EXPECT_EQ(c.n_hash_layers, 0);
  EXPECT_EQ(c.n_mtp_layers, 1);
  EXPECT_EQ(c.swiglu_limit, 0.0);
  EXPECT_EQ(c.compress_rope_theta, 40000.0);
  EXPECT_EQ(c.original_seq_len, 0);
  EXPECT_EQ(c.rope_factor, 40.0);
  EXPECT_EQ(c.route_scale, 1.0);
  EXPECT_EQ(c.window_size, 128);
  EXPECT_EQ(c.index_topk, 512);
  EXPECT_EQ(c.hc_mult, 4);
  EXPECT_EQ(c.hc_sinkhorn_iters, 20);
  EXPECT_EQ(c.dtype, "fp8");
  EXPECT_EQ(c.scale_fmt, "ue8m0");
  EXPECT_EQ(c.expert_dtype, "fp8");  // None: the default Linear dtype
  EXPECT_EQ(c.score_func, ScoreFunc::kSqrtSoftplus);
}

TEST(ConfigStrict, EveryOptionalKeyGivenAsNullIsTheDefault) {
  const ModelConfig ref = parse_config_json(base().dump(), "t.json");
  for (const char* key : {"max_batch_size",   "max_seq_len",       "dtype",
                          "scale_fmt",        "expert_dtype",      "scale_dtype",
                          "n_hash_layers",    "n_mtp_layers",      "n_shared_experts",
                          "score_func",       "route_scale",       "swiglu_limit",
                          "norm_eps",         "window_size",       "compress_rope_theta",
                          "original_seq_len", "rope_theta",        "rope_factor",
                          "beta_fast",        "beta_slow",         "index_topk",
                          "hc_mult",          "hc_sinkhorn_iters", "hc_eps"}) {
    json j = base();
    j[key] = nullptr;
    ModelConfig c;
    ASSERT_NO_THROW(c = parse_config_json(j.dump(), "t.json")) << key;
    EXPECT_TRUE(same_model(c, ref)) << key;
  }
}

// issue 13: a config.json written from the official ModelArgs (every field, its default values,
// expert_dtype None) is accepted.
TEST(ConfigStrict, TheOfficialModelArgsDefaultsAsAConfigJson) {
  const json j = json::parse(R"({"max_batch_size": 4, "max_seq_len": 4096, "dtype": "fp8", "scale_fmt": "ue8m0",
    "expert_dtype": null, "scale_dtype": "fp8", "vocab_size": 129280, "dim": 4096, "moe_inter_dim": 4096,
    "n_layers": 7, "n_hash_layers": 0, "n_mtp_layers": 1, "n_heads": 64, "n_routed_experts": 8,
    "n_shared_experts": 1, "n_activated_experts": 2, "score_func": "sqrtsoftplus", "route_scale": 1.0,
    "swiglu_limit": 0.0, "q_lora_rank": 1024, "head_dim": 512, "rope_head_dim": 64, "norm_eps": 1e-6,
    "o_groups": 8, "o_lora_rank": 1024, "window_size": 128, "compress_ratios": [0, 0, 4, 128, 4, 128, 4, 0],
    "compress_rope_theta": 40000.0, "original_seq_len": 0, "rope_theta": 10000.0, "rope_factor": 40,
    "beta_fast": 32, "beta_slow": 1, "index_n_heads": 64, "index_head_dim": 128, "index_topk": 512,
    "hc_mult": 4, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6})");
  ModelConfig c;
  ASSERT_NO_THROW(c = parse_config_json(j.dump(), "modelargs.json"));
  EXPECT_EQ(c.expert_dtype, "fp8");
  EXPECT_EQ(c.n_layers, 7);
  // The released V4-Pro inference/config.json (spec 00 §0.5.2) and HF config.json keys also parse.
  json hf = json::parse(R"({"architectures": ["DeepseekV4ForCausalLM"], "attention_bias": false,
    "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 1, "expert_dtype": "fp4", "hc_eps": 1e-06,
    "hc_mult": 4, "hc_sinkhorn_iters": 20, "head_dim": 512, "hidden_act": "silu", "hidden_size": 7168,
    "index_head_dim": 128, "index_n_heads": 64, "index_topk": 1024, "initializer_range": 0.02,
    "max_position_embeddings": 1048576, "model_type": "deepseek_v4", "moe_intermediate_size": 3072,
    "n_routed_experts": 384, "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 128,
    "num_experts_per_tok": 6, "num_hidden_layers": 61, "num_hash_layers": 3, "num_key_value_heads": 1,
    "num_nextn_predict_layers": 1, "o_groups": 16, "o_lora_rank": 1024, "q_lora_rank": 1536,
    "qk_rope_head_dim": 64, "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
    "quant_method": "fp8", "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}, "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 16, "original_max_position_embeddings": 65536,
    "type": "yarn"}, "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sqrtsoftplus",
    "sliding_window": 128, "swiglu_limit": 10.0, "tie_word_embeddings": false, "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16", "transformers_version": "4.57.1", "use_cache": true, "vocab_size": 129280,
    "compress_rope_theta": 160000})");
  json ratios = json::array({128, 128});
  for (int i = 0; i < 29; ++i) ratios.insert(ratios.end(), {4, 128});
  ratios.insert(ratios.end(), {4, 0});
  hf["compress_ratios"] = ratios;
  ASSERT_NO_THROW(c = parse_config_json(hf.dump(), "config.json"));
  EXPECT_TRUE(same_model(c, builtin_config("v4-pro")));
}

TEST(ConfigStrict, IndexHeadDimEqualToRopeHeadDimIsValid) {
  json j = base();
  j["index_head_dim"] = 64;  // = rope_head_dim: the official Indexer rotates every dim
  EXPECT_EQ(field_of_error(j), "<no error>");
  j["index_head_dim"] = 32;
  EXPECT_EQ(field_of_error(j), "index_head_dim");
}

TEST(ConfigStrict, MissingRequiredKeysAreNamed) {
  const json required = base();
  for (const auto& item : required.items()) {
    const std::string key = item.key();
    json j = base();
    j.erase(key);
    EXPECT_EQ(field_of_error(j), key);
    j[key] = nullptr;
    EXPECT_EQ(field_of_error(j), key);
  }
  json hf = base();  // a Hugging Face spelling satisfies the requirement
  hf.erase("dim");
  hf["hidden_size"] = 128;
  EXPECT_EQ(field_of_error(hf), "<no error>");
}

TEST(ConfigStrict, IntegerFieldsTakeIntegersOnly) {
  for (const json& bad : {json(256.5), json(256.0), json("256"), json(true), json::array({256})}) {
    json j = base();
    j["dim"] = bad;
    EXPECT_EQ(field_of_error(j), "dim") << bad.dump();
  }
  std::string text = base().dump();
  text.replace(text.find("\"dim\":128"), 9, "\"dim\":1e3");
  EXPECT_EQ(config_error_field(text), "dim");
  json j = base();
  j["compress_ratios"] = {4, 128.0, 0};
  EXPECT_EQ(field_of_error(j), "compress_ratios");
  j = base();
  j["route_scale"] = "2.5";
  EXPECT_EQ(field_of_error(j), "route_scale");
}

TEST(ConfigStrict, DuplicateKeysAreRefused) {
  std::string text = base().dump();
  text.insert(1, R"("dim": 256, )");
  EXPECT_EQ(config_error_field(text), "dim");
  json j = base();
  j["rope_scaling"] = {{"factor", 16}};
  text = j.dump();
  text.insert(text.find("\"factor\""), R"("factor": 8, )");
  EXPECT_EQ(config_error_field(text), "rope_scaling.factor");
}

TEST(ConfigStrict, UnknownKeysAreRefusedHuggingFaceExtrasAllowed) {
  json j = base();
  j["dimm"] = 128;
  EXPECT_EQ(field_of_error(j), "dimm");
  j = base();
  j["rope_scaling"] = {{"factor", 16}, {"mscale", 1}};
  EXPECT_EQ(field_of_error(j), "rope_scaling.mscale");
  j = base();
  j["torch_dtype"] = "bfloat16";
  j["architectures"] = {"DeepseekV4ForCausalLM"};
  j["num_key_value_heads"] = 1;
  EXPECT_EQ(field_of_error(j), "<no error>");
  j["num_key_value_heads"] = 8;  // another architecture
  EXPECT_EQ(field_of_error(j), "num_key_value_heads");
}

TEST(ConfigStrict, TwoSpellingsMustAgree) {
  json j = base();
  j["hidden_size"] = 256;
  EXPECT_EQ(field_of_error(j), "dim");
  j["hidden_size"] = 128;
  EXPECT_EQ(field_of_error(j), "<no error>");
  j = base();
  j["rope_factor"] = 16;
  j["rope_scaling"] = {{"factor", 8}};
  EXPECT_EQ(field_of_error(j), "rope_factor");
}

TEST(ConfigStrict, RangesAreCheckedBeforeAnyWork) {
  const auto with = [](const char* key, json v) {
    json j = base();
    j[key] = std::move(v);
    return field_of_error(j);
  };
  EXPECT_EQ(with("hc_sinkhorn_iters", 2147483647), "hc_sinkhorn_iters");
  EXPECT_EQ(with("hc_sinkhorn_iters", 0), "hc_sinkhorn_iters");
  EXPECT_EQ(with("dim", std::int64_t{1} << 40), "dim");
  EXPECT_EQ(with("vocab_size", 2147483647), "vocab_size");
  EXPECT_EQ(with("vocab_size", 18446744073709551615ULL), "vocab_size");
  EXPECT_EQ(with("max_seq_len", -1), "max_seq_len");
  EXPECT_EQ(with("n_layers", 100000), "n_layers");
  EXPECT_EQ(with("rope_theta", 1.0), "rope_theta");
  EXPECT_EQ(with("norm_eps", 0.0), "norm_eps");
  EXPECT_EQ(with("compress_ratios", json::array({4, 64, 0})), "compress_ratios");
  EXPECT_EQ(config_error_field(R"({"a": {"b": {"c": [1]}}})"), "c");  // deeper than a config nests
}

TEST(ConfigStrict, ScaleDtypeAndScaleFmtAsTheOfficialTransformer) {
  json j = base();
  j["scale_fmt"] = nullptr;  // scale_dtype "fp8" (default) forces ue8m0
  EXPECT_EQ(parse_config_json(j.dump(), "t").scale_fmt, "ue8m0");
  j["scale_dtype"] = "fp32";
  EXPECT_EQ(parse_config_json(j.dump(), "t").scale_fmt, "");
  j["scale_fmt"] = "ue8m0";
  EXPECT_EQ(parse_config_json(j.dump(), "t").scale_fmt, "ue8m0");
  j["scale_dtype"] = "fp16";
  EXPECT_EQ(field_of_error(j), "scale_dtype");
}

TEST(ConfigStrict, LongerCompressRatiosAreCutAsTheOfficialIndexing) {
  json j = base();
  j["compress_ratios"] = {4, 128, 0, 4, 4};
  EXPECT_EQ(parse_config_json(j.dump(), "t").compress_ratios, (std::vector<std::int64_t>{4, 128, 0}));
  j["compress_ratios"] = {4, 128};
  EXPECT_EQ(field_of_error(j), "compress_ratios");
}

// Goldens store config_to_json; reading it back gives the same model (fp32 scales included).
TEST(ConfigStrict, GoldenConfigJsonRoundTrips) {
  for (const auto& name : builtin_config_names()) {
    const ModelConfig c = builtin_config(name);
    EXPECT_TRUE(same_model(parse_config_json(config_to_json(c), "g"), c)) << name;
    EXPECT_EQ(parse_config_json(config_to_json(c), "g").name, name);
  }
  ModelConfig c = builtin_config("tiny");
  c.scale_fmt.clear();
  EXPECT_TRUE(same_model(parse_config_json(config_to_json(c), "g"), c));
}

class ConfigFiles : public ::testing::Test {
 protected:
  testing_support::TempDir dir_;
};

std::string load_error(const std::string& path) {
  try {
    (void)load_config(path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

TEST_F(ConfigFiles, AFifoIsRefusedWithoutOpeningIt) {
  const std::string fifo = dir_.file("fifo.json");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto f = std::async(std::launch::async, [&] { return load_error(fifo); });
  if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // release the reader, then fail
    if (fd >= 0) ::close(fd);
    FAIL() << "load_config blocked on a FIFO";
  }
  EXPECT_NE(f.get().find("not a regular file"), std::string::npos);
  EXPECT_NE(load_error(dir_.path().string()).find("not a regular file"), std::string::npos);
  const std::string big = dir_.file("big.json");
  std::ofstream(big) << std::string((1 << 20) + 1, ' ');
  EXPECT_NE(load_error(big).find("larger than a config.json"), std::string::npos);
}

TEST(MemoryEstimate, GrowsWithTheRunAndIsCheckedAgainstTheLimit) {
  const ModelConfig tiny = builtin_config("tiny");
  const MemoryEstimate a = estimate_run_memory(tiny, 1, 100, 1);
  const MemoryEstimate b = estimate_run_memory(tiny, 2, 400, 2);
  EXPECT_GT(a.total(), 1e6);
  EXPECT_GT(b.outputs, a.outputs * 7.9);
  EXPECT_EQ(b.weights, a.weights);  // one copy of the weights at a time, whatever the modes (golden.cpp)
  // 1.6T parameters, most of them FP4 experts (0.53 bytes each as held), twice while hashed.
  EXPECT_GT(estimate_run_memory(builtin_config("v4-pro"), 1, 100, 1).weights, 1.6e12);
  // The flash-slice golden of issue 13 item 9 (BENCHMARKS.md: measured peak RSS below) fits a 24 GiB machine.
  EXPECT_LT(estimate_run_memory(builtin_config("flash-slice"), 1, 258, 2).total(), 12e9);
  ::setenv("DSV4_MEMORY_LIMIT", "1000000", 1);
  try {
    check_memory(a, "a tiny run");
    ADD_FAILURE() << "no refusal under a 1 MB limit";
  } catch (const ResourceError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("a tiny run needs about"), std::string::npos) << m;
    EXPECT_NE(m.find("1 MB available"), std::string::npos) << m;
    EXPECT_NE(m.find("lower"), std::string::npos) << m;
  }
  ::setenv("DSV4_MEMORY_LIMIT", "1e15", 1);
  EXPECT_NO_THROW(check_memory(a, "a tiny run"));
  ::unsetenv("DSV4_MEMORY_LIMIT");
}

// The exit contract of every guarded command (README): 2 bad input, 3 internal error.
int guarded(const std::function<void()>& f, std::string& err) {
  testing::internal::CaptureStderr();
  const int rc = run_guarded("test", [&] {
    f();
    return 0;
  });
  err = testing::internal::GetCapturedStderr();
  return rc;
}

TEST(CliGuard, InputErrorsAreTwoBugsAreThreeAndSaySo) {
  std::string err;
  set_command_line(2, std::vector<const char*>{"dsv4", "test it"}.data());
  EXPECT_EQ(guarded([] { throw InputError("x.npy", "bad"); }, err), 2);
  EXPECT_EQ(err, "dsv4 test: error: x.npy: bad\n");
  EXPECT_EQ(guarded([] { throw ConfigError("dim", "missing"); }, err), 2);
  EXPECT_EQ(guarded([] { throw std::invalid_argument("gate: tid2eid"); }, err), 2);
  EXPECT_EQ(guarded([] { throw ResourceError("not enough memory: x"); }, err), 2);
  EXPECT_EQ(guarded([] { (void)json::parse("{").at("x"); }, err), 2);
  EXPECT_EQ(guarded([] { throw std::logic_error("an invariant"); }, err), 3);
  EXPECT_NE(err.find("internal error (a bug in dsv4"), std::string::npos) << err;
  EXPECT_NE(err.find("report"), std::string::npos) << err;
  EXPECT_NE(err.find("dsv4 'test it'"), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), err.size() - 1) << err;
  EXPECT_EQ(guarded([] { throw std::out_of_range("at"); }, err), 3);
  EXPECT_EQ(guarded([] { throw 7; }, err), 3);
  note_memory_estimate("a run of 2 x 300 tokens", 3.5e9);
  EXPECT_EQ(guarded([] { throw std::bad_alloc(); }, err), 2);
  EXPECT_NE(err.find("not enough memory for a run of 2 x 300 tokens (estimate 3.5 GB)"), std::string::npos) << err;
}

}  // namespace
}  // namespace dsv4
