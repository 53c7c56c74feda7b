// The HDF5 wrapper: bit-exact round trips of every dtype (contiguous and gzip-chunked), the HDF5
// types it writes (what h5py will see), nested groups, listing, attributes, string datasets,
// atomic creation, and hostile files (not HDF5, truncated, corrupted, unsupported types, a dtype
// attribute that contradicts the storage, null dataspace, absurd shapes, links and external
// storage), each refused with an InputError naming the file and the object.
#include "dsv4/io/hdf5_file.hpp"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "support/expect_errors.hpp"
#include "support/temp_files.hpp"

namespace dsv4 {
namespace {

using namespace testing_support;

namespace fs = std::filesystem;

std::vector<char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, const std::vector<char>& b) {
  std::ofstream o(path, std::ios::binary);
  o.write(b.data(), static_cast<std::streamsize>(b.size()));
}

const std::vector<DType> kAll = {DType::kF64,  DType::kF32,  DType::kBF16,   DType::kF16, DType::kE4M3,
                                 DType::kE5M2, DType::kE8M0, DType::kE2M1x2, DType::kI8,  DType::kI32,
                                 DType::kI64,  DType::kU8,   DType::kU16};

// One patterned tensor of a file written by write_patterned.
struct PatternedEntry {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
};

// Creates `path` with a patterned tensor per entry, lets `more` add to it, and commits.
void write_patterned(const std::string& path, const std::vector<PatternedEntry>& entries,
                     const std::function<void(Hdf5File&)>& more = {}) {
  Hdf5File f = Hdf5File::create(path);
  for (const PatternedEntry& e : entries) f.write(e.name, patterned(e.dtype, e.shape));
  if (more) more(f);
  f.commit();
}

TEST(Hdf5File, RoundTripEveryDtypeBitExact) {
  TempDir dir;
  const std::string path = dir.file("all.h5");
  const std::vector<std::vector<std::int64_t>> shapes = {{}, {0}, {6}, {3, 4}, {2, 0, 4}, {2, 3, 2, 4}, {300, 1024}};
  std::map<std::string, Tensor> all;
  {
    Hdf5File f = Hdf5File::create(path);
    unsigned salt = 0;
    for (int deflate : {0, 6}) {
      for (DType d : kAll) {
        for (const auto& shape : shapes) {
          if (d == DType::kE2M1x2 && shape.empty()) continue;
          const std::string name =
              "z" + std::to_string(deflate) + "/" + std::string(dtype_name(d)) + "/" + std::to_string(salt);
          Tensor t = patterned(d, shape, salt++);
          f.write(name, t, {deflate});
          all.emplace(name, std::move(t));
        }
      }
    }
    f.commit();
  }
  const Hdf5File f = Hdf5File::open(path);
  const auto names = f.list_datasets();
  EXPECT_EQ(names.size(), all.size());
  for (const auto& [name, t] : all) {
    SCOPED_TRACE(name);
    expect_same(t, f.read(name));
    EXPECT_EQ(f.info(name).dtype, t.dtype());
  }
  EXPECT_EQ(f.list_datasets("z0/bfloat16").size(), shapes.size());
  EXPECT_EQ(f.list_children("/"), (std::vector<std::string>{"z0", "z6"}));
}

// What h5py sees: native little-endian types, raw codes as uint8/uint16 with a dtype attribute,
// float16 as an IEEE half, packed fp4 as bytes.
TEST(Hdf5File, StoredTypesAreWhatH5pyReads) {
  TempDir dir;
  const std::string path = dir.file("t.h5");
  write_patterned(path, {{"bf", DType::kBF16, {2, 3}},
                         {"h", DType::kF16, {4}},
                         {"fp4", DType::kE2M1x2, {2, 8}},
                         {"s", DType::kE8M0, {3}},
                         {"d", DType::kF64, {1}}});
  {
    const Hdf5File f = Hdf5File::open(path);
    EXPECT_EQ(f.info("bf").storage, "uint16");
    EXPECT_EQ(f.attr_string("bf", "dtype"), "bfloat16");
    EXPECT_EQ(f.info("h").storage, "float16");
    EXPECT_FALSE(f.has_attr("h", "dtype"));
    EXPECT_EQ(f.info("fp4").storage, "uint8");
    EXPECT_EQ(f.info("fp4").shape, (std::vector<std::int64_t>{2, 4}));
    EXPECT_EQ(f.attr_string("fp4", "dtype"), "float4_e2m1fn_x2");
    EXPECT_EQ(f.attr_string("s", "dtype"), "float8_e8m0fnu");
    EXPECT_EQ(f.info("d").storage, "float64");
  }
  // The same through the C API, as another reader would see it.
  const hid_t h = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(h, 0);
  const hid_t ds = H5Dopen2(h, "/bf", H5P_DEFAULT);
  const hid_t t = H5Dget_type(ds);
  EXPECT_GT(H5Tequal(t, H5T_STD_U16LE), 0);
  H5Tclose(t);
  H5Dclose(ds);
  const hid_t ds2 = H5Dopen2(h, "/h", H5P_DEFAULT);
  const hid_t t2 = H5Dget_type(ds2);
  EXPECT_EQ(H5Tget_class(t2), H5T_FLOAT);
  EXPECT_EQ(H5Tget_size(t2), 2u);
  H5Tclose(t2);
  H5Dclose(ds2);
  H5Fclose(h);
}

TEST(Hdf5File, GroupsAttributesAndStrings) {
  TempDir dir;
  const std::string path = dir.file("g.h5");
  {
    Hdf5File f = Hdf5File::create(path);
    f.create_group("prefill/layers.0.attn");
    f.create_group("/prefill/layers.0.attn/");  // exists: fine
    EXPECT_TRUE(f.exists("prefill"));
    EXPECT_FALSE(f.is_dataset("prefill"));
    f.write("prefill/layers.0.attn/out", patterned(DType::kF32, {2, 2}));
    f.write("decode0/layers.0.ffn/out1", patterned(DType::kI64, {2, 6}));
    EXPECT_TRUE(f.is_dataset("/decode0/layers.0.ffn/out1"));
    f.set_attr("/", "format", "dsv4-golden");
    f.set_attr("/", "version", std::int64_t{1});
    f.set_attr("prefill/layers.0.attn/out", "tol", 1.5e-3);
    f.set_attr("prefill/layers.0.attn/out", "tol", 2.5e-3);  // replaced
    f.set_attr("prefill", "margins", std::vector<double>{0.5, -1.0, 3.0});
    f.set_attr("prefill", "steps", std::vector<std::int64_t>{0, 4, 8});
    f.set_attr("prefill", "empty", std::vector<double>{});
    f.write_string("config", R"({"dim": 64, "note": "é"})");
    f.commit();
  }
  const Hdf5File f = Hdf5File::open(path);
  EXPECT_EQ(f.list_datasets(),
            (std::vector<std::string>{"config", "decode0/layers.0.ffn/out1", "prefill/layers.0.attn/out"}));
  EXPECT_EQ(f.list_datasets("prefill"), (std::vector<std::string>{"prefill/layers.0.attn/out"}));
  EXPECT_EQ(f.attr_string("/", "format"), "dsv4-golden");
  EXPECT_EQ(f.attr_int64("/", "version"), 1);
  EXPECT_EQ(f.attr_double("/", "version"), 1.0);  // an integer read as a double
  EXPECT_EQ(f.attr_double("prefill/layers.0.attn/out", "tol"), 2.5e-3);
  EXPECT_EQ(f.attr_doubles("prefill", "margins"), (std::vector<double>{0.5, -1.0, 3.0}));
  EXPECT_EQ(f.attr_int64s("prefill", "steps"), (std::vector<std::int64_t>{0, 4, 8}));
  EXPECT_TRUE(f.attr_doubles("prefill", "empty").empty());
  EXPECT_EQ(f.attr_names("prefill"), (std::vector<std::string>{"empty", "margins", "steps"}));
  EXPECT_EQ(f.read_string("config"), R"({"dim": 64, "note": "é"})");
  // Wrong kinds and missing things, each named.
  EXPECT_NE(error_of([&] { f.attr_int64("prefill/layers.0.attn/out", "tol"); }).find("is not an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { f.attr_string("/", "version"); }).find("is not a string"), std::string::npos);
  EXPECT_NE(error_of([&] { f.attr_double("prefill", "margins"); }).find("holds 3 values, not one"), std::string::npos);
  EXPECT_NE(error_of([&] { f.attr_double("prefill", "nope"); }).find("missing attribute 'nope' of 'prefill'"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { f.read("prefill/layers.0.attn/missing"); }).find("no object 'prefill/layers.0.attn/missing'"),
      std::string::npos);
  EXPECT_NE(error_of([&] { f.read("prefill"); }).find("'prefill' is not a dataset"), std::string::npos);
  EXPECT_NE(error_of([&] { f.read("config"); }).find("'config': string storage has no dsv4 dtype"), std::string::npos);
  EXPECT_NE(error_of([&] { f.read_string("decode0/layers.0.ffn/out1"); }).find("is not a string"), std::string::npos);
  EXPECT_NE(error_of([&] { f.read("a//b"); }).find("empty component"), std::string::npos);
  EXPECT_NE(error_of([&] { f.read("a/../b"); }).find("'.' or '..'"), std::string::npos);
  EXPECT_NE(error_of([&] { f.list_datasets("config"); }).find("is not a group"), std::string::npos);
}

TEST(Hdf5File, WritingRules) {
  TempDir dir;
  const std::string path = dir.file("w.h5");
  {
    Hdf5File f = Hdf5File::create(path);
    EXPECT_FALSE(fs::exists(path));  // written under a temporary name until commit
    f.write("a/x", patterned(DType::kF32, {2}));
    EXPECT_NE(error_of([&] { f.write("a/x", patterned(DType::kF32, {2})); }).find("'a/x' already exists"),
              std::string::npos);
    EXPECT_NE(error_of([&] { f.write("/", patterned(DType::kF32, {2})); }).find("root"), std::string::npos);
    EXPECT_NE(error_of([&] { f.create_group("a/x"); }).find("is not a group"), std::string::npos);
    EXPECT_NE(error_of([&] { f.write("b", patterned(DType::kF32, {2}), {10}); }).find("deflate"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(path));  // destroyed without commit: nothing left
  EXPECT_TRUE(fs::is_empty(fs::path(path).parent_path()));
  {
    Hdf5File f = Hdf5File::create(path);
    f.write("a", patterned(DType::kF32, {2}));
    f.commit();
    EXPECT_THROW(f.read("a"), InputError);  // closed
  }
  // open_rw: modify in place (as a tamper test would).
  {
    Hdf5File f = Hdf5File::open_rw(path);
    f.set_attr("a", "sha256", "00");
    f.write("b", patterned(DType::kU8, {1}));
  }
  const Hdf5File f = Hdf5File::open(path);
  EXPECT_EQ(f.attr_string("a", "sha256"), "00");
  EXPECT_EQ(f.list_datasets(), (std::vector<std::string>{"a", "b"}));
}

// The same content gives the same bytes (no modification times in object headers): goldens
// regenerated later compare bit for bit.
TEST(Hdf5File, SameContentSameBytes) {
  TempDir dir;
  auto make = [&](const std::string& name) {
    Hdf5File f = Hdf5File::create(dir.file(name));
    f.write("prefill/layers.0.attn/out", patterned(DType::kF32, {4, 4}));
    f.write("prefill/layers.0.ffn/out0", patterned(DType::kBF16, {3}), {6});
    f.create_group("decode0/empty");
    f.write_string("config", "{}");
    f.set_attr("/", "version", std::int64_t{1});
    f.commit();
    return slurp(dir.file(name));
  };
  const auto a = make("a.h5");
  ::sleep(1);  // object header times have a resolution of one second
  const auto b = make("b.h5");
  EXPECT_EQ(a, b);
}

// Files made with the raw C API, as foreign writers might make them.
class Foreign {
 public:
  explicit Foreign(const std::string& path) : f_(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) {}
  ~Foreign() { H5Fclose(f_); }
  hid_t id() const { return f_; }
  // A dataset of file type `ft` and shape `dims`, data written from `data` with memory type `mt`.
  void dataset(const char* name, hid_t ft, std::vector<hsize_t> dims, hid_t mt = -1, const void* data = nullptr,
               hid_t dcpl = H5P_DEFAULT) {
    const hid_t sp = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    const hid_t ds = H5Dcreate2(f_, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (data) H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(ds);
    H5Sclose(sp);
  }
  void string_attr(const char* obj, const char* name, const char* value) {
    const hid_t o = H5Oopen(f_, obj, H5P_DEFAULT);
    const hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, std::strlen(value));  // fixed-length, as numpy's 'S' strings
    const hid_t sp = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, value);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Oclose(o);
  }

 private:
  hid_t f_;
};

TEST(Hdf5File, ForeignTypesAndAttributes) {
  TempDir dir;
  const std::string path = dir.file("foreign.h5");
  const std::string ext = dir.file("ext.bin");
  {
    const std::vector<float> fv = {1.5f, -2.25f, 3.0f};
    const std::vector<std::uint16_t> bits = {0x3FC0, 0xC010, 0x4040};
    const std::vector<std::int16_t> sbits = {0x3FC0, static_cast<std::int16_t>(0xC010), 0x4040};
    const std::vector<std::uint32_t> u32 = {1, 2, 3};
    Foreign w(path);
    w.dataset("/be", H5T_IEEE_F32BE, {3}, H5T_NATIVE_FLOAT, fv.data());
    w.dataset("/bf16_u16", H5T_STD_U16LE, {3}, H5T_NATIVE_UINT16, bits.data());
    w.string_attr("/bf16_u16", "dtype", "bfloat16");  // fixed-length string attribute
    w.dataset("/bf16_i16", H5T_STD_I16LE, {3}, H5T_NATIVE_INT16, sbits.data());
    w.string_attr("/bf16_i16", "dtype", "torch.bfloat16");
    w.dataset("/plain_i16", H5T_STD_I16LE, {3}, H5T_NATIVE_INT16, sbits.data());
    w.dataset("/u16", H5T_STD_U16LE, {3}, H5T_NATIVE_UINT16, bits.data());
    w.dataset("/u32", H5T_STD_U32LE, {3}, H5T_NATIVE_UINT32, u32.data());
    w.dataset("/f32_says_bf16", H5T_IEEE_F32LE, {3}, H5T_NATIVE_FLOAT, fv.data());
    w.string_attr("/f32_says_bf16", "dtype", "bfloat16");
    w.dataset("/f32_says_int8", H5T_IEEE_F32LE, {3}, H5T_NATIVE_FLOAT, fv.data());
    w.string_attr("/f32_says_int8", "dtype", "int8");
    w.dataset("/f32_says_f32", H5T_IEEE_F32LE, {3}, H5T_NATIVE_FLOAT, fv.data());
    w.string_attr("/f32_says_f32", "dtype", "float32");
    {
      const hid_t ct = H5Tcreate(H5T_COMPOUND, 8);
      H5Tinsert(ct, "a", 0, H5T_NATIVE_FLOAT);
      H5Tinsert(ct, "b", 4, H5T_NATIVE_FLOAT);
      w.dataset("/compound", ct, {2});
      H5Tclose(ct);
    }
    {
      const hid_t sp = H5Screate(H5S_NULL);
      const hid_t ds = H5Dcreate2(w.id(), "/null", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      H5Dclose(ds);
      H5Sclose(sp);
    }
    {
      // 2^20 × 2^20 × 2^20 float64 in a tiny file: chunked, never written.
      const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      const hsize_t chunk[3] = {1, 1, 1024};
      H5Pset_chunk(dcpl, 3, chunk);
      w.dataset("/huge", H5T_IEEE_F64LE, {1u << 20, 1u << 20, 1u << 20}, -1, nullptr, dcpl);
      // 8 GiB, under the read limit, but never written: nothing in the file backs it.
      const hid_t dcpl1 = H5Pcreate(H5P_DATASET_CREATE);
      const hsize_t chunk1[1] = {1024};
      H5Pset_chunk(dcpl1, 1, chunk1);
      w.dataset("/unwritten_chunked", H5T_IEEE_F64LE, {1u << 30}, -1, nullptr, dcpl1);
      H5Pclose(dcpl1);
      H5Pclose(dcpl);
    }
    {
      std::ofstream(ext, std::ios::binary) << std::string(12, 'x');
      const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      H5Pset_external(dcpl, ext.c_str(), 0, 12);
      w.dataset("/external_storage", H5T_IEEE_F32LE, {3}, -1, nullptr, dcpl);
      H5Pclose(dcpl);
    }
    w.dataset("/unwritten_contiguous", H5T_IEEE_F64LE, {1u << 30});
    H5Gclose(H5Gcreate2(w.id(), "/g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    w.dataset("/g/x", H5T_IEEE_F32LE, {3}, H5T_NATIVE_FLOAT, fv.data());
    H5Lcreate_soft("/g/x", w.id(), "/soft", H5P_DEFAULT, H5P_DEFAULT);
    H5Lcreate_soft("/g", w.id(), "/softg", H5P_DEFAULT, H5P_DEFAULT);
    H5Lcreate_external("other.h5", "/x", w.id(), "/extlink", H5P_DEFAULT, H5P_DEFAULT);
    H5Lcreate_hard(w.id(), "/g", w.id(), "/g/loop", H5P_DEFAULT, H5P_DEFAULT);  // a cycle
  }
  const Hdf5File f = Hdf5File::open(path);
  // converted or reinterpreted as documented
  const Tensor be = f.read("be");
  EXPECT_EQ(be.dtype(), DType::kF32);
  EXPECT_EQ(be.values<float>()[1], -2.25f);
  EXPECT_EQ(f.info("be").storage, "float32 (big-endian)");
  const Tensor b1 = f.read("bf16_u16");
  const Tensor b2 = f.read("bf16_i16");
  EXPECT_EQ(b1.dtype(), DType::kBF16);
  expect_same(b1, b2);
  EXPECT_EQ(b1.values<std::uint16_t>()[1], 0xC010);
  EXPECT_EQ(f.read("u16").dtype(), DType::kU16);
  EXPECT_EQ(f.read("f32_says_f32").dtype(), DType::kF32);
  // refused, naming the dataset and the reason
  struct Case {
    const char* name;
    const char* rule;
  };
  const std::vector<Case> cases = {
      {"plain_i16", "'plain_i16': int16 storage has no dsv4 dtype"},
      {"u32", "'u32': uint32 storage has no dsv4 dtype"},
      {"f32_says_bf16", "'f32_says_bf16': attribute dtype='bfloat16' does not match its float32 storage"},
      {"f32_says_int8", "'f32_says_int8': attribute dtype='int8' does not match its float32 storage"},
      {"compound", "'compound': compound storage has no dsv4 dtype"},
      {"null", "'null' has a null or unknown dataspace"},
      {"huge", "'huge': shape [1048576, 1048576, 1048576] of float64 is over the read limit"},
      {"unwritten_chunked",
       "'unwritten_chunked': shape [1073741824] of float64 needs 8589934592 bytes, only 0 are stored"},
      {"unwritten_contiguous",
       "'unwritten_contiguous': shape [1073741824] of float64 needs 8589934592 bytes, the file has"},
      {"external_storage", "'external_storage': data stored in external files is not read"},
      {"soft", "'soft' is a soft or external link (not followed)"},
      {"softg/x", "'softg' is a soft or external link"},
      {"extlink", "'extlink' is a soft or external link"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string m = error_of([&] { f.read(c.name); });
    EXPECT_NE(m.find(c.rule), std::string::npos) << m;
    EXPECT_EQ(m.rfind(path + ": ", 0), 0u) << m;
  }
  EXPECT_NE(f.info("u32").problem.find("uint32"), std::string::npos);
  EXPECT_FALSE(f.info("u32").dtype);
  // Listing follows hard links only, visits each object once (the cycle terminates).
  const auto names = f.list_datasets();
  EXPECT_EQ(std::count(names.begin(), names.end(), "g/x"), 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "soft"), 0);
  EXPECT_EQ(std::count(names.begin(), names.end(), "extlink"), 0);
  // A small read limit refuses even a real dataset.
  EXPECT_NE(error_of([&] { f.read("be", {.max_bytes = 11}); }).find("over the read limit of 11 bytes"),
            std::string::npos);
}

// Not HDF5, truncated, corrupted: an InputError naming the file — never a crash.
TEST(Hdf5File, DamagedFiles) {
  TempDir dir;
  const std::string good = dir.file("good.h5");
  write_patterned(good, {{"a/b", DType::kF32, {16, 16}}, {"c", DType::kBF16, {8}}},
                  [](Hdf5File& f) { f.set_attr("a/b", "note", "x"); });
  EXPECT_TRUE(looks_like_hdf5(good));
  const std::string bad = dir.file("bad.h5");
  spit(bad, {'h', 'e', 'l', 'l', 'o'});
  EXPECT_FALSE(looks_like_hdf5(bad));
  EXPECT_NE(error_of([&] { Hdf5File::open(bad); }).find("not an HDF5 file"), std::string::npos);
  spit(bad, {});
  EXPECT_NE(error_of([&] { Hdf5File::open(bad); }).find(bad + ": not an HDF5 file"), std::string::npos);
  EXPECT_NE(error_of([&] { Hdf5File::open(dir.file("missing.h5")); }).find("cannot open"), std::string::npos);
  EXPECT_NE(error_of([&] { Hdf5File::open(fs::temp_directory_path().string()); }).find("not a regular file"),
            std::string::npos);
  const std::vector<char> bytes = slurp(good);
  ASSERT_GT(bytes.size(), 1024u);
  // Every truncation is refused at open (HDF5 checks the stored end of file).
  for (std::size_t len = 0; len < bytes.size(); len += 97) {
    SCOPED_TRACE(len);
    spit(bad, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len)));
    EXPECT_THROW(Hdf5File::open(bad), InputError);
  }
  // Single-byte corruptions: whatever opens is read or refused with an InputError.
  int refused = 0, read_ok = 0;
  for (std::size_t at = 0; at < bytes.size(); at += 13) {
    auto b = bytes;
    b[at] = static_cast<char>(b[at] ^ 0x5A);
    spit(bad, b);
    try {
      const Hdf5File f = Hdf5File::open(bad);
      for (const auto& n : f.list_datasets()) {
        f.read(n);
        f.attr_names(n);
      }
      ++read_ok;
    } catch (const InputError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(read_ok, 0);  // corruptions inside the raw data are not detectable by HDF5 (hashes are)
}

// A compact dataset whose layout message declares fewer stored bytes than its shape needs: libhdf5
// 1.10 keeps a null buffer for a declared size of 0 and H5Dread copies from it (a segfault, found by
// fuzz_hdf5_raw in CI), and reads past the end of a smaller one. Refused before H5Dread; the intact
// file reads. The file is made with the C API and its layout message (version 3, class compact,
// 2-byte size) patched in place — object headers of the default format carry no checksum.
TEST(Hdf5File, CompactStorageSmallerThanItsShapeIsRefused) {
  TempDir dir;
  const std::string path = dir.file("compact.h5");
  const std::vector<float> v = {1, 2, 3, 4, 5, 6, 7, 8};
  {
    Foreign w(path);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(dcpl, H5D_COMPACT);
    w.dataset("/x", H5T_IEEE_F32LE, {8}, H5T_NATIVE_FLOAT, v.data(), dcpl);
    const hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 13);
    w.dataset("/s", st, {1}, st, "thirteen char", dcpl);
    H5Tclose(st);
    H5Pclose(dcpl);
  }
  EXPECT_EQ(Hdf5File::open(path).read("x").values<float>()[7], 8.0f);
  EXPECT_EQ(Hdf5File::open(path).read_string("s"), "thirteen char");
  const std::vector<char> bytes = slurp(path);
  struct Case {
    const char* name;
    char size;  // the stored size the shape needs
    std::function<void(const Hdf5File&)> read;
    std::string rule;
  };
  const std::vector<Case> cases = {
      {"x", 32, [](const Hdf5File& f) { f.read("x"); }, "'x': shape [8] of float32 needs 32 bytes"},
      {"s", 13, [](const Hdf5File& f) { f.read_string("s"); }, "'s' needs 13 bytes"},
  };
  for (const Case& c : cases) {
    const std::vector<char> layout = {3, 0, c.size, 0};  // version 3, compact, 2-byte size
    const auto at = std::search(bytes.begin(), bytes.end(), layout.begin(), layout.end());
    ASSERT_NE(at, bytes.end()) << c.name;
    ASSERT_EQ(std::search(at + 1, bytes.end(), layout.begin(), layout.end()), bytes.end()) << c.name;
    for (const char declared : {0, 8}) {
      SCOPED_TRACE(std::string(c.name) + " declared " + std::to_string(declared));
      auto b = bytes;
      b[static_cast<std::size_t>(at - bytes.begin()) + 2] = declared;
      spit(path, b);
      const std::string m = error_of([&] { c.read(Hdf5File::open(path)); });
      EXPECT_NE(m.find(c.rule + ", its compact storage holds " + std::to_string(declared) + " (damaged file?)"),
                std::string::npos)
          << m;
    }
  }
}

// A file on which libhdf5 1.10.8 itself crashes (a local heap whose crafted size makes an
// allocation fail unchecked; the copy into it segfaults — h5py crashes on it too). Found by
// fuzz_hdf5_raw and kept in its seed corpus. Opening it is refused with an InputError naming the
// file: the crash happens in the probe's child process (hdf5_probe.hpp), not in ours.
TEST(Hdf5File, ALibhdf5CrashIsContained) {
  const std::string path = std::string(DSV4_SOURCE_DIR) + "/oracle/fuzz/corpus/hdf5_raw/local_heap_null_copy.h5";
  ASSERT_TRUE(fs::exists(path));
  const std::string m = error_of([&] { Hdf5File::open(path).list_datasets(); });
  EXPECT_EQ(m.rfind(path + ": libhdf5 crashed reading the file's structure (signal 11", 0), 0u) << m;
  EXPECT_NE(m.find("contained in a child process): a damaged or crafted file, refused"), std::string::npos) << m;
}

}  // namespace
}  // namespace dsv4
