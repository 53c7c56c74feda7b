// The committed goldens (goldens/*.h5) regenerate bit for bit: every dataset's data, the manifest
// text (hence every SHA-256) — not the file bytes, since libhdf5 stores object modification times.
// Also the SHA-256 implementation against the FIPS 180-4 / NIST example vectors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/io/hdf5_file.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

TEST(Sha256, NistVectors) {
  EXPECT_EQ(sha256_hex(std::string_view("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(std::string_view("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string_view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // One million 'a', fed in uneven pieces (exercises the block buffer).
  Sha256 h;
  const std::string piece(997, 'a');
  std::size_t left = 1000000;
  while (left > 0) {
    const std::size_t n = std::min(left, piece.size());
    h.update(std::string_view(piece.data(), n));
    left -= n;
  }
  EXPECT_EQ(h.hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

std::vector<std::string> committed_goldens() {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(fs::path(DSV4_SOURCE_DIR) / "goldens"))
    if (e.path().extension() == ".h5") v.push_back(e.path().string());
  std::sort(v.begin(), v.end());
  return v;
}

TEST(GoldenRegen, CommittedGoldensVerify) {
  const auto files = committed_goldens();
  ASSERT_FALSE(files.empty()) << "no goldens/*.h5";
  for (const std::string& p : files) {
    const GoldenVerifyResult r = verify_golden(p);
    EXPECT_TRUE(r.ok()) << p << ": " << (r.ok() ? "" : r.problems.front().dataset + ": " + r.problems.front().what);
    EXPECT_GT(r.datasets_checked, 100);
  }
}

TEST(GoldenRegen, CommittedGoldensRegenerateBitForBit) {
  for (const std::string& p : committed_goldens()) {
    SCOPED_TRACE(p);
    const Golden g = Golden::open(p);
    const auto seed = g.weights_seed();
    ASSERT_TRUE(seed.has_value()) << "committed goldens use synthetic weights";
    const nlohmann::json man = nlohmann::json::parse(g.manifest_text());
    GoldenGenerateOptions o;
    o.config = g.config();
    o.weights.seed = *seed;
    o.tokens = g.tokens();
    o.decode_steps = g.decode_steps();
    o.tokens_source = man.at("inputs").at("tokens_source").get<std::string>();
    const std::string out =
        (fs::temp_directory_path() / ("dsv4_golden_regen_" + std::to_string(::getpid()) + ".h5")).string();
    const auto t0 = std::chrono::steady_clock::now();
    const GoldenGenerateStats st = generate_golden(o, out);
    std::printf("regenerated %s in %.2f s (exact %.2f s, official %.2f s, write %.2f s)\n", p.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), st.seconds_exact,
                st.seconds_official, st.seconds_write);
    const Golden r = Golden::open(out);
    // The manifest holds every dataset's SHA-256, the config, weights and inputs: equal text means
    // equal hashes of equal data …
    EXPECT_EQ(r.manifest_text(), g.manifest_text());
    // … and the data itself, byte for byte, dataset by dataset (both directions).
    const auto a = g.file().list_datasets(), b = r.file().list_datasets();
    ASSERT_EQ(a, b);
    for (const std::string& d : a) {
      if (d == "manifest") continue;
      const Tensor x = g.file().read(d), y = r.file().read(d);
      ASSERT_EQ(x.dtype(), y.dtype()) << d;
      ASSERT_EQ(x.shape(), y.shape()) << d;
      ASSERT_TRUE(std::equal(x.bytes(), x.bytes() + x.nbytes(), y.bytes())) << d << " differs";
    }
    fs::remove(out);
  }
}

}  // namespace
}  // namespace dsv4
