// Goldens are verified before they judge (issue 14 item 2): `dsv4 certify` and `dsv4 diff` check the
// SHA-256 of every golden dataset they read against the manifest, and the manifest against its
// root hash, refusing a mismatch as bad input (exit 2) naming the dataset; --golden-sha256 pins the
// manifest hash the user expects, so that a golden edited and re-hashed (which `golden verify`
// accepts) is refused too. And goldens/README.md lists the committed goldens' manifest hashes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "support/cli_process.hpp"
#include "support/dump_edit.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

using GoldenIntegrity = testing_support::GoldenSuite;

std::string tensor_hash(const Tensor& t) { return sha256_hex(std::span<const std::byte>(t.bytes(), t.nbytes())); }

// A copy of a golden with `edit` applied to the dataset `name`. rehash: the manifest entry of that
// dataset and the root manifest_sha256 are recomputed (a deliberate, consistent edit); otherwise
// the manifest is kept as it was (damage). `edit_manifest` (optional) edits the manifest text
// without re-hashing it.
void golden_copy(const std::string& from, const std::string& to, const std::string& name,
                 const std::function<void(Tensor&)>& edit, bool rehash,
                 const std::function<void(std::string&)>& edit_manifest = {}) {
  const Hdf5File in = Hdf5File::open(from);
  std::string text = in.read_string("manifest");
  std::string root_hash = in.attr_string("/", "manifest_sha256");
  auto manifest = nlohmann::ordered_json::parse(text);
  Hdf5File out = Hdf5File::create(to);
  for (const std::string& n : in.list_datasets()) {
    if (n == "manifest") continue;
    Tensor t = in.read(n);
    if (n == name && edit) {
      edit(t);
      if (rehash) {
        for (auto& e : manifest.at("datasets"))
          if (e.at("path") == n) e["sha256"] = tensor_hash(t);
        text = manifest.dump(1);
        root_hash = sha256_hex(text);
      }
    }
    out.write(n, t);
  }
  if (edit_manifest) edit_manifest(text);
  out.write_string("manifest", text);
  out.set_attr("/", "dsv4_format", in.attr_string("/", "dsv4_format"));
  out.set_attr("/", "dsv4_format_version", in.attr_int64("/", "dsv4_format_version"));
  out.set_attr("/", "manifest_sha256", root_hash);
  out.commit();
}

// One bit of element 3 (the lowest of its little-endian bytes) flipped.
void flip_bit(Tensor& t) { t.bytes()[3 * 8] ^= std::byte{0x01}; }

TEST_F(GoldenIntegrity, FlippedBitInTokensIsRefusedByCertifyAndDiff) {
  golden_copy(path("g.h5"), file("bad.h5"), "inputs/tokens", flip_bit, false);
  // golden verify finds it (exit 1) …
  const auto v = dsv4("golden verify " + file("bad.h5"));
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("inputs/tokens"), std::string::npos) << v.out;
  // … and certify and diff refuse to judge with it (they certified with it before).
  expect_bad_input(dsv4("certify --golden " + file("bad.h5") + " --candidate " + path("off.h5")), "certify",
                   "inputs/tokens: SHA-256 differs from the manifest's");
  expect_bad_input(dsv4("diff --teacher-forced --golden " + file("bad.h5") + " --candidate " + path("off.h5")), "diff",
                   "inputs/tokens: SHA-256 differs from the manifest's");
}

TEST_F(GoldenIntegrity, FlippedBitInAValueIsRefusedWhenRead) {
  const std::string victim = "exact/prefill/layers.0.attn/out";
  golden_copy(path("g.h5"), file("bad.h5"), victim, flip_bit, false);
  expect_bad_input(dsv4("certify --golden " + file("bad.h5") + " --candidate " + path("off.h5")), "certify",
                   victim + ": SHA-256 differs from the manifest's");
  expect_bad_input(dsv4("certify --end-to-end-only --golden " + file("bad.h5") + " --candidate " + path("off.h5")),
                   "certify", victim + ": SHA-256 differs");
  expect_bad_input(dsv4("diff --teacher-forced --golden " + file("bad.h5") + " --candidate " + path("off.h5")), "diff",
                   victim + ": SHA-256 differs from the manifest's");
}

TEST_F(GoldenIntegrity, EditedManifestIsRefused) {
  // One character of the manifest changed, its root hash left as it was.
  golden_copy(path("g.h5"), file("bad.h5"), "", {}, false, [](std::string& text) {
    const auto p = text.find("\"generator\"");
    ASSERT_NE(p, std::string::npos);
    text.insert(p, " ");
  });
  expect_bad_input(dsv4("certify --golden " + file("bad.h5") + " --candidate " + path("off.h5")), "certify",
                   "manifest: SHA-256 differs from the root attribute manifest_sha256");
  expect_bad_input(dsv4("diff --teacher-forced --golden " + file("bad.h5") + " --candidate " + path("off.h5")), "diff",
                   "manifest: SHA-256 differs from the root attribute manifest_sha256");
}

TEST_F(GoldenIntegrity, RehashedEditPassesVerifyButNotAPin) {
  const std::string pin = Golden::open(path("g.h5")).manifest_sha256();
  // Another token id, the manifest re-hashed: a consistent golden, just not the one meant.
  golden_copy(
      path("g.h5"), file("edited.h5"), "inputs/tokens",
      [](Tensor& t) {
        auto v = t.values<std::int64_t>();
        v[1] = (v[1] + 1) % 1024;
      },
      true);
  const auto v = dsv4("golden verify " + file("edited.h5"));
  EXPECT_EQ(v.status, 0) << v.out << v.err;
  const std::string edited = Golden::open(file("edited.h5")).manifest_sha256();
  ASSERT_NE(edited, pin);
  // Unpinned, certify judges with it (whatever the verdict) …
  const auto c = dsv4("certify --end-to-end-only --golden " + file("edited.h5") + " --candidate " + path("off.h5"));
  EXPECT_NE(c.status, 2) << c.err;
  // … pinned to the golden the user meant, certify and diff refuse it, naming both hashes.
  for (const std::string& cmd : {std::string("certify"), std::string("diff --teacher-forced")}) {
    const auto r =
        dsv4(cmd + " --golden " + file("edited.h5") + " --candidate " + path("off.h5") + " --golden-sha256 " + pin);
    expect_bad_input(r, cmd.substr(0, cmd.find(' ')), "manifest SHA-256 " + edited);
    EXPECT_NE(r.err.find("is not the pinned --golden-sha256 " + pin), std::string::npos) << r.err;
  }
  // The right pin (any case of hex digits) on the right golden: judged as usual.
  std::string upper = pin;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const auto ok =
      dsv4("certify --golden " + path("g.h5") + " --candidate " + path("off.h5") + " --golden-sha256 " + upper);
  EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
  const auto d = dsv4("diff --teacher-forced --golden " + path("g.h5") + " --candidate " + path("off.h5") +
                      " --golden-sha256 " + pin);
  EXPECT_EQ(d.status, 0) << d.out << d.err;
  // A pin that is not a SHA-256 is bad input naming the option.
  expect_bad_input(
      dsv4("certify --golden " + path("g.h5") + " --candidate " + path("off.h5") + " --golden-sha256 abc123"),
      "certify", "--golden-sha256: expected the manifest's SHA-256 as 64 hexadecimal digits");
}

// goldens/README.md §Committed goldens lists every committed golden with its manifest SHA-256, and
// each listed hash is that file's (so a user can pin it with --golden-sha256).
TEST(CommittedGoldens, ReadmeListsEveryManifestHash) {
  const fs::path dir = fs::path(DSV4_SOURCE_DIR) / "goldens";
  const std::string readme = testing_support::read_file((dir / "README.md").string());
  const std::regex row(R"(\|\s*`([A-Za-z0-9_.-]+\.h5)`\s*\|\s*`([0-9a-f]{64})`\s*\|)");
  std::map<std::string, std::string> listed;
  for (auto it = std::sregex_iterator(readme.begin(), readme.end(), row); it != std::sregex_iterator(); ++it)
    EXPECT_TRUE(listed.emplace((*it)[1].str(), (*it)[2].str()).second) << "listed twice: " << (*it)[1];
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".h5") files.insert(e.path().filename().string());
  ASSERT_FALSE(files.empty());
  for (const std::string& f : files) {
    SCOPED_TRACE(f);
    const auto it = listed.find(f);
    ASSERT_NE(it, listed.end()) << "goldens/README.md does not list the manifest SHA-256 of " << f;
    // open_verified: the manifest matches its root hash; the listed hash is the manifest's.
    const Golden g = Golden::open_verified((dir / f).string(), it->second);
    EXPECT_EQ(g.manifest_sha256(), it->second);
  }
  for (const auto& [f, h] : listed) EXPECT_EQ(files.count(f), 1u) << "listed but not committed: " << f;
}

}  // namespace
}  // namespace dsv4
