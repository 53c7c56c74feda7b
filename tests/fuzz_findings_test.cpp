// Regression tests of what the golden and certify harnesses found (issue 14 items 7 and 8:
// oracle/fuzz/fuzz_golden, oracle/fuzz/fuzz_certify).
//
// fuzz_certify: a safetensors candidate's declarations (__metadata__ weights_content_sha256,
// config) were read through a reference into a destroyed temporary (SafetensorsFile::open(path)
// .metadata()): a stack use after scope on every such candidate — run under ASan (label
// `sanitize`), the test below fails without the fix.
//
// fuzz_certify: a candidate whose module input holds Inf (or values that overflow the reference's
// recomputation) made the local verdicts throw std::domain_error from the reference's exact sums
// (`dsv4 certify` exited 3, "internal error ... please report it") or std::invalid_argument from a
// module's input check ("gate: x: element 5 is not finite", naming no tensor). It is bad input
// naming the candidate tensor.
//
// fuzz_certify: the candidate's indexer lists and expert ids were cast from double to int32/int64
// unchecked (7e16: undefined behaviour, UBSan's float-cast-overflow).
//
// fuzz_golden: forged goldens. A golden edited
// and re-hashed consistently passes every hash check unless the user pins its manifest hash; what
// certify and diff then do with it must still be a verdict or a refusal (InputError, exit 2) naming
// the golden — never undefined behaviour, a crash, or an exception that names nothing:
//   - manifest integers that are floats (1e300 → int64: undefined behaviour) or past int64;
//   - manifest shapes whose element count overflows (certify multiplies the dimensions);
//   - a synthetic-weights seed that is not a decimal uint64 (std::stoull threw invalid_argument,
//     or took "-1" as 2^64 - 1);
//   - tokens outside the vocabulary, and steps that are not the run's plan (empty: front() of an
//     empty vector in diff's schedule), which the local verdicts' recomputation runs;
//   - exact/ and official/ outputs of different shapes (compute_metrics threw invalid_argument in
//     `golden verify` and certify).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "dsv4/compare/number_text.hpp"
#include "dsv4/diff/dump_getters.hpp"
#include "dsv4/golden/config_json.hpp"
#include "dsv4/golden/declarations.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/npz.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/io/tensor_source.hpp"
// The small model of the harnesses (oracle/fuzz/fuzz_golden_common.cpp): its golden takes about a second.
#include "../oracle/fuzz/small_model_config.hpp"
#ifdef DSV4_CLI_PATH  // the CLI runs (not in build-fuzz's fuzz_findings_asan_test)
#include "support/cli_process.hpp"
#endif

namespace dsv4 {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

class FuzzFindings : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("dsv4_golden_forged_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    GoldenGenerateOptions o;
    o.config = parse_config_json(fuzz::kSmallModelConfig, "small_model_config.hpp");
    o.weights = WeightsSpec{1, ""};
    o.tokens = synthetic_tokens(5, o.config.vocab_size, 1);
    o.decode_steps = 1;
    o.tokens_source = "synthetic_tokens(n=5, seed=1)";
    generate_golden(o, (dir_ / "g.h5").string());
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string file(const std::string& n) { return (dir_ / n).string(); }

  // A consistent forgery of g.h5: `edit_data` changes datasets, `edit_manifest` the manifest JSON;
  // then every listed dataset's sha256 and the root manifest_sha256 are recomputed.
  static std::string forge(const std::string& name,
                           const std::function<void(std::map<std::string, Tensor>&)>& edit_data,
                           const std::function<void(ojson&)>& edit_manifest) {
    const Hdf5File in = Hdf5File::open(file("g.h5"));
    ojson m = ojson::parse(in.read_string("manifest"));
    std::map<std::string, Tensor> data;
    for (const std::string& n : in.list_datasets())
      if (n != "manifest") data.emplace(n, in.read(n));
    if (edit_data) edit_data(data);
    if (edit_manifest) edit_manifest(m);
    for (ojson& e : m.at("datasets")) {
      const auto it = data.find(e.at("path").get<std::string>());
      if (it != data.end())
        e["sha256"] = sha256_hex(std::span<const std::byte>(it->second.bytes(), it->second.nbytes()));
    }
    const std::string text = m.dump(1);
    Hdf5File out = Hdf5File::create(file(name));
    for (const auto& [n, t] : data) out.write(n, t);
    out.write_string("manifest", text);
    out.set_attr("/", "dsv4_format", kGoldenFormatName);
    out.set_attr("/", "dsv4_format_version", kGoldenFormatVersion);
    out.set_attr("/", "manifest_sha256", sha256_hex(text));
    out.commit();
    return file(name);
  }

  static ojson& entry(ojson& m, const std::string& path) {
    for (ojson& e : m.at("datasets"))
      if (e.at("path") == path) return e;
    throw std::logic_error("no manifest entry " + path);
  }

  static inline fs::path dir_;
};

// The message of the InputError `f` throws ("" and a test failure when it throws none or another).
std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an InputError: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

// The message of the InputError diff_against_golden (on weights `w`) throws for a candidate .npz
// written at `npz` holding the golden's official tensors `names` (canonical names, in that order),
// changed by `edit` first.
std::string diff_refusal(const Golden& g, const ModelWeights& w, const std::string& npz,
                         const std::vector<std::string>& names, const std::function<void(std::vector<Tensor>&)>& edit) {
  std::vector<Tensor> kept;
  kept.reserve(names.size());
  std::vector<std::pair<std::string, const Tensor*>> members;
  for (const std::string& n : names) {
    kept.push_back(g.read("official/" + n));
    members.emplace_back(n, &kept.back());
  }
  edit(kept);
  write_npz(npz, members);
  const MappedTensorSource cand(TensorSource::open(npz), NameMap{});
  return input_error_of([&] { (void)diff::diff_against_golden(g, cand, w); });
}

TEST_F(FuzzFindings, TheUnforgedGoldenOpens) {  // the control: the checks below refuse only forgeries
  const std::string g = forge("same.h5", {}, {});
  EXPECT_TRUE(verify_golden(g).ok());
  const Golden opened = Golden::open_verified(g);
  EXPECT_EQ(opened.weights_seed(), std::optional<std::uint64_t>(1));
  EXPECT_EQ(opened.steps().size(), 2U);
}

TEST_F(FuzzFindings, AFloatOrHugeShapeIsRefusedAtOpen) {
  const std::string path = "exact/prefill/layers.1.attn/out";
  for (const ojson& dims : {ojson::parse("[1e300, 4, 128]"), ojson::parse("[4294967296, 4294967296, 128]"),
                            ojson::parse("[1, -4, 128]"), ojson::parse("[18446744073709551615, 1, 1]")}) {
    const std::string g = forge("shape.h5", {}, [&](ojson& m) { entry(m, path)["shape"] = dims; });
    const std::string msg = input_error_of([&] { (void)Golden::open_verified(g); });
    EXPECT_NE(msg.find(path), std::string::npos) << dims.dump() << ": " << msg;
    EXPECT_NE(msg.find("shape"), std::string::npos) << dims.dump() << ": " << msg;
    EXPECT_NE(input_error_of([&] { (void)Golden::open(g); }), "") << dims.dump();  // golden verify / inspect too
  }
}

TEST_F(FuzzFindings, AFloatStepPositionIsRefusedAtOpen) {
  const std::string g = forge("step.h5", {}, [](ojson& m) { m["inputs"]["steps"][1]["start_pos"] = 1e300; });
  EXPECT_NE(input_error_of([&] { (void)Golden::open(g); }).find("start_pos"), std::string::npos);
}

TEST_F(FuzzFindings, ASeedThatIsNotADecimalUint64IsBadInput) {
  for (const ojson& seed : {ojson("abc"), ojson("-1"), ojson(" 1"), ojson("18446744073709551616"), ojson(7)}) {
    const std::string g = forge("seed.h5", {}, [&](ojson& m) { m["weights"]["seed"] = seed; });
    const Golden opened = Golden::open_verified(g);
    const std::string msg = input_error_of([&] { (void)opened.weights_seed(); });
    EXPECT_NE(msg.find("weights.seed"), std::string::npos) << seed.dump() << ": " << msg;
  }
}

// A dsv4 run dump's root attribute weights_seed (an HDF5 candidate's declaration) was read with
// std::stoull: "-1" became 2^64 - 1 (and " 7" 7), a seed no dump declares. Refused by the parser
// of the manifest's seed (parse_seed_string): certify exits 2 with one line naming the attribute.
TEST_F(FuzzFindings, ADumpsWeightsSeedThatIsNotADecimalUint64IsBadInput) {
  const Golden g = Golden::open_verified(file("g.h5"));
  const Tensor norm = g.read("official/prefill/layers.1.attn_norm/out");
  const auto candidate = [&](const std::string& seed) {
    Hdf5File f = Hdf5File::create(file("seed_dump.h5"));
    f.write("prefill/layers.1.attn_norm/out", norm);
    f.set_attr("/", "weights", "synthetic");
    f.set_attr("/", "weights_seed", seed);
    f.commit();
    return file("seed_dump.h5");
  };
  {  // the control: the golden's seed is read and agrees
    const MappedTensorSource cand(TensorSource::open(candidate("1")), NameMap{});
    const CandidateDeclarations d = read_declarations(cand);
    EXPECT_EQ(d.weights_seed, std::optional<std::uint64_t>(1));
    EXPECT_TRUE(declaration_differences(g, d).empty());
  }
  for (const std::string seed : {"-1", " 7", "+7", "07", "18446744073709551616", "abc", ""}) {
    const MappedTensorSource cand(TensorSource::open(candidate(seed)), NameMap{});
    const std::string msg = input_error_of([&] { (void)read_declarations(cand); });
    EXPECT_NE(msg.find("attribute weights_seed"), std::string::npos) << "'" << seed << "': " << msg;
  }
#ifdef DSV4_CLI_PATH  // (not in build-fuzz's fuzz_findings_asan_test, which builds no CLI)
  // End to end: bad input, one line naming the attribute.
  const std::string err = file("seed_dump.err");
  const std::string cmd = std::string("'") + DSV4_CLI_PATH + "' certify --golden '" + file("g.h5") + "' --candidate '" +
                          candidate("-1") + "' > /dev/null 2> '" + err + "'";
  const int raw = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(raw));
  EXPECT_EQ(WEXITSTATUS(raw), 2);
  const std::string text = testing_support::read_file(err);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_NE(text.find("attribute weights_seed '-1'"), std::string::npos) << text;
#endif
}

TEST_F(FuzzFindings, TokensOutsideTheVocabularyAreRefusedBeforeJudging) {
  const std::string g = forge("tokens.h5",
                              [](std::map<std::string, Tensor>& d) {
                                d.at("inputs/tokens").values<std::int64_t>()[2] = 1000;  // vocab 64
                              },
                              {});
  const std::string msg = input_error_of([&] { (void)Golden::open_verified(g); });
  EXPECT_NE(msg.find("outside the vocabulary"), std::string::npos) << msg;
}

TEST_F(FuzzFindings, StepsThatAreNotTheRunsPlanAreRefusedBeforeJudging) {
  const std::string empty = forge("nosteps.h5", {}, [](ojson& m) { m["inputs"]["steps"] = ojson::array(); });
  EXPECT_NE(input_error_of([&] { (void)Golden::open_verified(empty); }).find("inputs.steps is empty"),
            std::string::npos);
  const std::string shifted = forge("shifted.h5", {}, [](ojson& m) { m["inputs"]["steps"][0]["length"] = 3; });
  EXPECT_NE(input_error_of([&] { (void)Golden::open_verified(shifted); }).find("not the run's"), std::string::npos);
  const std::string many = forge("many.h5", {}, [](ojson& m) {
    for (int i = 1; i < 6; ++i) m["inputs"]["steps"].push_back(m["inputs"]["steps"][1]);
  });
  EXPECT_NE(input_error_of([&] { (void)Golden::open_verified(many); }).find("inputs.steps"), std::string::npos);
}

// `dsv4 golden verify` said OK to a re-hashed golden with tokens outside the vocabulary or steps
// that are not the run's plan, which open_verified (certify, diff) refuses: verify now reports
// them by the same checks (judging_problems in golden.cpp), with the message open_verified gives.
void expect_verify_reports(const std::string& g, const std::string& dataset, const std::string& what) {
  const GoldenVerifyResult r = verify_golden(g);
  const auto it = std::find_if(r.problems.begin(), r.problems.end(), [&](const GoldenProblem& p) {
    return p.dataset == dataset && p.what.find(what) != std::string::npos;
  });
  ASSERT_NE(it, r.problems.end()) << "golden verify: no problem '" << dataset << ": ..." << what << "' among "
                                  << r.problems.size();
  const std::string refused = input_error_of([&] { (void)Golden::open_verified(g); });
  EXPECT_NE(refused.find(dataset + ": " + it->what), std::string::npos) << refused;
}

TEST_F(FuzzFindings, GoldenVerifyReportsTokensOutsideTheVocabulary) {
  const std::string g =
      forge("verify_tokens.h5",
            [](std::map<std::string, Tensor>& d) { d.at("inputs/tokens").values<std::int64_t>()[3] = -5; }, {});
  expect_verify_reports(g, "inputs/tokens", "token id -5 at [0, 3] is outside the vocabulary [0, 64)");
}

TEST_F(FuzzFindings, GoldenVerifyReportsStepsThatAreNotTheRunsPlan) {
  // start_pos (which the inputs/start_pos dataset repeats) unchanged: only the plan check sees these.
  const std::string longer = forge("verify_len.h5", {}, [](ojson& m) { m["inputs"]["steps"][0]["length"] = 3; });
  expect_verify_reports(longer, "manifest", "inputs.steps: step 0 is not the run's (prefill at 0, 4 tokens, mtp");
  const std::string no_mtp = forge("verify_mtp.h5", {}, [](ojson& m) { m["inputs"]["steps"][0]["mtp"] = false; });
  expect_verify_reports(no_mtp, "manifest", "inputs.steps: step 0 is not the run's");
  const std::string renamed =
      forge("verify_name.h5", {}, [](ojson& m) { m["inputs"]["steps"][1]["step"] = "decode7"; });
  expect_verify_reports(renamed, "manifest", "inputs.steps: step 1 is not the run's (decode0 at 4, 1 tokens");
}

TEST_F(FuzzFindings, ExactAndOfficialOfDifferentShapesAreAProblemNotAnException) {
  const std::string name = "prefill/layers.1.attn/out";
  const std::string g = forge(
      "twins.h5",
      [&](std::map<std::string, Tensor>& d) {
        const Tensor& x = d.at("official/" + name);
        Tensor shorter(x.dtype(), {x.numel() - 1});
        std::copy_n(x.bytes(), shorter.nbytes(), shorter.bytes());
        d["official/" + name] = std::move(shorter);
      },
      [&](ojson& m) { entry(m, "official/" + name)["shape"] = ojson::array({511}); });
  GoldenVerifyResult r;
  EXPECT_NO_THROW(r = verify_golden(g));  // compute_metrics threw std::invalid_argument here
  EXPECT_FALSE(r.ok());
  const std::string msg = input_error_of([&] { (void)Golden::open_verified(g); });
  EXPECT_NE(msg.find("official/ counterpart"), std::string::npos) << msg;
}

TEST_F(FuzzFindings, SafetensorsMetadataDeclarationsAreRead) {
  const Golden g = Golden::open_verified(file("g.h5"));
  const Tensor out = g.read("official/prefill/layers.1.attn/out");
  SafetensorsWriteOptions o;
  o.metadata["weights_content_sha256"] = std::string(64, 'a');
  o.metadata["config"] = config_to_json(g.config());  // the golden's: no difference
  write_safetensors(file("cand.safetensors"), {{"prefill/layers.1.attn/out", &out}}, o);
  const MappedTensorSource cand(TensorSource::open(file("cand.safetensors")), NameMap{});
  const CandidateDeclarations d = read_declarations(cand);
  ASSERT_TRUE(d.weights_content_sha256.has_value());
  EXPECT_EQ(*d.weights_content_sha256, std::string(64, 'a'));
  EXPECT_EQ(d.weights_where, "metadata weights_content_sha256");
  ASSERT_TRUE(d.config_json.has_value());
  EXPECT_EQ(*d.config_json, config_to_json(g.config()));
  const std::vector<std::string> diffs = declaration_differences(g, d);
  ASSERT_EQ(diffs.size(), 1U);  // the weights only
  EXPECT_NE(diffs.front().find("metadata weights_content_sha256"), std::string::npos) << diffs.front();
}

TEST_F(FuzzFindings, ACandidateInputTheReferenceCannotComputeWithIsBadInputNamingTheTensor) {
  const Golden g = Golden::open_verified(file("g.h5"));
  const ModelWeights w = make_weights(g.config(), WeightsSpec{1, ""});
  // Inf (std::domain_error from an exact sum), NaN, and a finite value whose square overflows.
  for (const double bad : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN(), 1e300}) {
    const std::string msg =
        diff_refusal(g, w, file("bad.npz"), {"prefill/layers.0/out", "prefill/layers.1.attn_norm/out"},
                     [bad](std::vector<Tensor>& t) { t[0].values<double>()[5] = bad; });
    EXPECT_NE(msg.find("prefill/layers.0/out"), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find("cannot be recomputed from the candidate's values"), std::string::npos) << bad << ": " << msg;
  }
}

// The MoE site's candidate inputs (ffn_norm/out, the routing weights gate/out0, the expert ids
// gate/out1) were read unchecked: Inf or NaN routing weights reached the combine, whose failure was
// blamed on the last tensor another module had fetched (ffn_norm/out). A non-finite routing weight
// is now bad input naming gate/out0, as at every other site.
TEST_F(FuzzFindings, NonFiniteRoutingWeightsAtTheMoeAreBadInputNamingThem) {
  const Golden g = Golden::open_verified(file("g.h5"));
  const ModelWeights w = make_weights(g.config(), WeightsSpec{1, ""});
  const std::vector<std::string> names = {"prefill/layers.0/out", "prefill/layers.1.ffn_norm/out",
                                          "prefill/layers.1.ffn.gate/out0", "prefill/layers.1.ffn.gate/out1"};
  for (const double bad : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    const std::string msg = diff_refusal(g, w, file("moe_bad.npz"), names,
                                         [bad](std::vector<Tensor>& t) { t[2].values<double>()[3] = bad; });
    EXPECT_EQ(msg.rfind("prefill/layers.1.ffn.gate/out0: element 3 is " + compare::num(bad), 0), 0U) << msg;
  }
}

// A finite candidate input whose recomputation overflows was blamed on the tensor last fetched by
// any module (for the MoE: ffn_norm/out, fetched by the gate), not on what overflowed. Now the
// message names the module whose recomputation overflowed and every candidate tensor it was
// recomputed from, and says plainly that they are finite.
TEST_F(FuzzFindings, AnOverflowNamesTheModuleRecomputedAndItsInputs) {
  const Golden g = Golden::open_verified(file("g.h5"));
  const ModelWeights w = make_weights(g.config(), WeightsSpec{1, ""});
  const std::vector<std::string> names = {"prefill/layers.0/out", "prefill/layers.1.ffn_norm/out",
                                          "prefill/layers.1.ffn.gate/out0", "prefill/layers.1.ffn.gate/out1"};
  const std::string msg = diff_refusal(g, w, file("moe_overflow.npz"), names, [](std::vector<Tensor>& t) {
    for (double& v : t[2].values<double>()) v = std::numeric_limits<double>::max();  // finite weights
  });
  EXPECT_EQ(
      msg.rfind("prefill/layers.1.ffn: a module cannot be recomputed from the candidate's values: its inputs (" +
                    names[1] + ", " + names[2] + ", " + names[3] + ") are finite, but the recomputation overflows",
                0),
      0U)
      << msg;
}

TEST_F(FuzzFindings, CandidateIndicesOutsideInt32AreBadInputNamingTheTensor) {
  const Golden g = Golden::open_verified(file("g.h5"));
  const ModelWeights w = make_weights(g.config(), WeightsSpec{1, ""});
  // The ids first, then the inputs the block needs to be recomputed at all (layers.0/out, …).
  const auto refused = [&](const std::string& ids_name, std::vector<std::string> others) {
    others.insert(others.begin(), ids_name);
    return diff_refusal(g, w, file("ids.npz"), others, [](std::vector<Tensor>& t) {
      t[0].values<std::int64_t>()[0] = 70000000000000000;  // 7e16: its int32 cast was undefined behaviour
    });
  };
  const std::string lists =
      refused("prefill/layers.1.attn.indexer/out", {"prefill/layers.0/out", "prefill/layers.1.attn_norm/out"});
  EXPECT_NE(lists.find("prefill/layers.1.attn.indexer/out"), std::string::npos) << lists;
  EXPECT_NE(lists.find("not an index"), std::string::npos) << lists;
  const std::string experts =
      refused("prefill/layers.1.ffn.gate/out1",
              {"prefill/layers.0/out", "prefill/layers.1.ffn_norm/out", "prefill/layers.1.ffn.gate/out0"});
  EXPECT_NE(experts.find("prefill/layers.1.ffn.gate/out1"), std::string::npos) << experts;
  EXPECT_NE(experts.find("not an index"), std::string::npos) << experts;
}

}  // namespace
}  // namespace dsv4
