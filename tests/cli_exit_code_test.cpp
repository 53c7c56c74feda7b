// The CLI's input contract (issue 14 items 3, 5, 6): numeric options are read strictly (refused,
// not wrapped), a length past max_seq_len is refused before anything is allocated, a FIFO given as
// --config is refused instead of hanging, config.json errors name the key, and a run that cannot fit
// the machine's memory is refused with the estimate — each exit 2 with a message naming it.
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "dsv4/io/npy.hpp"
#include "dsv4/io/npz.hpp"
#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

using CliExit = testing_support::CliDir;

TEST_F(CliExit, NumericOptionsOutOfRangeAreRefusedNotWrapped) {
  for (const char* bad : {"-1", "18446744073709551616", "010", "0x10", "1e3", "+3", " 5"}) {
    const auto r = dsv4(std::string("run --config tiny --seed '") + bad + "' --tokens t.npy --dump " + file("d.h5"));
    EXPECT_EQ(r.status, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("--seed"), std::string::npos) << bad << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(file("d.h5")));
  }
  const auto r = dsv4("golden generate --config tiny --prompt-len 9223372036854775808 --out " + file("g.h5"));
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("--prompt-len"), std::string::npos) << r.err;
}

// --prompt-len past max_seq_len: refused before the token ids are made (under a 1 GB address-space
// limit a 2^31-token allocation would fail as "not enough memory" instead).
TEST_F(CliExit, PromptLengthPastMaxSeqLenIsRefusedBeforeAllocating) {
  for (const char* len : {"2147483647", "9223372036854775807"}) {
    const auto r = dsv4(std::string("golden generate --config tiny --prompt-len ") + len + " --decode-steps 2 --out " +
                        file("g.h5"));
    expect_bad_input(r, "golden generate", "exceed the config's max_seq_len 512");
  }
  const auto r =
      dsv4("golden generate --config tiny --prompt-len 511 --decode-steps 9223372036854775807 --out " + file("g.h5"));
  expect_bad_input(r, "golden generate", "max_seq_len");
  EXPECT_FALSE(std::filesystem::exists(file("g.h5")));
}

TEST_F(CliExit, AFifoAsConfigIsRefusedNotWaitedOn) {
  ASSERT_EQ(::mkfifo(file("cfg.json").c_str(), 0600), 0);
  write_npy(file("t.npy"), Tensor(DType::kI32, {1, 4}));
  // Under `timeout`, a hang ends with status 124 instead of blocking the suite.
  const auto run = [&](const std::string& args) {
    const std::string cmd = std::string("timeout 60 '") + DSV4_CLI_PATH + "' " + args + " > '" + file("o.txt") +
                            "' 2> '" + file("e.txt") + "'";
    const int raw = std::system(cmd.c_str());
    Result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.err = slurp(file("e.txt"));
    return r;
  };
  expect_bad_input(run("run --config " + file("cfg.json") + " --tokens " + file("t.npy") + " --dump " + file("d.h5")),
                   "run", "not a regular file");
  const auto r = run("cost --config " + file("cfg.json"));
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
}

// A candidate tensor declaring more elements than the golden's output: refused before it is
// decompressed (a 16 kB npz holding 8 MB of zeros stands for a decompression bomb).
TEST_F(CliExit, ACandidateLargerThanTheGoldenIsRefusedBeforeDecompression) {
  const Tensor big(DType::kF64, {1000, 1000});
  write_npz(file("c.npz"), {{"prefill/layers.0.attn/out", &big}}, {.compress = true});
  const auto r = dsv4(std::string("certify --golden ") + DSV4_SOURCE_DIR + "/goldens/tiny-s1-p6-d2.h5 --candidate " +
                      file("c.npz"));
  expect_bad_input(r, "certify", "declares shape [1000, 1000], more than the 1536 elements of the golden's");
  const auto d = dsv4(std::string("diff --teacher-forced --golden ") + DSV4_SOURCE_DIR +
                      "/goldens/tiny-s1-p6-d2.h5 --candidate " + file("c.npz"));
  expect_bad_input(d, "diff", "declares shape [1000, 1000], more than the 1536 elements of the golden's");
}

class CliConfig : public CliExit {
 protected:
  // tiny widths; `extra` is spliced into the object.
  std::string config(const std::string& extra) const {
    const std::string p = file("cfg.json");
    std::ofstream(p) << R"({"vocab_size": 256, "dim": 128, "moe_inter_dim": 128, "n_layers": 1, "n_mtp_layers": 0,
      "n_heads": 2, "n_routed_experts": 4, "n_activated_experts": 2, "q_lora_rank": 128, "head_dim": 128,
      "rope_head_dim": 64, "o_groups": 2, "o_lora_rank": 64, "index_n_heads": 2, "index_head_dim": 64,
      "max_seq_len": 64, "window_size": 8, "index_topk": 4, "compress_ratios": [4])"
                     << extra << "}";
    return p;
  }
  Result run_with(const std::string& extra) {
    write_npy(file("t.npy"), Tensor(DType::kI32, {1, 6}));
    return dsv4("run --config " + config(extra) + " --seed 1 --tokens " + file("t.npy") + " --mode official --dump " +
                file("d.h5"));
  }
};

TEST_F(CliConfig, StrictConfigErrorsNameTheKey) {
  ASSERT_EQ(run_with("").status, 0);
  std::filesystem::remove(file("d.h5"));
  expect_bad_input(run_with(R"(, "hc_sinkhorn_iters": 2147483647)"), "run", "'hc_sinkhorn_iters'");
  expect_bad_input(run_with(R"(, "dim": 128)"), "run", "'dim': " + file("cfg.json") + ": duplicate key");
  expect_bad_input(run_with(R"(, "dimm": 1)"), "run", "'dimm': unknown key");
  expect_bad_input(run_with(R"(, "hc_mult": 4.5)"), "run", "'hc_mult': must be an integer");
  expect_bad_input(run_with(R"(, "vocab_size": 2147483647)"), "run", "'vocab_size'");
  EXPECT_FALSE(std::filesystem::exists(file("d.h5")));
  std::ofstream(file("cfg.json")) << R"({"vocab_size": 256})";
  write_npy(file("t.npy"), Tensor(DType::kI32, {1, 6}));
  expect_bad_input(dsv4("run --config " + file("cfg.json") + " --tokens " + file("t.npy") + " --dump " + file("d.h5")),
                   "run", "'dim': missing");
}

TEST_F(CliConfig, ARunTooLargeForTheMachineIsRefusedWithTheEstimate) {
  write_npy(file("t.npy"), Tensor(DType::kI32, {1, 6}));
  std::ofstream(file("big.json")) << R"({"vocab_size": 16777216, "dim": 65536, "moe_inter_dim": 65536, "n_layers": 1,
      "n_mtp_layers": 0, "n_heads": 2, "n_routed_experts": 4096, "n_activated_experts": 2, "q_lora_rank": 128,
      "head_dim": 128, "rope_head_dim": 64, "o_groups": 2, "o_lora_rank": 64, "index_n_heads": 2,
      "index_head_dim": 64, "compress_ratios": [0]})";
  const auto r = dsv4("run --config " + file("big.json") + " --tokens " + file("t.npy") + " --dump " + file("d.h5"));
  expect_bad_input(r, "run", "not enough memory: dsv4 run of 1 x 6 tokens");
  EXPECT_NE(r.err.find("the weights (lower dim"), std::string::npos) << r.err;
  // The limit from the environment: even tiny does not fit 1 MB.
  ::setenv("DSV4_MEMORY_LIMIT", "1000000", 1);
  const auto g = dsv4("golden generate --config tiny --prompt-len 8 --out " + file("g.h5"));
  ::unsetenv("DSV4_MEMORY_LIMIT");
  expect_bad_input(g, "golden generate", "needs about");
  EXPECT_NE(g.err.find("1 MB available"), std::string::npos) << g.err;
  EXPECT_FALSE(std::filesystem::exists(file("g.h5")));
}

}  // namespace
}  // namespace dsv4
