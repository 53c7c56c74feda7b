// The safetensors reader/writer: a table of hostile files (one per rule of the format, each refused
// with an InputError naming the file, the tensor and the rule), bit-exact round trips of every
// dtype, the exact bytes the writer produces, tolerance the format allows (unpadded and
// whitespace-padded headers, zero-size and 0-d tensors, dtypes dsv4 does not hold), and the two
// forms of packed fp4 (F4 with the logical shape; I8 bytes as the Hugging Face checkpoints store it).
#include "dsv4/io/safetensors.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "support/temp_files.hpp"

namespace dsv4 {
namespace {

using namespace testing_support;

namespace fs = std::filesystem;

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// A file: the length of `header`, the header, then `data_bytes` bytes of 0xAB.
std::vector<std::byte> make_file(const std::string& header, std::size_t data_bytes) {
  return to_bytes(le64(header.size()) + header + std::string(data_bytes, '\xAB'));
}

// ---- hostile files ----

struct Bad {
  std::string name;
  std::vector<std::byte> bytes;
  std::string rule;    // a substring of the message naming the broken rule
  std::string tensor;  // the tensor the message must name ("" when none is concerned)
};

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

// A file whose header lists `entries` (joined with commas), followed by `data_bytes` bytes.
std::vector<std::byte> entries_file(std::initializer_list<std::string> entries, std::size_t data_bytes) {
  std::string h;
  for (const std::string& e : entries) h += (h.empty() ? "" : ",") + e;
  return make_file("{" + h + "}", data_bytes);
}

// A file of the one tensor "a".
std::vector<std::byte> a_file(const std::string& dtype, const std::string& shape, const std::string& offsets,
                              std::size_t data_bytes) {
  return entries_file({entry("a", dtype, shape, offsets)}, data_bytes);
}

std::vector<Bad> bad_files() {
  std::vector<Bad> v;
  const std::string a = entry("a", "F32", "[2,2]", "[0,16]");
  const std::string b = entry("b", "I32", "[2]", "[16,24]");
  v.push_back({"empty file", {}, "shorter than the 8-byte header length", ""});
  v.push_back({"5-byte file", to_bytes("abcde"), "shorter than the 8-byte header length", ""});
  v.push_back({"header over 100 MB", to_bytes(le64(100'000'001) + "{}"), "over the format's limit of 100000000", ""});
  v.push_back({"header length 2^64-1", to_bytes(le64(~0ull) + "{}"), "over the format's limit", ""});
  v.push_back({"header longer than file", to_bytes(le64(64) + "{\"a\":1}"), "truncated header", ""});
  v.push_back({"header empty", make_file("", 0), "not valid JSON", ""});
  v.push_back({"header not utf-8", make_file("{\"\xff\":1}", 0), "not valid UTF-8", ""});
  v.push_back({"header overlong utf-8", make_file("{\"\xc0\xaf\":1}", 0), "not valid UTF-8", ""});
  v.push_back({"header not json", make_file("{", 0), "not valid JSON", ""});
  v.push_back({"header json with trailing text", make_file("{} x", 0), "not valid JSON", ""});
  v.push_back({"header an array", make_file("[]", 0), "not a JSON object", ""});
  v.push_back({"header a string", make_file("\"x\"", 0), "not a JSON object", ""});
  v.push_back({"entry not an object", make_file("{\"a\":3}", 0), "entry is not an object", "a"});
  v.push_back({"duplicate tensor", entries_file({a, a}, 32), "duplicate key: tensor 'a' is listed twice", "a"});
  v.push_back({"duplicate field",
               make_file("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "tensor 'a': duplicate key 'dtype'", "a"});
  v.push_back({"duplicate metadata key", make_file("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0),
               "'__metadata__': duplicate key 'k'", "__metadata__"});
  v.push_back(
      {"missing dtype", make_file("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "missing 'dtype'", "a"});
  v.push_back(
      {"missing shape", make_file("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8), "missing 'shape'", "a"});
  v.push_back(
      {"missing offsets", make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8), "missing 'data_offsets'", "a"});
  v.push_back({"dtype not a string", make_file("{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "'dtype' is not a string", "a"});
  v.push_back({"unknown dtype", a_file("F7", "[2]", "[0,8]", 8), "unknown dtype 'F7'", "a"});
  v.push_back({"lower-case dtype", a_file("f32", "[2]", "[0,8]", 8), "unknown dtype 'f32'", "a"});
  v.push_back({"shape not an array", a_file("F32", "2", "[0,8]", 8), "'shape' is not an array", "a"});
  v.push_back({"negative dimension", a_file("F32", "[-2]", "[0,8]", 8), "entry -2 is not a non-negative integer", "a"});
  v.push_back(
      {"fractional dimension", a_file("F32", "[2.5]", "[0,8]", 8), "entry 2.5 is not a non-negative integer", "a"});
  v.push_back({"dimension over 2^64", a_file("F32", "[18446744073709551616]", "[0,8]", 8),
               "is not a non-negative integer", "a"});
  v.push_back({"dimension over 2^63-1", a_file("F32", "[0,9223372036854775808]", "[0,0]", 0), "over 2^63 - 1", "a"});
  v.push_back({"element count overflow (upstream test)", a_file("I32", "[2,9223372036854775807,2]", "[0,16]", 16),
               "overflows a 64-bit element count", "a"});
  v.push_back({"bit count overflow", a_file("I32", "[2,4611686018427387904]", "[0,16]", 16),
               "overflows a 64-bit bit count", "a"});
  v.push_back({"F4 not whole bytes", a_file("F4", "[3]", "[0,2]", 2), "12 bits, not a whole number of bytes", "a"});
  v.push_back({"size != numel x dtype size (upstream test)", a_file("I32", "[2,2]", "[0,4]", 4),
               "needs 16 bytes but data_offsets [0, 4] span 4", "a"});
  v.push_back({"offsets not a pair", a_file("F32", "[2]", "[0]", 8), "'data_offsets' is not a [begin, end] pair", "a"});
  v.push_back({"offsets negative", a_file("F32", "[0]", "[-1,-1]", 0), "entries are not non-negative integers", "a"});
  v.push_back({"offsets end before begin", a_file("F32", "[2]", "[8,0]", 8), "end before they begin", "a"});
  v.push_back(
      {"gap after the header", a_file("F32", "[2]", "[8,16]", 16), "leaving a gap of 8 bytes after the header", "a"});
  v.push_back({"gap between tensors",
               entries_file({entry("a", "F32", "[2]", "[0,8]"), entry("b", "F32", "[2]", "[12,20]")}, 20),
               "leaving a gap of 4 bytes after tensor 'a'", "b"});
  v.push_back({"overlap", entries_file({entry("a", "F32", "[2]", "[0,8]"), entry("b", "F32", "[2]", "[4,12]")}, 12),
               "overlap tensor 'a'", "b"});
  v.push_back({"same offsets twice (upstream json attack)",
               entries_file({entry("a", "F32", "[2]", "[0,8]"), entry("b", "F32", "[2]", "[0,8]")}, 8),
               "overlap tensor 'a'", "b"});
  v.push_back(
      {"trailing bytes (polyglot file)", entries_file({a, b}, 25), "1 trailing bytes after the last tensor", ""});
  v.push_back({"truncated data", entries_file({a, b}, 23), "truncated data: the tensors need 24 bytes", "b"});
  v.push_back({"no data", entries_file({a}, 0), "truncated data", "a"});
  v.push_back(
      {"metadata not an object", make_file("{\"__metadata__\":[1]}", 0), "'__metadata__' is not an object", ""});
  v.push_back({"metadata value not a string", make_file("{\"__metadata__\":{\"k\":1}}", 0),
               "'__metadata__' entry 'k' is not a string", ""});
  v.push_back(
      {"nested shape", a_file("F32", "[[2]]", "[0,8]", 8), "tensor 'a': nested deeper than the format allows", "a"});
  v.push_back({"deep nesting bomb", make_file("{\"a\":" + std::string(100000, '[') + "}", 0), "nested deeper", "a"});
  v.push_back({"control byte in a name", make_file("{\"x\\ny\":3}", 0), "tensor 'x\\x0ay'", ""});
  return v;
}

void expect_refused(const std::string& where, const std::string& msg, const Bad& b) {
  EXPECT_NE(msg.find(b.rule), std::string::npos) << msg;
  if (!b.tensor.empty()) {
    EXPECT_NE(msg.find("'" + b.tensor + "'"), std::string::npos) << "names the tensor: " << msg;
  }
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  EXPECT_EQ(msg.rfind(where + ": ", 0), 0u) << "names the file: " << msg;
}

TEST(Safetensors, HostileFilesAreRefusedNamingTheRule) {
  TempDir dir;
  const auto table = bad_files();
  EXPECT_GE(table.size(), 12u);
  for (const Bad& b : table) {
    SCOPED_TRACE(b.name);
    try {
      SafetensorsFile::from_bytes(b.bytes, "mem.safetensors");
      ADD_FAILURE() << "accepted from memory";
    } catch (const InputError& e) {
      expect_refused("mem.safetensors", e.what(), b);
    }
    const std::string path = dir.file("bad.safetensors");
    write_bytes(path, b.bytes);
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << "accepted from a file";
    } catch (const InputError& e) {
      expect_refused(path, e.what(), b);
    }
  }
}

// Files that are valid safetensors but whose tensor cannot be read as asked: refused at read time,
// naming the tensor.
TEST(Safetensors, ReadTimeRefusals) {
  const auto f = SafetensorsFile::from_bytes(
      make_file("{" + entry("i16", "I16", "[2]", "[0,4]") + "," + entry("odd", "F4", "[2,3]", "[4,7]") + "," +
                    entry("f", "F32", "[1]", "[7,11]") + "}",
                11),
      "m");
  struct Case {
    std::string name;
    SafetensorsReadOptions opts;
    std::string rule;
  };
  const std::vector<Case> cases = {
      {"missing", {}, "tensor 'missing': no such tensor"},
      {"i16", {}, "tensor 'i16': dtype I16 is valid safetensors but has no dsv4 dtype"},
      {"odd", {}, "tensor 'odd': F4 shape [2, 3] does not have an even last dimension"},
      {"f", {true}, "tensor 'f': packed fp4 requested but the dtype is F32"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    try {
      f.read(c.name, c.opts);
      ADD_FAILURE() << "accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(c.rule), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("m: ", 0), 0u) << e.what();
    }
  }
  std::vector<std::byte> small(3);
  EXPECT_THROW(f.read_raw("i16", small), InputError);
  EXPECT_THROW(SafetensorsFile::open("/nonexistent/x.safetensors"), InputError);
  EXPECT_THROW(SafetensorsFile::open(fs::temp_directory_path().string()), InputError);
}

// Every prefix of a valid file and every single-byte corruption of its header either parses or is
// refused with an InputError — never a crash, never another exception type.
TEST(Safetensors, TruncationsAndCorruptionsNeverCrash) {
  const Tensor x = patterned(DType::kF32, {3, 2});
  const Tensor y = patterned(DType::kBF16, {5});
  const auto good = encode_safetensors({{"x", &x}, {"y", &y}}, {{{"format", "pt"}}});
  for (std::size_t len = 0; len < good.size(); ++len) {
    std::vector<std::byte> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(SafetensorsFile::from_bytes(b), InputError) << "prefix " << len;
  }
  int accepted = 0;
  for (std::size_t at = 0; at < good.size() - x.nbytes() - y.nbytes(); ++at) {
    for (unsigned v : {0x00u, 0x20u, 0x22u, 0x2Cu, 0x30u, 0x39u, 0x5Bu, 0x7Du, 0xFFu}) {
      auto b = good;
      b[at] = static_cast<std::byte>(v);
      try {
        const auto f = SafetensorsFile::from_bytes(b);
        for (const auto& e : f.entries()) {
          try {
            f.read(e.name);
          } catch (const InputError&) {
          }
        }
        ++accepted;
      } catch (const InputError&) {
      }
    }
  }
  EXPECT_GT(accepted, 0);  // e.g. a space written over a space
}

// ---- round trips ----

TEST(Safetensors, RoundTripEveryDtypeBitExact) {
  TempDir dir;
  const std::vector<DType> dtypes = {DType::kF64,  DType::kF32,  DType::kBF16,   DType::kF16, DType::kE4M3,
                                     DType::kE5M2, DType::kE8M0, DType::kE2M1x2, DType::kI8,  DType::kI32,
                                     DType::kI64,  DType::kU8,   DType::kU16};
  const std::vector<std::vector<std::int64_t>> shapes = {{}, {0}, {6}, {3, 4}, {2, 0, 4}, {2, 3, 2, 4}};
  std::map<std::string, Tensor> all;
  unsigned salt = 0;
  for (DType d : dtypes) {
    for (const auto& shape : shapes) {
      if (d == DType::kE2M1x2 && shape.empty()) continue;  // packed fp4 needs a last dimension
      all.emplace(std::string(dtype_name(d)) + "/" + std::to_string(salt), patterned(d, shape, salt));
      ++salt;
    }
  }
  const std::string path = dir.file("all.safetensors");
  write_safetensors(path, all, {{{"format", "dsv4"}, {"note", "x\ny \xC3\xA9"}}});
  const auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.entries().size(), all.size());
  EXPECT_EQ(f.metadata().at("note"), "x\ny \xC3\xA9");
  for (const auto& [name, t] : all) {
    SCOPED_TRACE(name);
    expect_same(t, f.read(name));
  }
  // The in-memory encoder writes the same bytes as the file writer.
  NamedTensors v;
  for (const auto& [k, t] : all) v.emplace_back(k, &t);
  const auto bytes = encode_safetensors(v, {{{"format", "dsv4"}, {"note", "x\ny \xC3\xA9"}}});
  std::ifstream in(path, std::ios::binary);
  const std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(on_disk.size(), bytes.size());
  EXPECT_EQ(0, std::memcmp(on_disk.data(), bytes.data(), bytes.size()));
  const auto read_all = read_safetensors(path);
  EXPECT_EQ(read_all.size(), all.size());
}

// The bytes of a small file: header padded with spaces to a multiple of 8, data ordered by
// decreasing dtype alignment and then by name, as the format's own writer orders it.
TEST(Safetensors, ExactBytesOfASmallFile) {
  Tensor i32(DType::kI32, {2});
  i32.values<std::int32_t>()[0] = 1;
  i32.values<std::int32_t>()[1] = -2;
  Tensor u8(DType::kU8, {3});
  u8.values<std::uint8_t>()[2] = 7;
  Tensor f64(DType::kF64, {});
  f64.values<double>()[0] = 1.5;
  const auto bytes = encode_safetensors({{"z", &u8}, {"b", &i32}, {"a", &i32}, {"s", &f64}});
  const std::string header = R"({"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
                             R"("a":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},)"
                             R"("b":{"dtype":"I32","shape":[2],"data_offsets":[16,24]},)"
                             R"("z":{"dtype":"U8","shape":[3],"data_offsets":[24,27]}})";
  std::string padded = header;
  while (padded.size() % 8) padded += ' ';
  std::string data;
  const double d = 1.5;
  data.append(reinterpret_cast<const char*>(&d), 8);
  const std::int32_t iv[2] = {1, -2};
  data.append(reinterpret_cast<const char*>(iv), 8);
  data.append(reinterpret_cast<const char*>(iv), 8);
  data += std::string("\0\0\x07", 3);
  const auto expect = to_bytes(le64(padded.size()) + padded + data);
  ASSERT_EQ(bytes.size(), expect.size());
  EXPECT_EQ(0, std::memcmp(bytes.data(), expect.data(), bytes.size()));
}

// What the format allows and the reader must accept.
TEST(Safetensors, ToleranceTheFormatAllows) {
  // The format's own documentation example: an unpadded 60-byte header.
  const std::string doc = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
  ASSERT_EQ(doc.size(), 60u);
  const auto f = SafetensorsFile::from_bytes(make_file(doc, 16));
  EXPECT_EQ(f.names(), std::vector<std::string>{"test"});
  const Tensor t = f.read("test");
  EXPECT_EQ(t.dtype(), DType::kI32);
  EXPECT_EQ(t.shape(), (std::vector<std::int64_t>{2, 2}));
  // Leading and trailing JSON whitespace; an empty file of tensors; extra fields ignored.
  EXPECT_TRUE(SafetensorsFile::from_bytes(make_file("\t\n{} \r\n", 0)).entries().empty());
  const auto g = SafetensorsFile::from_bytes(
      make_file("{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2],\"extra\":[1]}}", 2));
  EXPECT_EQ(g.read("a").dtype(), DType::kF16);
  // Zero-size tensors at the same offset, a 0-d tensor, tensors listed out of data order.
  const auto h = SafetensorsFile::from_bytes(
      make_file("{" + entry("s", "F32", "[]", "[4,8]") + "," + entry("e1", "I64", "[2,0]", "[0,0]") + "," +
                    entry("e0", "F32", "[0]", "[0,0]") + "," + entry("b", "BF16", "[2]", "[0,4]") + "}",
                8));
  EXPECT_EQ(h.read("s").shape(), std::vector<std::int64_t>{});
  EXPECT_EQ(h.read("e1").nbytes(), 0u);
  EXPECT_EQ(h.names().back(), "s");
  // A dtype dsv4 does not hold does not make the file unreadable.
  const auto k = SafetensorsFile::from_bytes(
      entries_file({entry("u", "U64", "[1]", "[0,8]"), entry("f", "F32", "[1]", "[8,12]")}, 12));
  EXPECT_EQ(k.read("f").dtype(), DType::kF32);
  EXPECT_EQ(k.entry("u").dtype, "U64");
}

// Packed fp4: "F4" with the logical shape, or "I8" bytes with the last dimension halved.
TEST(Safetensors, PackedFp4BothForms) {
  const Tensor w = patterned(DType::kE2M1x2, {4, 64});  // 4 × 64 elements, 128 bytes
  const Tensor s = patterned(DType::kE8M0, {4, 2});
  // F4 (as safetensors saves torch.float4_e2m1fn_x2): shape counts 4-bit elements.
  const auto f4 = SafetensorsFile::from_bytes(encode_safetensors({{"w", &w}, {"w.scale", &s}}));
  EXPECT_EQ(f4.entry("w").dtype, "F4");
  EXPECT_EQ(f4.entry("w").shape, (std::vector<std::int64_t>{4, 64}));
  EXPECT_EQ(f4.entry("w").nbytes(), 128u);
  EXPECT_EQ(f4.entry("w.scale").dtype, "F8_E8M0");
  expect_same(w, f4.read("w"));
  expect_same(s, f4.read("w.scale"));
  // I8 (as the Hugging Face DeepSeek-V4 checkpoints store the experts): [4, 32] bytes.
  SafetensorsWriteOptions o;
  o.fp4_as = SafetensorsWriteOptions::Fp4As::kI8;
  const auto i8 = SafetensorsFile::from_bytes(encode_safetensors({{"w", &w}}, o));
  EXPECT_EQ(i8.entry("w").dtype, "I8");
  EXPECT_EQ(i8.entry("w").shape, (std::vector<std::int64_t>{4, 32}));
  EXPECT_EQ(i8.read("w").dtype(), DType::kI8);
  expect_same(w, i8.read("w", {.bytes_as_packed_fp4 = true}));
}

TEST(Safetensors, WriterRefusals) {
  TempDir dir;
  const Tensor t = patterned(DType::kF32, {2});
  EXPECT_THROW(encode_safetensors({{"a", &t}, {"a", &t}}), InputError);
  EXPECT_THROW(encode_safetensors({{"", &t}}), InputError);
  EXPECT_THROW(encode_safetensors({{"__metadata__", &t}}), InputError);
  EXPECT_THROW(encode_safetensors({{"\xff", &t}}), InputError);
  EXPECT_THROW(encode_safetensors({{"a", nullptr}}), InputError);
  // A failed write leaves nothing behind.
  const std::string path = dir.file("no/such/dir/x.safetensors");
  EXPECT_THROW(write_safetensors(path, NamedTensors{{"a", &t}}), InputError);
  EXPECT_FALSE(fs::exists(path));
  try {
    write_safetensors(dir.file("dup.safetensors"), NamedTensors{{"a", &t}, {"a", &t}});
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("dup.safetensors: tensor 'a': duplicate name"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir.file("dup.safetensors")));
}

TEST(Safetensors, DtypeCodes) {
  EXPECT_EQ(safetensors_dtype_to_dsv4("F8_E8M0"), DType::kE8M0);
  EXPECT_EQ(safetensors_dtype_to_dsv4("F8_E4M3"), DType::kE4M3);
  EXPECT_EQ(safetensors_dtype_to_dsv4("F4"), DType::kE2M1x2);
  EXPECT_EQ(safetensors_dtype_to_dsv4("BF16"), DType::kBF16);
  EXPECT_EQ(safetensors_dtype_to_dsv4("I16"), std::nullopt);
  EXPECT_EQ(safetensors_dtype_bits("I16"), 16u);
  EXPECT_EQ(safetensors_dtype_bits("F4"), 4u);
  EXPECT_EQ(safetensors_dtype_bits("F7"), std::nullopt);
  EXPECT_EQ(safetensors_dtype_code(DType::kE8M0), "F8_E8M0");
  EXPECT_EQ(safetensors_dtype_code(DType::kU16), "U16");
}

}  // namespace
}  // namespace dsv4
