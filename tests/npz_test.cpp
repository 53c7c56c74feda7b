// The .npz reader: archives written the way numpy writes them (Python's zipfile with
// force_zip64, stored, deflated, and streamed with data descriptors — committed in
// oracle/fuzz/corpus/npz/), round trips through our writer, and a table of hostile zips (one per
// rule), each refused with an InputError naming the archive, the member and the rule.
#include "dsv4/io/npz.hpp"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "support/temp_files.hpp"

namespace dsv4 {
namespace {

using testing_support::expect_same;
using testing_support::patterned;

namespace fs = std::filesystem;

std::vector<std::byte> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

std::string corpus(const std::string& name) { return std::string(DSV4_SOURCE_DIR) + "/oracle/fuzz/corpus/npz/" + name; }

std::uint64_t get_le(const std::vector<std::byte>& b, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::to_integer<std::uint64_t>(b[at + i]) << (8 * i);
  return v;
}

// Archives numpy-style (Python zipfile, force_zip64): a float32 (2, 3), an int64 (4,), and a
// '<u2' member named kv.bf16.npy.
TEST(Npz, ReadsArchivesAsNumpyWritesThem) {
  for (const char* name : {"py_stored.npz", "py_deflate.npz", "py_stream.npz"}) {
    SCOPED_TRACE(name);
    const NpzFile f = NpzFile::open(corpus(name));
    EXPECT_EQ(f.keys(), (std::vector<std::string>{"a", "b", "kv.bf16"}));
    const Tensor a = f.read("a");
    ASSERT_EQ(a.dtype(), DType::kF32);
    EXPECT_EQ(a.shape(), (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(std::vector<float>(a.values<float>().begin(), a.values<float>().end()),
              (std::vector<float>{1.5f, -2.f, 3.25f, 0.f, 7.f, -0.5f}));
    const Tensor b = f.read("b");
    ASSERT_EQ(b.dtype(), DType::kI64);
    EXPECT_EQ(b.values<std::int64_t>()[3], std::int64_t{1} << 40);
    const Tensor kv = f.read("kv.bf16");  // the .bf16.npy name convention
    ASSERT_EQ(kv.dtype(), DType::kBF16);
    EXPECT_EQ(kv.values<std::uint16_t>()[1], 0xC010);
    EXPECT_EQ(f.read("kv.bf16", {U2As::kUInt16}).dtype(), DType::kU16);
  }
  EXPECT_EQ(read_npz(corpus("py_deflate.npz")).size(), 3u);
}

TEST(Npz, RoundTripEveryDtype) {
  const std::vector<DType> dtypes = {DType::kF64, DType::kF32, DType::kF16, DType::kI64,
                                     DType::kI32, DType::kI8,  DType::kU8,  DType::kU16};
  std::vector<Tensor> ts;
  std::vector<std::pair<std::string, const Tensor*>> named;
  unsigned salt = 0;
  for (DType d : dtypes) {
    for (const std::vector<std::int64_t>& shape : {std::vector<std::int64_t>{}, {0}, {5}, {3, 700}}) {
      ts.push_back(patterned(d, shape, salt++));
    }
  }
  ts.push_back(patterned(DType::kBF16, {4, 3}));
  for (std::size_t i = 0; i < ts.size(); ++i) {
    named.emplace_back(ts[i].dtype() == DType::kBF16 ? "w.bf16" : "t/" + std::to_string(i), &ts[i]);
  }
  for (bool compress : {false, true}) {
    SCOPED_TRACE(compress);
    const NpzFile f = NpzFile::from_bytes(encode_npz(named, {compress}));
    ASSERT_EQ(f.keys().size(), ts.size());
    for (std::size_t i = 0; i < ts.size(); ++i) expect_same(ts[i], f.read(named[i].first));
  }
  // through a file
  const std::string path = (fs::temp_directory_path() / ("dsv4_npz_" + std::to_string(::getpid()) + ".npz")).string();
  write_npz(path, named, {true});
  EXPECT_EQ(read_npz(path).size(), ts.size());
  fs::remove(path);
  EXPECT_THROW(encode_npz({{"a", &ts[0]}, {"a", &ts[1]}}), InputError);
  EXPECT_THROW(encode_npz({{"", &ts[0]}}), InputError);
}

// 65,536 members need the ZIP64 end-of-central-directory records (the 16-bit count saturates).
TEST(Npz, Zip64EndRecords) {
  const Tensor t = patterned(DType::kU8, {});
  std::vector<std::string> keys;
  for (int i = 0; i < 65536; ++i) keys.push_back("k" + std::to_string(i));
  std::vector<std::pair<std::string, const Tensor*>> named;
  for (const auto& k : keys) named.emplace_back(k, &t);
  const auto z = encode_npz(named);
  EXPECT_EQ(get_le(z, z.size() - 22 + 10, 2), 0xFFFFu);  // saturated count in the classic record
  const NpzFile f = NpzFile::from_bytes(z);
  ASSERT_EQ(f.keys().size(), 65536u);
  expect_same(t, f.read("k65535"));
}

// ---- hostile archives ----

void put(std::vector<std::byte>& b, std::size_t at, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) b[at + i] = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
}
std::uint64_t get(const std::vector<std::byte>& b, std::size_t at, std::size_t n) { return get_le(b, at, n); }

// Offsets of the structures of an archive written by encode_npz (no ZIP64 end records).
struct Layout {
  std::size_t eocd, cd;
  std::vector<std::size_t> central;  // per entry
  std::vector<NpzMember> members;
};
Layout layout(const std::vector<std::byte>& z) {
  Layout l;
  l.eocd = z.size() - 22;
  l.cd = get(z, l.eocd + 16, 4);
  const NpzFile f = NpzFile::from_bytes(z);
  l.members = f.members();
  std::size_t at = l.cd;
  for (std::size_t i = 0; i < l.members.size(); ++i) {
    l.central.push_back(at);
    at += 46 + get(z, at + 28, 2) + get(z, at + 30, 2) + get(z, at + 32, 2);
  }
  return l;
}

struct Bad {
  std::string name;
  std::vector<std::byte> bytes;
  std::string rule;
  bool at_read = false;  // refused when the member is read, not at open
  std::string member;    // the member the message must name
};

std::vector<Bad> bad_archives() {
  static const Tensor a = patterned(DType::kF32, {4, 8});
  static const Tensor b = patterned(DType::kI32, {16}, 3);
  const auto stored = encode_npz({{"a", &a}, {"b", &b}});
  const auto deflated = encode_npz({{"a", &a}, {"b", &b}}, {true});
  const Layout ls = layout(stored), ld = layout(deflated);
  std::vector<Bad> v;
  auto with = [](std::vector<std::byte> z, const std::function<void(std::vector<std::byte>&)>& f) {
    f(z);
    return z;
  };
  const std::size_t c0 = ls.central[0], c1 = ls.central[1];
  v.push_back({"empty file", {}, "no end-of-central-directory record", false, ""});
  v.push_back({"text", std::vector<std::byte>(100, std::byte{'x'}), "no end-of-central-directory record", false, ""});
  v.push_back({"trailing garbage", with(stored, [](auto& z) { z.push_back(std::byte{0}); }),
               "no end-of-central-directory record whose comment ends the file", false, ""});
  v.push_back({"truncated tail", std::vector<std::byte>(stored.begin(), stored.end() - 5),
               "no end-of-central-directory record", false, ""});
  v.push_back({"multi-disk", with(stored, [&](auto& z) { put(z, ls.eocd + 4, 1, 2); }), "multi-disk", false, ""});
  v.push_back({"central directory offset off by one",
               with(stored, [&](auto& z) { put(z, ls.eocd + 16, ls.cd + 1, 4); }),
               "does not end where its end record begins", false, ""});
  v.push_back({"entry count too large",
               with(stored,
                    [&](auto& z) {
                      put(z, ls.eocd + 8, 60000, 2);
                      put(z, ls.eocd + 10, 60000, 2);
                    }),
               "cannot hold the 60000 entries", false, ""});
  v.push_back({"entry count too small",
               with(stored,
                    [&](auto& z) {
                      put(z, ls.eocd + 8, 1, 2);
                      put(z, ls.eocd + 10, 1, 2);
                    }),
               "stray bytes after the central directory", false, ""});
  v.push_back({"ZIP64 marker without locator", with(stored, [&](auto& z) { put(z, ls.eocd + 16, 0xFFFFFFFF, 4); }),
               "without a ZIP64 locator", false, ""});
  v.push_back({"bad central signature", with(stored, [&](auto& z) { put(z, c1, 0x12345678, 4); }),
               "central directory entry 1: bad signature", false, ""});
  v.push_back(
      {"encrypted", with(stored, [&](auto& z) { put(z, c0 + 8, 1, 2); }), "member 'a.npy': encrypted", false, "a.npy"});
  v.push_back({"bzip2 method", with(stored, [&](auto& z) { put(z, c0 + 10, 12, 2); }),
               "compression method 12 is not supported", false, "a.npy"});
  v.push_back({"duplicate name", with(stored, [&](auto& z) { z[c1 + 46] = std::byte{'a'}; }), "duplicate name", false,
               "a.npy"});
  v.push_back({"not a .npy member", with(stored, [&](auto& z) { z[c1 + 46 + 4] = std::byte{'x'}; }),
               "not a .npy member", false, "b.npx"});
  v.push_back({"stored sizes differ", with(stored, [&](auto& z) { put(z, c0 + 20, get(z, c0 + 20, 4) - 1, 4); }),
               "stored, but its compressed size", false, "a.npy"});
  v.push_back({"local offset outside", with(stored, [&](auto& z) { put(z, c1 + 42, ls.cd + 5, 4); }),
               "is outside the member area", false, "b.npy"});
  v.push_back({"no local header", with(stored, [&](auto& z) { put(z, ls.members[1].local_offset, 0, 4); }),
               "no local header at its offset", false, "b.npy"});
  v.push_back({"local name differs",
               with(stored, [&](auto& z) { z[ls.members[1].local_offset + 30] = std::byte{'q'}; }),
               "local header names another file", false, "b.npy"});
  v.push_back({"local method differs", with(stored, [&](auto& z) { put(z, ls.members[0].local_offset + 8, 8, 2); }),
               "disagree on the method", false, "a.npy"});
  v.push_back({"local sizes differ",
               with(stored, [&](auto& z) { put(z, ls.members[0].local_offset + 30 + 5 + 4, 1, 8); }),
               "disagree on sizes or CRC", false, "a.npy"});
  v.push_back({"malformed extra field",
               with(stored, [&](auto& z) { put(z, ls.members[0].local_offset + 30 + 5 + 2, 99, 2); }),
               "malformed extra field", false, "a.npy"});
  v.push_back({"overlapping members (zip bomb)",
               with(deflated,
                    [&](auto& z) {
                      put(z, ld.members[0].local_offset + 6, 8, 2);  // sizes in a data descriptor
                      put(z, ld.central[0] + 20, ld.members[0].compressed + 40, 4);
                    }),
               "member 'b.npy': overlaps member 'a.npy'", false, "b.npy"});
  v.push_back({"data past the members",
               with(deflated,
                    [&](auto& z) {
                      put(z, ld.members[1].local_offset + 6, 8, 2);
                      put(z, ld.central[1] + 20, ld.members[1].compressed + 1000, 4);
                    }),
               "runs past the member area", false, "b.npy"});
  // refused when read
  v.push_back({"CRC mismatch", with(stored, [&](auto& z) { z[ls.members[0].data_offset + 100] ^= std::byte{1}; }),
               "CRC-32 mismatch", true, "a.npy"});
  v.push_back({"corrupt deflate",
               with(deflated,
                    [&](auto& z) {
                      for (std::size_t k = 0; k < 8; ++k) z[ld.members[0].data_offset + k] = std::byte{0xFF};
                    }),
               "corrupt deflate stream", true, "a.npy"});
  auto set_usize = [&](std::vector<std::byte>& z, std::size_t m, std::uint64_t u) {
    put(z, ld.central[m] + 24, u, 4);
    put(z, ld.members[m].local_offset + 30 + 5 + 4, u, 8);
  };
  v.push_back({"declares more than it inflates to",
               with(deflated, [&](auto& z) { set_usize(z, 0, ld.members[0].uncompressed + 1); }),
               "bytes, the directory declares", true, "a.npy"});
  v.push_back({"inflates to more than declared",
               with(deflated, [&](auto& z) { set_usize(z, 0, ld.members[0].uncompressed - 1); }),
               "inflates to more than its declared", true, "a.npy"});
  v.push_back({"ratio bomb", with(deflated, [&](auto& z) { set_usize(z, 0, 0xFFFFFFF0); }),
               "beyond deflate's 1032:1 ratio", true, "a.npy"});
  v.push_back({"member not a .npy",
               with(stored,
                    [&](auto& z) {
                      // a valid archive whose member holds bad .npy bytes (CRC recomputed)
                      const auto& m = ls.members[0];
                      z[m.data_offset] = std::byte{'X'};
                      const auto crc =
                          crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(z.data() + m.data_offset),
                                static_cast<uInt>(m.uncompressed));
                      put(z, m.local_offset + 14, crc, 4);
                      put(z, ls.central[0] + 16, crc, 4);
                    }),
               "member 'a.npy': not a .npy file (bad magic", true, "a.npy"});
  return v;
}

TEST(Npz, HostileArchivesAreRefusedNamingTheRule) {
  const auto table = bad_archives();
  EXPECT_GE(table.size(), 12u);
  for (const Bad& b : table) {
    SCOPED_TRACE(b.name);
    try {
      const NpzFile f = NpzFile::from_bytes(b.bytes, "x.npz");
      if (!b.at_read) ADD_FAILURE() << "opened";
      for (const auto& k : f.keys()) f.read(k);
      ADD_FAILURE() << "read";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(b.rule), std::string::npos) << m;
      EXPECT_EQ(m.rfind("x.npz: ", 0), 0u) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      if (!b.member.empty()) {
        EXPECT_NE(m.find("'" + b.member + "'"), std::string::npos) << m;
      }
    }
  }
}

TEST(Npz, ReadLimitAndMissingKey) {
  const Tensor a = patterned(DType::kF32, {4, 8});
  const NpzFile f = NpzFile::from_bytes(encode_npz({{"a", &a}}), "m.npz");
  EXPECT_NE(std::string([&] {
              try {
                f.read("a", {}, 100);
              } catch (const InputError& e) {
                return std::string(e.what());
              }
              return std::string();
            }())
                .find("over the read limit of 100"),
            std::string::npos);
  EXPECT_THROW(f.read("missing"), InputError);
  EXPECT_THROW(NpzFile::open("/nonexistent.npz"), InputError);
}

// Every truncation and many single-byte corruptions: refused with an InputError or read — never
// a crash or another exception type.
TEST(Npz, TruncationsAndCorruptionsNeverCrash) {
  for (const char* name : {"py_stored.npz", "py_deflate.npz", "py_stream.npz"}) {
    const auto good = slurp(corpus(name));
    ASSERT_FALSE(good.empty());
    for (std::size_t len = 0; len < good.size(); ++len) {
      try {
        const NpzFile f = NpzFile::from_bytes(std::vector<std::byte>(good.begin(), good.begin() + len));
        for (const auto& k : f.keys()) f.read(k);
        ADD_FAILURE() << name << " prefix " << len << " accepted";
      } catch (const InputError&) {
      }
    }
    for (std::size_t at = 0; at < good.size(); ++at) {
      for (unsigned x : {0x01u, 0x80u, 0xFFu}) {
        auto z = good;
        z[at] ^= static_cast<std::byte>(x);
        try {
          const NpzFile f = NpzFile::from_bytes(z);
          for (const auto& k : f.keys()) f.read(k);
        } catch (const InputError&) {
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsv4
