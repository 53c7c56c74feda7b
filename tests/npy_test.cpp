// The .npy reader/writer: round trips of every dtype and format version, the header layout we
// write, header-dict tolerance, the bf16 convention, and a table of malformed files, each of which
// must be refused with an InputError naming the problem.
#include "dsv4/io/npy.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/temp_files.hpp"

namespace dsv4 {
namespace {

using namespace testing_support;

namespace fs = std::filesystem;

// A file with the given version bytes and header text, padded (spaces + '\n') to 64 bytes as
// numpy does, followed by `data_bytes` bytes of 0xAB.
std::vector<std::byte> make_file(int major, int minor, const std::string& dict, std::size_t data_bytes) {
  const std::size_t pre = major == 1 ? 10 : 12;
  std::string h = dict;
  while ((pre + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::string f = "\x93NUMPY";
  f += static_cast<char>(major);
  f += static_cast<char>(minor);
  for (std::size_t i = 0; i < pre - 8; ++i) f += static_cast<char>((h.size() >> (8 * i)) & 0xFF);
  f += h;
  f += std::string(data_bytes, '\xAB');
  return to_bytes(f);
}

std::string f4_dict(const std::string& shape) {
  return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
}

// A version 1.0 file whose header is exactly {'descr': <descr>, 'fortran_order': False, 'shape': <shape>}.
std::vector<std::byte> v1_file(const std::string& descr, const std::string& shape, std::size_t data_bytes) {
  return make_file(1, 0, "{'descr': " + descr + ", 'fortran_order': False, 'shape': " + shape + "}", data_bytes);
}

// ---- round trips ----

TEST(Npy, RoundTripEveryDtypeAndVersion) {
  const std::vector<DType> dtypes = {DType::kF64, DType::kF32, DType::kF16, DType::kI64, DType::kI32,
                                     DType::kI8,  DType::kU8,  DType::kU16, DType::kBF16};
  const std::vector<std::vector<std::int64_t>> shapes = {{}, {0}, {7}, {3, 5}, {2, 0, 4}, {2, 3, 4, 5}};
  for (DType d : dtypes) {
    for (int version : {0, 1, 2, 3}) {
      for (const auto& shape : shapes) {
        SCOPED_TRACE(std::string(dtype_name(d)) + " v" + std::to_string(version));
        const Tensor t = patterned(d, shape);
        const auto bytes = encode_npy(t, NpyWriteOptions{version});
        EXPECT_EQ(std::to_integer<int>(bytes[6]), version == 0 ? 1 : version);
        const NpyReadOptions opts{d == DType::kBF16 ? U2As::kBF16 : U2As::kUInt16};
        expect_same(t, decode_npy(bytes, opts));
      }
    }
  }
}

TEST(Npy, RoundTripThroughFiles) {
  TempDir dir;
  const Tensor f = patterned(DType::kF32, {4, 6});
  write_npy(dir.file("a.npy"), f);
  expect_same(f, read_npy(dir.file("a.npy")));
  // bf16: written as '<u2'; read back as bf16 by file name, or by option.
  const Tensor b = patterned(DType::kBF16, {3, 2});
  write_npy(dir.file("b.bf16.npy"), b);
  expect_same(b, read_npy(dir.file("b.bf16.npy")));
  EXPECT_EQ(read_npy(dir.file("b.bf16.npy"), {U2As::kUInt16}).dtype(), DType::kU16);
  write_npy(dir.file("b.npy"), b);
  EXPECT_EQ(read_npy(dir.file("b.npy")).dtype(), DType::kU16);  // a plain '<u2' is never bf16 by default
  expect_same(b, read_npy(dir.file("b.npy"), {U2As::kBF16}));
  // No temporary files are left behind.
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++n;
  EXPECT_EQ(n, 3u);
}

TEST(Npy, BfloatWrittenAsU2) {
  const auto bytes = encode_npy(patterned(DType::kBF16, {2}));
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  EXPECT_NE(text.find("'descr': '<u2'"), std::string::npos);
}

TEST(Npy, RawCodeDtypesWrittenAsU1) {
  const Tensor e4 = patterned(DType::kE4M3, {2, 3});
  const Tensor r = decode_npy(encode_npy(e4));
  EXPECT_EQ(r.dtype(), DType::kU8);
  EXPECT_EQ(r.shape(), e4.shape());
  EXPECT_EQ(0, std::memcmp(r.bytes(), e4.bytes(), e4.nbytes()));
  const Tensor fp4 = patterned(DType::kE2M1x2, {2, 8});  // 8 elements per row = 4 packed bytes
  const Tensor r4 = decode_npy(encode_npy(fp4));
  EXPECT_EQ(r4.shape(), (std::vector<std::int64_t>{2, 4}));
  EXPECT_EQ(0, std::memcmp(r4.bytes(), fp4.bytes(), fp4.nbytes()));
}

// ---- the header we write ----

TEST(Npy, WrittenHeaderLayout) {
  for (int version : {1, 2, 3}) {
    for (const auto& shape : std::vector<std::vector<std::int64_t>>{
             {}, {1}, {3, 4}, {123456789, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}}) {
      const Tensor t(DType::kF32, shape);
      const auto b = encode_npy(t, {version});
      const std::size_t pre = version == 1 ? 10 : 12;
      std::size_t hlen = 0;
      for (std::size_t i = 8; i < pre; ++i) hlen |= std::to_integer<std::size_t>(b[i]) << (8 * (i - 8));
      const std::size_t offset = pre + hlen;
      EXPECT_EQ(offset % 64, 0u) << "data must start 64-byte aligned";
      EXPECT_EQ(b.size(), offset + t.nbytes());
      EXPECT_EQ(std::to_integer<char>(b[offset - 1]), '\n');
      const std::string h(reinterpret_cast<const char*>(b.data()) + pre, hlen);
      EXPECT_EQ(h.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (", 0), 0u) << h;
      EXPECT_EQ(h.find_first_not_of(' ', h.find('}') + 1), hlen - 1) << "only spaces between '}' and '\\n'";
    }
  }
  const auto b1 = encode_npy(Tensor(DType::kF32, {5}));
  const std::string one(reinterpret_cast<const char*>(b1.data()), b1.size());
  EXPECT_NE(one.find("'shape': (5,), }"), std::string::npos);
  const auto b0 = encode_npy(Tensor(DType::kF32, {}));
  const std::string zero(reinterpret_cast<const char*>(b0.data()), b0.size());
  EXPECT_NE(zero.find("'shape': (), }"), std::string::npos);
}

TEST(Npy, ExactBytesOfASmallFile) {
  Tensor t(DType::kI32, {2});
  t.values<std::int32_t>()[0] = 1;
  t.values<std::int32_t>()[1] = -2;
  const auto b = encode_npy(t);
  std::string expect = "\x93NUMPY\x01";
  expect += '\0';
  expect += "v";
  expect += '\0';
  expect += "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
  expect.resize(127, ' ');  // header length 118 = 'v': data at byte 128
  expect += "\n";
  expect += std::string("\x01\x00\x00\x00\xFE\xFF\xFF\xFF", 8);
  ASSERT_EQ(b.size(), expect.size());
  EXPECT_EQ(0, std::memcmp(b.data(), expect.data(), b.size()));
}

// ---- header tolerance ----

TEST(Npy, HeaderDictTolerance) {
  const std::vector<std::string> dicts = {
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
      "{'shape': (2, 3), 'descr': '<f4', 'fortran_order': False}",
      "{\"fortran_order\":False,\"shape\":(2,3,),\"descr\":\"<f4\"}",
      "  {  'descr' : '<f4' ,\n 'fortran_order' : False ,\t'shape' : ( 2 , 3 ) }  ",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",
  };
  for (const auto& d : dicts) {
    SCOPED_TRACE(d);
    const Tensor t = decode_npy(make_file(1, 0, d, 24));
    EXPECT_EQ(t.dtype(), DType::kF32);
    EXPECT_EQ(t.shape(), (std::vector<std::int64_t>{2, 3}));
  }
  // Unpadded headers and headers padded without alignment are read too.
  std::string f = "\x93NUMPY\x01";
  f += '\0';
  const std::string h = "{'descr': '|u1', 'fortran_order': False, 'shape': (3,)}";
  f += static_cast<char>(h.size());
  f += '\0';
  f += h + "xyz";
  const Tensor t = decode_npy(to_bytes(f));
  EXPECT_EQ(t.dtype(), DType::kU8);
  EXPECT_EQ(t.values<std::uint8_t>()[2], 'z');
}

TEST(Npy, DescrMapping) {
  const std::vector<std::pair<std::string, DType>> m = {
      {"<f8", DType::kF64}, {"<f4", DType::kF32}, {"<f2", DType::kF16}, {"<i8", DType::kI64}, {"<i4", DType::kI32},
      {"<i1", DType::kI8},  {"|i1", DType::kI8},  {"|u1", DType::kU8},  {"<u2", DType::kU16},
  };
  for (const auto& [descr, dt] : m) {
    const Tensor t = decode_npy(
        make_file(1, 0, "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (2,), }", 2 * dtype_size(dt)));
    EXPECT_EQ(t.dtype(), dt) << descr;
  }
}

TEST(Npy, PathIsBf16) {
  EXPECT_TRUE(npy_path_is_bf16("x.bf16.npy"));
  EXPECT_TRUE(npy_path_is_bf16("/a/b/kv.bf16.npy"));
  EXPECT_FALSE(npy_path_is_bf16("x.npy"));
  EXPECT_FALSE(npy_path_is_bf16("bf16.npy.txt"));
  EXPECT_FALSE(npy_path_is_bf16("xbf16.npy"));
}

// ---- malformed files ----

struct Bad {
  std::string name;
  std::vector<std::byte> bytes;
  std::string expect;  // a substring of the message
};

std::vector<Bad> bad_files() {
  std::vector<Bad> v;
  auto good = make_file(1, 0, f4_dict("(2, 3)"), 24);
  auto mutate = [&](std::size_t at, char c) {
    auto b = good;
    b[at] = static_cast<std::byte>(c);
    return b;
  };
  v.push_back({"empty file", {}, "bad magic"});
  v.push_back({"bad magic", mutate(5, 'Z'), "bad magic"});
  v.push_back({"text file", to_bytes("hello, world\n"), "bad magic"});
  v.push_back({"version 4.0", mutate(6, 4), "unsupported .npy format version 4.0"});
  v.push_back({"version 1.1", mutate(7, 1), "unsupported .npy format version 1.1"});
  v.push_back({"version 0.0", mutate(6, 0), "unsupported .npy format version 0.0"});
  v.push_back({"ends in version", to_bytes("\x93NUMPY\x01"), "truncated header"});
  v.push_back({"ends in length", to_bytes(std::string("\x93NUMPY\x02\x00\x10", 9)), "truncated header"});
  {
    auto b = make_file(2, 0, f4_dict("(2, 3)"), 24);
    b[8] = std::byte{0x20};  // header length 0x4E20 = 20000
    b[9] = std::byte{0x4E};
    b[10] = std::byte{0};
    b[11] = std::byte{0};
    v.push_back({"header over 10000 bytes", b, "longer than the 10000-byte limit"});
    b[11] = std::byte{0xFF};  // ~4 GB
    v.push_back({"header of 4 GB", b, "longer than the 10000-byte limit"});
  }
  {
    auto b = make_file(1, 0, f4_dict("(2, 3)"), 0);
    b.resize(40);
    v.push_back({"truncated header", b, "truncated header"});
  }
  v.push_back({"header not a dict", make_file(1, 0, "[1, 2, 3]", 0), "header is not a valid dict"});
  v.push_back({"header empty", make_file(1, 0, "", 0), "header is not a valid dict"});
  v.push_back({"missing shape", make_file(1, 0, "{'descr': '<f4', 'fortran_order': False}", 4), "missing key 'shape'"});
  v.push_back({"extra key", make_file(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", 4),
               "unexpected key 'x'"});
  v.push_back({"duplicate key",
               make_file(1, 0, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", 4),
               "duplicate key 'descr'"});
  v.push_back({"unterminated string", make_file(1, 0, "{'descr: '<f4'}", 4), "header is not a valid dict"});
  v.push_back(
      {"missing colon", make_file(1, 0, "{'descr' '<f4', 'fortran_order': False, 'shape': ()}", 4), "expected ':'"});
  v.push_back({"text after dict", make_file(1, 0, f4_dict("(2, 3)") + " 42", 24), "unexpected text after"});
  v.push_back(
      {"bad bool", make_file(1, 0, "{'descr': '<f4', 'fortran_order': 0, 'shape': ()}", 4), "expected True or False"});
  v.push_back({"1-d shape without comma", make_file(1, 0, f4_dict("(6)"), 24), "not a tuple"});
  v.push_back({"shape a list", make_file(1, 0, f4_dict("[2, 3]"), 24), "expected a tuple"});
  v.push_back({"shape float", make_file(1, 0, f4_dict("(2.5,)"), 24), "expected ',' or ')'"});
  v.push_back({"big-endian", v1_file("'>f4'", "(6,)", 24), "unsupported dtype '>f4' (big-endian"});
  v.push_back({"object", v1_file("'|O'", "(3,)", 24), "unsupported dtype '|O' (Python objects)"});
  v.push_back({"complex", v1_file("'<c8'", "(3,)", 24), "unsupported dtype '<c8' (complex)"});
  v.push_back({"bool", v1_file("'|b1'", "(3,)", 3), "unsupported dtype '|b1' (bool)"});
  v.push_back({"structured", v1_file("[('a', '<f4')]", "(3,)", 12), "structured"});
  v.push_back({"fortran order", make_file(1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}", 24),
               "fortran_order True"});
  v.push_back({"negative dim", make_file(1, 0, f4_dict("(2, -3)"), 24), "negative dimension -3"});
  v.push_back({"dim over int64", make_file(1, 0, f4_dict("(99999999999999999999,)"), 0), "too large"});
  v.push_back({"element count overflow", make_file(1, 0, f4_dict("(4294967296, 4294967296)"), 0), "overflows"});
  v.push_back({"byte count overflow", make_file(1, 0, f4_dict("(4611686018427387904,)"), 0), "overflows"});
  v.push_back({"huge shape, small file", make_file(1, 0, f4_dict("(1099511627776,)"), 24), "truncated data"});
  v.push_back({"truncated data", make_file(1, 0, f4_dict("(2, 3)"), 23), "truncated data"});
  v.push_back({"no data", make_file(1, 0, f4_dict("(2, 3)"), 0), "truncated data"});
  v.push_back({"trailing garbage", make_file(1, 0, f4_dict("(2, 3)"), 25), "trailing garbage: 1 bytes"});
  v.push_back({"v3 non-ascii key", make_file(3, 0, "{'d\xC3\xA9scr': '<f4', 'fortran_order': False, 'shape': ()}", 4),
               "header is not a valid dict"});
  return v;
}

TEST(Npy, MalformedFilesAreRefusedByName) {
  TempDir dir;
  for (const Bad& b : bad_files()) {
    SCOPED_TRACE(b.name);
    try {
      decode_npy(b.bytes, {}, "mem");
      ADD_FAILURE() << "accepted";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(b.expect), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
      EXPECT_EQ(m.rfind("mem: ", 0), 0u) << m;
    }
    // The same through a file: the message starts with the path.
    const std::string path = dir.file("bad.npy");
    write_bytes(path, b.bytes);
    try {
      read_npy(path);
      ADD_FAILURE() << "accepted from a file";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(b.expect), std::string::npos) << m;
      EXPECT_EQ(m.rfind(path + ": ", 0), 0u) << m;
    }
  }
}

TEST(Npy, MissingFileAndDirectory) {
  TempDir dir;
  EXPECT_THROW(
      {
        try {
          read_npy(dir.file("nope.npy"));
        } catch (const InputError& e) {
          EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos) << e.what();
          throw;
        }
      },
      InputError);
  EXPECT_THROW(read_npy(dir.path().string()), InputError);
}

// Every truncation and every single-byte corruption of the header is either read or refused with
// an InputError — never a crash, never another exception (run under ASan+UBSan in CI).
TEST(Npy, TruncationsAndCorruptionsNeverCrash) {
  const auto good = make_file(1, 0, f4_dict("(2, 3)"), 24);
  for (std::size_t n = 0; n < good.size(); ++n) {
    const std::vector<std::byte> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(decode_npy(cut), InputError) << "length " << n;
  }
  const char subs[] = {'\0', '\xFF', '(', ')', '{', '}', '\'', ',', '-', '9', ' ', 'L', 'T', '\\', '\n'};
  for (std::size_t at = 0; at < 64; ++at) {
    for (char c : subs) {
      auto b = good;
      b[at] = static_cast<std::byte>(c);
      try {
        const Tensor t = decode_npy(b);
        EXPECT_LE(t.nbytes(), b.size());
      } catch (const InputError&) {
      }
    }
  }
}

TEST(Npy, WriteFailureLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("missing_dir/x.npy");
  EXPECT_THROW(write_npy(path, Tensor(DType::kF32, {2})), InputError);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_THROW(encode_npy(Tensor(DType::kF32, {2}), NpyWriteOptions{4}), InputError);
}

}  // namespace
}  // namespace dsv4
