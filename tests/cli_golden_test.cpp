// `dsv4 golden generate|verify|inspect` end to end: the golden holds the in-process exact and
// official runs bit for bit with correct hashes; verify names a tampered dataset (exit 1) and refuses
// truncated or foreign files (exit 2); inspect summarises; verify --recompute re-derives the official
// values bit for bit and names the first one that differs; --recompute-only spot-checks the selected
// modules, each from the golden's own recorded inputs.
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/golden/recompute.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

using CliGolden = testing_support::CliDir;

std::string read_all(const std::string& p) { return testing_support::read_file(p); }
void write_all(const std::string& p, const std::string& s) {
  std::ofstream o(p, std::ios::binary);
  o << s;
}

TEST_F(CliGolden, GeneratedGoldenHoldsBothModesBitForBitAndVerifies) {
  auto r = dsv4("golden generate --config tiny --seed 2 --prompt-len 5 --decode-steps 2 --out " + file("g.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  r = dsv4("golden verify " + file("g.h5"));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("OK"), std::string::npos);

  const Golden g = Golden::open(file("g.h5"));
  const ModelConfig c = builtin_config("tiny");
  const auto toks = synthetic_tokens(7, c.vocab_size, 1);
  ASSERT_EQ(g.tokens(), toks);
  ASSERT_EQ(g.steps().size(), 3u);
  EXPECT_EQ(g.steps()[2].start_pos, 6);
  for (Mode m : {Mode::kExact, Mode::kOfficial}) {
    const Transformer model(Precision(m), c, ModelWeights::synthetic(c, 2));
    MemoryRecorder rec;
    run_plan(model, toks, plan_steps(c, 1, 7, 2), rec);
    std::int64_t checked = 0;
    for (const auto& [name, t] : rec.entries()) {
      const std::vector<double> v = g.values(mode_name(m), name);
      ASSERT_EQ(v.size(), t.values.size()) << name;
      for (std::size_t i = 0; i < v.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint64_t>(v[i]), std::bit_cast<std::uint64_t>(t.values[i]))
            << mode_name(m) << " " << name << " element " << i;
      ++checked;
    }
    // Every recorded output is in the golden, plus the golden's own choice scores.
    std::int64_t in_golden = 0;
    for (const std::string& n : g.canonical_names()) in_golden += n.find("/choice_scores") == std::string::npos;
    EXPECT_EQ(checked, in_golden);
  }
  // Hash of one dataset recomputed here from its values (little-endian float64 bytes).
  const GoldenEntry* e = g.find("official/decode1/head/out");
  ASSERT_NE(e, nullptr);
  const std::vector<double> v = g.values("official", "decode1/head/out");
  EXPECT_EQ(e->sha256, sha256_hex(std::as_bytes(std::span<const double>(v))));
  EXPECT_EQ(e->role, GoldenRole::kValue);
  EXPECT_EQ(g.find("exact/prefill/layers.4.ffn.gate/out1")->role, GoldenRole::kDiscrete);
  EXPECT_EQ(g.find("exact/prefill/layers.4.ffn.gate/choice_scores")->role, GoldenRole::kDecision);
  EXPECT_EQ(g.find("exact/prefill/layers.1.ffn.gate/choice_scores"), nullptr);  // hash-routed layer
}

TEST_F(CliGolden, TamperedDatasetFailsNamingIt) {
  ASSERT_EQ(dsv4("golden generate --config tiny --seed 2 --prompt-len 4 --decode-steps 1 --out " + file("g.h5")).status,
            0);
  // hc_attn/post of one decode row is 4 float64 values, stored contiguously (below the gzip size):
  // find its 32 bytes in the file and flip the lowest mantissa bit of the first value.
  const std::string victim = "exact/decode0/layers.3.hc_attn/post";
  const Tensor t = Hdf5File::open(file("g.h5")).read(victim);
  ASSERT_EQ(t.nbytes(), 32u);
  std::string bytes = read_all(file("g.h5"));
  const std::string needle(reinterpret_cast<const char*>(t.bytes()), t.nbytes());
  const auto at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(bytes.find(needle, at + 1), std::string::npos) << "the pattern must be unique";
  bytes[at] = static_cast<char>(bytes[at] ^ 1);
  write_all(file("t.h5"), bytes);
  const auto r = dsv4("golden verify " + file("t.h5"));
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("FAIL " + victim + ": SHA-256 mismatch"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find(victim), std::string::npos) << r.err;
  // Exactly two problems, both naming it: its hash, and the manifest's official-error figures of
  // that tensor, which no longer describe the data.
  EXPECT_NE(r.out.find("2 problem(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FAIL manifest: tolerance.tensors.decode0/layers.3.hc_attn/post disagrees with the data"),
            std::string::npos)
      << r.out;

  // The manifest changed (one character of its JSON) is named as the manifest.
  std::string m = read_all(file("g.h5"));
  const auto p = m.find("\"generator\": \"dsv4 0.1.0\"");
  ASSERT_NE(p, std::string::npos);
  m[p + 20] = '9';
  write_all(file("m.h5"), m);
  const auto rm = dsv4("golden verify " + file("m.h5"));
  EXPECT_EQ(rm.status, 1) << rm.out << rm.err;
  EXPECT_NE(rm.out.find("FAIL manifest"), std::string::npos) << rm.out;
}

TEST_F(CliGolden, TruncatedOrForeignFilesAreBadInput) {
  ASSERT_EQ(dsv4("golden generate --config tiny --seed 2 --prompt-len 4 --decode-steps 1 --out " + file("g.h5")).status,
            0);
  const std::string bytes = read_all(file("g.h5"));
  write_all(file("half.h5"), bytes.substr(0, bytes.size() / 2));
  expect_bad_input(dsv4("golden verify " + file("half.h5")), "golden verify", "half.h5");
  write_all(file("text.h5"), "not an hdf5 file\n");
  expect_bad_input(dsv4("golden verify " + file("text.h5")), "golden verify", "text.h5");
  expect_bad_input(dsv4("golden verify " + file("none.h5")), "golden verify", "none.h5");
  {
    Hdf5File f = Hdf5File::create(file("other.h5"));
    f.write("x", Tensor(DType::kF64, {2}));
    f.commit();
  }
  expect_bad_input(dsv4("golden verify " + file("other.h5")), "golden verify", "not a dsv4 golden");
  expect_bad_input(dsv4("golden inspect " + file("other.h5")), "golden inspect", "not a dsv4 golden");
  // generate: bad arguments.
  expect_bad_input(dsv4("golden generate --config tiny --out " + file("x.h5")), "golden generate", "--prompt-len");
  expect_bad_input(dsv4("golden generate --config tiny --prompt-len 4 --decode-steps -1 --out " + file("x.h5")),
                   "golden generate", "--decode-steps");
  expect_bad_input(dsv4("golden generate --config tiny --prompt-len 600 --out " + file("x.h5")), "golden generate",
                   "max_seq_len");
  EXPECT_FALSE(std::filesystem::exists(file("x.h5")));
}

TEST_F(CliGolden, InspectSummarises) {
  ASSERT_EQ(dsv4("golden generate --config tiny --seed 2 --prompt-len 4 --decode-steps 1 --out " + file("g.h5")).status,
            0);
  auto r = dsv4("golden inspect " + file("g.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("config      tiny: 6 layers (+1 MTP)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("prefill(pos 0, 4 tok, mtp) decode0(pos 4, 1 tok)"), std::string::npos) << r.out;
  r = dsv4("golden inspect --json --tensors " + file("g.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("format_version"), 1);
  EXPECT_EQ(j.at("weights").at("seed"), "2");
  EXPECT_EQ(j.at("tensors").size(), j.at("datasets").get<std::size_t>());
}

// --recompute (issue 18 item 2) --------------------------------------------------------------

const std::string kCommitted = std::string(DSV4_SOURCE_DIR) + "/goldens/tiny-s1-p6-d2.h5";

// A copy of golden `from` with `edit` applied to dataset `victim`, made consistent again as a
// forger would: the dataset's SHA-256 and (a value tensor) its tolerance figures recomputed, the
// manifest resealed (seal_golden) — so that golden verify's hash checks pass and only recomputing
// the values can tell.
void forged_copy(const std::string& from, const std::string& to, const std::string& victim,
                 const std::function<void(Tensor&)>& edit) {
  const Golden g = Golden::open(from);
  auto manifest = nlohmann::ordered_json::parse(g.manifest_text());
  Hdf5File out = Hdf5File::create(to);
  bool found = false;
  for (const std::string& n : g.file().list_datasets()) {
    if (n == "manifest") continue;
    Tensor t = g.file().read(n);
    if (n == victim) {
      found = true;
      edit(t);
      for (auto& e : manifest.at("datasets"))
        if (e.at("path") == n) e["sha256"] = sha256_hex(std::span<const std::byte>(t.bytes(), t.nbytes()));
      const std::string canonical = n.substr(n.find('/') + 1);
      auto& tol = manifest.at("tolerance").at("tensors");
      if (tol.contains(canonical)) {
        const auto v = t.values<double>();
        tol[canonical] = nlohmann::ordered_json::parse(
            golden_tolerance_json(g.values("exact", canonical), std::vector<double>(v.begin(), v.end())));
      }
    }
    out.write(n, t);
  }
  ASSERT_TRUE(found) << victim;
  seal_golden(out, manifest.dump(1));
}

// forged_copy whose edit negates one official value (it stays on its grid): the first nonzero
// element from index 300 of `victim`, a [1, 6, 256] output. Gives its index and the FAIL line the
// recompute must print for it (coordinate, stored and recomputed values).
struct ForgedNegation {
  std::int64_t at = -1;
  std::string fail_line;
};
ForgedNegation forged_negation(const std::string& from, const std::string& to, const std::string& victim) {
  ForgedNegation f;
  double was = 0;
  forged_copy(from, to, victim, [&](Tensor& t) {
    auto v = t.values<double>();
    for (std::int64_t i = 300; f.at < 0; ++i)
      if (v[static_cast<std::size_t>(i)] != 0) f.at = i;
    was = v[static_cast<std::size_t>(f.at)];
    v[static_cast<std::size_t>(f.at)] = -was;
  });
  char vals[256];
  std::snprintf(vals, sizeof vals, "stored %.17g (%a), recomputed %.17g (%a) (1 elements differ)", -was, -was, was,
                was);
  f.fail_line =
      "FAIL " + victim + " at [0, " + std::to_string(f.at / 256) + ", " + std::to_string(f.at % 256) + "]: " + vals;
  return f;
}

// The official outputs of a golden and their elements.
std::pair<std::int64_t, std::int64_t> official_counts(const Golden& g) {
  std::int64_t official = 0, values = 0;
  for (const GoldenEntry& e : g.entries()) {
    if (e.path.rfind("official/", 0) != 0) continue;
    ++official;
    std::int64_t n = 1;
    for (const auto d : e.shape) n *= d;
    values += n;
  }
  return {official, values};
}

TEST_F(CliGolden, RecomputeOfTheCommittedGoldenIsBitIdentical) {
  const auto r = dsv4("golden verify --recompute " + kCommitted);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("OK (" + std::to_string(Golden::open(kCommitted).entries().size()) + " datasets"),
            std::string::npos)
      << r.out;
  // Every official/ output of the golden recomputed: as many as the golden lists.
  const auto [official, values] = official_counts(Golden::open(kCommitted));
  ASSERT_GT(official, 300);
  EXPECT_NE(
      r.out.find("recompute OK on cpu (official values of the golden computed by cpu): " + std::to_string(official) +
                 " official outputs, " + std::to_string(values) + " values bit-identical"),
      std::string::npos)
      << r.out;
}

TEST_F(CliGolden, RecomputeNamesAForgedOfficialValue) {
  // One official value negated (it stays on its grid), the golden resealed: verify passes, the
  // recompute names the output, the coordinate and both values.
  const std::string victim = "official/prefill/layers.0.attn/out";  // [1, 6, 256]
  const ForgedNegation forged = forged_negation(kCommitted, file("f.h5"), victim);
  ASSERT_GE(forged.at, 300);
  const auto plain = dsv4("golden verify " + file("f.h5"));
  ASSERT_EQ(plain.status, 0) << "the forge must pass the hash checks: " << plain.out;
  const auto r = dsv4("golden verify --recompute " + file("f.h5"));
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  const std::string& line = forged.fail_line;
  EXPECT_NE(r.out.find(line), std::string::npos) << "expected '" << line << "' in:\n" << r.out;
  EXPECT_NE(r.out.find("recompute FAILED on cpu"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(": 1 of "), std::string::npos) << r.out;
  // stderr: one progress line per step, then the verdict naming the output.
  EXPECT_NE(r.err.find("dsv4 golden verify: recomputed decode1\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("recompute FAILED: " + victim + " at ["), std::string::npos) << r.err;

  // A discrete output (expert ids, int64; no tolerance figures) changed the same way is named too.
  const std::string ids = "official/decode1/layers.3.ffn.gate/out1";
  forged_copy(kCommitted, file("e.h5"), ids, [](Tensor& t) {
    auto v = t.values<std::int64_t>();
    v[1] = (v[1] + 1) % 8;  // tiny: 8 routed experts
  });
  ASSERT_EQ(dsv4("golden verify " + file("e.h5")).status, 0);
  const auto re = dsv4("golden verify --recompute " + file("e.h5"));
  EXPECT_EQ(re.status, 1) << re.out << re.err;
  EXPECT_NE(re.out.find("FAIL " + ids + " at [0, 0, 1]: stored "), std::string::npos) << re.out;
}

TEST_F(CliGolden, RecomputeOptionsAreChecked) {
  expect_bad_input(dsv4("golden verify --device gpu " + kCommitted), "golden verify", "--recompute");
  expect_bad_input(dsv4("golden verify --recompute --device tpu " + kCommitted), "golden verify", "--device");
}

// --recompute-only (issue 18 item 2: spot checks) --------------------------------------------

TEST_F(CliGolden, SpotCheckOfEveryModuleIsTheFullRecomputeBitForBit) {
  // Every module recomputed from the golden's own recorded inputs (no forward) gives the stored
  // official bits: as many outputs and values as the whole recompute compares.
  const auto [official, values] = official_counts(Golden::open(kCommitted));
  const auto r = dsv4("golden verify --recompute-only '*' " + kCommitted);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("spot check OK (--recompute-only '*', official values of the golden computed by cpu): " +
                       std::to_string(official) + " official outputs of 81 modules (embed, layers.0.hc_attn, "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("in 3 steps (prefill, decode0, decode1), each recomputed on the cpu from the golden's own "
                       "recorded inputs; 0 other official outputs not checked; " +
                       std::to_string(values) + " values bit-identical"),
            std::string::npos)
      << r.out;
}

TEST_F(CliGolden, SpotCheckSelection) {
  const RecomputeSelection s = parse_recompute_selection("layers.1, prefill/layers.*.ffn,decode*/head");
  ASSERT_EQ(s.selectors.size(), 3u);
  const auto& [one, ffn, head] = std::tie(s.selectors[0], s.selectors[1], s.selectors[2]);
  EXPECT_TRUE(recompute_selects(one, "decode0/layers.1.attn.indexer/out"));  // a module inside layers.1
  EXPECT_TRUE(recompute_selects(one, "prefill/layers.1/out"));               // layers.1 itself
  EXPECT_FALSE(recompute_selects(one, "prefill/layers.10.attn/out"));        // not inside layers.1
  EXPECT_FALSE(recompute_selects(one, "prefill/layers.0/out"));
  EXPECT_TRUE(recompute_selects(ffn, "prefill/layers.3.ffn.gate/out1"));
  EXPECT_TRUE(recompute_selects(ffn, "prefill/layers.0.ffn/out"));
  EXPECT_FALSE(recompute_selects(ffn, "decode0/layers.0.ffn/out"));  // another step
  EXPECT_FALSE(recompute_selects(ffn, "prefill/layers.0.ffn_norm/out"));
  EXPECT_TRUE(recompute_selects(head, "decode1/head/out"));
  EXPECT_FALSE(recompute_selects(head, "prefill/head/out"));
  EXPECT_FALSE(recompute_selects(head, "decode1/mtp.0.head/out"));
  // Selected outputs, in execution order.
  const Golden g = Golden::open(kCommitted);
  std::int64_t official = 0;
  const std::vector<std::string> sel =
      recompute_selected_outputs(g, parse_recompute_selection("decode1/layers.2.attn.indexer"), &official);
  EXPECT_EQ(sel, (std::vector<std::string>{"decode1/layers.2.attn.indexer/scores", "decode1/layers.2.attn.indexer/out",
                                           "decode1/layers.2.attn.indexer/margin"}));
  EXPECT_EQ(official, official_counts(g).first);
}

TEST_F(CliGolden, SpotCheckFailsInsideTheSelectionOnly) {
  // One official value negated and the golden resealed (as RecomputeNamesAForgedOfficialValue).
  const std::string victim = "official/prefill/layers.0.attn/out";  // [1, 6, 256]
  const ForgedNegation forged = forged_negation(kCommitted, file("f.h5"), victim);
  ASSERT_GE(forged.at, 300);
  ASSERT_EQ(dsv4("golden verify " + file("f.h5")).status, 0) << "the forge must pass the hash checks";
  const std::string& line = forged.fail_line;
  // Inside the selection: named with its coordinate and both values, exit 1.
  for (const std::string sel : {"layers.0", "prefill/layers.0.attn", "*"}) {
    const auto r = dsv4("golden verify --recompute-only '" + sel + "' " + file("f.h5"));
    EXPECT_EQ(r.status, 1) << sel << r.out << r.err;
    EXPECT_NE(r.out.find(line), std::string::npos) << "expected '" << line << "' in:\n" << r.out;
    EXPECT_NE(r.out.find("spot check FAILED (--recompute-only '" + sel + "'"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("spot check FAILED: " + victim + " at ["), std::string::npos) << r.err;
  }
  // Outside it: not checked, and the report says what was.
  const auto out = dsv4("golden verify --recompute-only layers.1 " + file("f.h5"));
  EXPECT_EQ(out.status, 0) << out.out << out.err;
  EXPECT_NE(out.out.find("spot check OK (--recompute-only 'layers.1', official values of the golden computed by "
                         "cpu): 57 official outputs of 10 modules (layers.1.hc_attn, layers.1.attn_norm, "
                         "layers.1.attn.q_norm, layers.1.attn, layers.1.attn.wo_a, layers.1.hc_ffn, "
                         "layers.1.ffn_norm, layers.1.ffn.gate, layers.1.ffn, layers.1) in 3 steps (prefill, decode0, "
                         "decode1)"),
            std::string::npos)
      << out.out;
  EXPECT_NE(out.out.find(std::to_string(official_counts(Golden::open(kCommitted)).first - 57) +
                         " other official outputs not checked"),
            std::string::npos)
      << out.out;
  // layer 0 in decode0: its attention's cache is rebuilt from the prefill's recorded inputs (the
  // forged prefill output is not one of them) and nothing it compares was forged.
  EXPECT_EQ(dsv4("golden verify --recompute-only decode0/layers.0 " + file("f.h5")).status, 0);

  // A discrete output (expert ids) forged: its gate names it; the MoE combine that reads it does not
  // see it as wrong by itself (the combine of the forged routing differs from the stored out).
  const std::string ids = "official/decode1/layers.3.ffn.gate/out1";
  forged_copy(kCommitted, file("e.h5"), ids, [](Tensor& t) {
    auto v = t.values<std::int64_t>();
    v[1] = (v[1] + 1) % 8;  // tiny: 8 routed experts
  });
  const auto re = dsv4("golden verify --recompute-only decode1/layers.3.ffn.gate " + file("e.h5"));
  EXPECT_EQ(re.status, 1) << re.out << re.err;
  EXPECT_NE(re.out.find("FAIL " + ids + " at [0, 0, 1]: stored "), std::string::npos) << re.out;
  EXPECT_EQ(dsv4("golden verify --recompute-only 'prefill/layers.3,decode0/*' " + file("e.h5")).status, 0);
}

// A copy of golden `from` without output `canonical` (exact/ and official/, its manifest entries and
// tolerance figures), resealed: a golden that lacks a module's input but passes golden verify.
void copy_without(const std::string& from, const std::string& to, const std::string& canonical) {
  const Golden g = Golden::open(from);
  auto manifest = nlohmann::ordered_json::parse(g.manifest_text());
  auto& ds = manifest.at("datasets");
  nlohmann::ordered_json kept = nlohmann::ordered_json::array();
  for (const auto& e : ds)
    if (e.at("path") != "exact/" + canonical && e.at("path") != "official/" + canonical) kept.push_back(e);
  ASSERT_EQ(kept.size() + 2, ds.size()) << canonical;
  ds = kept;
  manifest.at("tolerance").at("tensors").erase(canonical);
  Hdf5File out = Hdf5File::create(to);
  for (const std::string& n : g.file().list_datasets())
    if (n != "manifest" && n != "exact/" + canonical && n != "official/" + canonical) out.write(n, g.file().read(n));
  seal_golden(out, manifest.dump(1));
}

TEST_F(CliGolden, SpotCheckOptionsAndMissingInputsAreBadInput) {
  for (const std::string sel : {"layers.9", "foo/layers.1", "layers.1,nothing"})
    expect_bad_input(dsv4("golden verify --recompute-only '" + sel + "' " + kCommitted), "golden verify",
                     "--recompute-only: '" + sel.substr(sel.find(',') + 1) + "' selects no official output");
  for (const std::string sel : {"", "layers.1,", "a/b/c", "/head"})
    expect_bad_input(dsv4("golden verify --recompute-only '" + sel + "' " + kCommitted), "golden verify",
                     "is not a selector");
  expect_bad_input(dsv4("golden verify --recompute-only layers.1 --device gpu " + kCommitted), "golden verify",
                   "spot checks run on the CPU");
  expect_bad_input(dsv4("golden verify --recompute --recompute-only layers.1 " + kCommitted), "golden verify",
                   "--recompute-only");
  // A golden without a module's input (resealed, so golden verify passes): the modules that read it
  // cannot be spot-checked — exit 2 naming it; others still can.
  copy_without(kCommitted, file("m.h5"), "prefill/layers.1.attn_norm/out");
  ASSERT_EQ(dsv4("golden verify " + file("m.h5")).status, 0) << "the copy must pass golden verify";
  const auto r = dsv4("golden verify --recompute-only prefill/layers.1.attn " + file("m.h5"));
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("--recompute-only: the golden lacks inputs of the selected modules: "
                       "official/prefill/layers.1.attn_norm/out\n"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  // decode0's attention needs the prefill's cache, built from the missing input.
  EXPECT_EQ(dsv4("golden verify --recompute-only decode0/layers.1.attn " + file("m.h5")).status, 2);
  EXPECT_EQ(dsv4("golden verify --recompute-only layers.2 " + file("m.h5")).status, 0);
}

// --exact-layers (issue 18): the exact side limited to what is asked --------------------------

// none: no exact run at all — official values and decisions of every output, no exact/ and no
// tolerance figures, the manifest saying so; the golden verifies, recomputes on the CPU bit for bit
// (whole and spot checks), and inspect says what it holds. A selection keeps the exact values of
// the selected modules only.
TEST_F(CliGolden, ExactLayersNoneWritesOfficialValuesOnlyAndIsProvedOnTheCpu) {
  const std::string gen = "golden generate --config tiny --seed 1 --prompt-len 6 --decode-steps 2 --exact-layers ";
  auto r = dsv4(gen + "none --out " + file("n.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("exact values of 0 of "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("exact 0.00 s"), std::string::npos) << r.out;                              // no exact run
  EXPECT_NE(r.err.find("dsv4 golden: official prefill layers.3 ("), std::string::npos) << r.err;  // per layer
  const Golden n = Golden::open_verified(file("n.h5"));
  EXPECT_TRUE(n.exact_coverage().none());
  std::int64_t exact = 0, official = 0;
  for (const GoldenEntry& e : n.entries()) {
    exact += e.path.rfind("exact/", 0) == 0;
    official += e.path.rfind("official/", 0) == 0;
  }
  EXPECT_EQ(exact, 0);
  EXPECT_GT(official, 400);
  const auto man = nlohmann::json::parse(n.manifest_text());
  EXPECT_EQ(man.at("exact_values").at("selection"), "none");
  EXPECT_EQ(man.at("exact_values").at("outputs"), 0);
  EXPECT_EQ(man.at("exact_values").at("official_only_outputs"), official);
  EXPECT_TRUE(man.at("tolerance").at("tensors").empty());
  EXPECT_EQ(Golden::open(kCommitted).exact_coverage().text(), "all");  // no exact_values: all
  // Every official value is the committed golden's (the same run), bit for bit.
  const Golden full = Golden::open(kCommitted);
  for (const std::string& name : n.canonical_names())
    ASSERT_EQ(n.read("official/" + name).nbytes(), full.read("official/" + name).nbytes()) << name;
  for (const std::string& name : n.canonical_names()) {
    const Tensor a = n.read("official/" + name), b = full.read("official/" + name);
    ASSERT_EQ(std::memcmp(a.bytes(), b.bytes(), a.nbytes()), 0) << name;
  }
  EXPECT_EQ(dsv4("golden verify " + file("n.h5")).status, 0);
  r = dsv4("golden verify --recompute " + file("n.h5"));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  r = dsv4("golden verify --recompute-only layers.2 " + file("n.h5"));
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("spot check OK"), std::string::npos) << r.out;
  r = dsv4("golden inspect " + file("n.h5"));
  EXPECT_NE(r.out.find("exact       only for --exact-layers 'none' (0 outputs;"), std::string::npos) << r.out;
  r = dsv4("golden inspect --tensors " + file("n.h5"));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("(no exact values)"), std::string::npos) << r.out;

  // A selection: exact values of the selected modules only, each the committed golden's bit for bit.
  r = dsv4(gen + "'layers.1,decode1/head' --out " + file("s.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  const Golden s = Golden::open_verified(file("s.h5"));
  std::int64_t with_exact = 0;
  for (const std::string& name : s.canonical_names()) {
    const bool selected = name.find("/layers.1.") != std::string::npos ||
                          name.find("/layers.1/") != std::string::npos || name == "decode1/head/out";
    ASSERT_EQ(s.has_exact(name), selected) << name;
    if (!selected) continue;
    ++with_exact;
    const Tensor a = s.read("exact/" + name), b = full.read("exact/" + name);
    ASSERT_EQ(std::memcmp(a.bytes(), b.bytes(), a.nbytes()), 0) << name;
    ASSERT_NE(s.tolerance(name) != nullptr, golden_role_of(name) == GoldenRole::kDiscrete) << name;
  }
  EXPECT_GT(with_exact, 30);
  EXPECT_EQ(nlohmann::json::parse(s.manifest_text()).at("exact_values").at("outputs"), with_exact);
  EXPECT_EQ(dsv4("golden verify " + file("s.h5")).status, 0);
}

TEST_F(CliGolden, ExactLayersBadInput) {
  const std::string gen = "golden generate --config tiny --seed 1 --prompt-len 6 --out " + file("x.h5");
  expect_bad_input(dsv4(gen + " --exact-layers ''"), "golden generate", "is not a selector");
  expect_bad_input(dsv4(gen + " --exact-layers 'none,layers.0'"), "golden generate", "stand alone");
  expect_bad_input(dsv4(gen + " --exact-layers none --train"), "golden generate",
                   "a --train golden holds the exact values of every output");
  EXPECT_FALSE(std::filesystem::exists(file("x.h5")));
}

}  // namespace
}  // namespace dsv4
