// Tensor sources: the same tensors written as HDF5, safetensors, .npz, a directory of .npy and a
// single .npy are recognised by content (misleading extensions on purpose), list the same names
// and read back bit-exact; the ".bf16" naming convention in every format; a name map on top; and
// refusals (unknown format, ".bf16" holding another dtype, "x" next to "x.bf16").
#include "dsv4/io/tensor_source.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/io/npz.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/numerics/formats.hpp"
#include "support/expect_errors.hpp"
#include "support/temp_files.hpp"

namespace dsv4 {
namespace {

using namespace testing_support;

namespace fs = std::filesystem;

// The tensors of a small dump; "kv" is bf16, stored under "kv.bf16" as uint16 bits where the
// format has no bf16 of its own.
struct Dump {
  Tensor out = patterned(DType::kF32, {2, 3});
  Tensor idx = patterned(DType::kI32, {4}, 1);
  Tensor kv = patterned(DType::kBF16, {3, 2}, 2);
};

Tensor as_u16(const Tensor& bf) {
  Tensor u(DType::kU16, bf.shape());
  std::memcpy(u.bytes(), bf.bytes(), bf.nbytes());
  return u;
}

TEST(TensorSource, SameTensorsFromEveryFormatByContent) {
  TempDir dir;
  const Dump d;
  const Tensor kv_u16 = as_u16(d.kv);
  // HDF5 with a misleading extension; bf16 both with the dtype attribute and by name.
  {
    Hdf5File f = Hdf5File::create(dir.file("dump.bin"));
    f.write("prefill/layers.0.attn/out", d.out);
    f.write("prefill/layers.0.attn.indexer/out", d.idx);
    f.write("prefill/layers.0.attn/kv.bf16", kv_u16);
    f.commit();
  }
  // safetensors named .h5
  write_safetensors(dir.file("dump.h5"), NamedTensors{{"prefill/layers.0.attn/out", &d.out},
                                                      {"prefill/layers.0.attn.indexer/out", &d.idx},
                                                      {"prefill/layers.0.attn/kv", &d.kv}});
  // npz named .dat
  write_npz(dir.file("dump.dat"), {{"prefill/layers.0.attn/out", &d.out},
                                   {"prefill/layers.0.attn.indexer/out", &d.idx},
                                   {"prefill/layers.0.attn/kv.bf16", &d.kv}});
  // a directory of .npy
  fs::create_directories(dir.file("npydir/prefill/layers.0.attn"));
  fs::create_directories(dir.file("npydir/prefill/layers.0.attn.indexer"));
  write_npy(dir.file("npydir/prefill/layers.0.attn/out.npy"), d.out);
  write_npy(dir.file("npydir/prefill/layers.0.attn.indexer/out.npy"), d.idx);
  write_npy(dir.file("npydir/prefill/layers.0.attn/kv.bf16.npy"), d.kv);
  std::ofstream(dir.file("npydir/README.txt")) << "not a tensor";
  fs::create_symlink(dir.file("npydir/prefill"), dir.file("npydir/loop"));  // not followed

  const std::vector<std::string> expect = {"prefill/layers.0.attn.indexer/out", "prefill/layers.0.attn/kv",
                                           "prefill/layers.0.attn/out"};
  const std::vector<std::pair<std::string, SourceFormat>> sources = {{"dump.bin", SourceFormat::kHdf5},
                                                                     {"dump.h5", SourceFormat::kSafetensors},
                                                                     {"dump.dat", SourceFormat::kNpz},
                                                                     {"npydir", SourceFormat::kNpyDir}};
  for (const auto& [name, format] : sources) {
    SCOPED_TRACE(name);
    const auto s = TensorSource::open(dir.file(name));
    EXPECT_EQ(s->format(), format);
    EXPECT_EQ(s->names(), expect);
    expect_same(d.out, s->read("prefill/layers.0.attn/out"));
    expect_same(d.idx, s->read("prefill/layers.0.attn.indexer/out"));
    expect_same(d.kv, s->read("prefill/layers.0.attn/kv"));
    EXPECT_TRUE(s->contains("prefill/layers.0.attn/kv"));
    EXPECT_FALSE(s->contains("prefill/layers.0.attn/kv.bf16"));
    EXPECT_NE(error_of([&] { s->read("nope"); }).find("no tensor 'nope'"), std::string::npos);
  }
  // a single .npy, named by its file
  write_npy(dir.file("x.bf16.npy"), d.kv);
  const auto one = TensorSource::open(dir.file("x.bf16.npy"));
  EXPECT_EQ(one->format(), SourceFormat::kNpy);
  EXPECT_EQ(one->names(), std::vector<std::string>{"x"});
  expect_same(d.kv, one->read("x"));
  // uint16 without the convention stays uint16
  write_npy(dir.file("u.npy"), kv_u16);
  EXPECT_EQ(TensorSource::open(dir.file("u.npy"))->read("u").dtype(), DType::kU16);
}

TEST(TensorSource, Refusals) {
  TempDir dir;
  std::ofstream(dir.file("text.h5")) << "hello world, this is not a tensor file";
  EXPECT_NE(error_of([&] { TensorSource::open(dir.file("text.h5")); }).find("unrecognised format"), std::string::npos);
  std::ofstream(dir.file("empty.npy")) << "";
  EXPECT_NE(error_of([&] { TensorSource::open(dir.file("empty.npy")); }).find("unrecognised format"),
            std::string::npos);
  EXPECT_NE(error_of([&] { TensorSource::open(dir.file("missing")); }).find("no such file"), std::string::npos);
  fs::create_directories(dir.file("emptydir"));
  EXPECT_NE(error_of([&] { TensorSource::open(dir.file("emptydir")); }).find("no .npy files"), std::string::npos);
  // a .bf16 name holding float32
  const Tensor f = patterned(DType::kF32, {2});
  write_safetensors(dir.file("a.safetensors"), NamedTensors{{"w.bf16", &f}});
  const auto s = TensorSource::open(dir.file("a.safetensors"));
  EXPECT_NE(error_of([&] { s->read("w"); }).find("'w.bf16' is named .bf16 but holds float32"), std::string::npos);
  // "x" and "x.bf16" in one source
  write_safetensors(dir.file("b.safetensors"), NamedTensors{{"w.bf16", &f}, {"w", &f}});
  EXPECT_NE(error_of([&] { TensorSource::open(dir.file("b.safetensors")); }).find("both name the tensor 'w'"),
            std::string::npos);
  // a damaged file of a recognised format: the format's own error
  const Tensor g = patterned(DType::kF32, {4});
  write_safetensors(dir.file("c.safetensors"), NamedTensors{{"g", &g}});
  fs::resize_file(dir.file("c.safetensors"), fs::file_size(dir.file("c.safetensors")) - 1);
  EXPECT_NE(error_of([&] { TensorSource::open(dir.file("c.safetensors")); }).find("truncated data"), std::string::npos);
}

TEST(TensorSource, MappedNames) {
  TempDir dir;
  const Tensor a = patterned(DType::kF32, {2});
  const Tensor b = patterned(DType::kBF16, {2}, 1);
  write_npz(dir.file("engine.npz"), {{"blk.0.attn_out", &a}, {"blk.1.attn_out.bf16", &b}, {"unrelated", &a}});
  const NameMap map = parse_name_map(
      R"({"patterns": [{"match": "blk\\.(\\d+)\\.attn_out", "name": "prefill/layers.$1.attn/out"}],
          "rename": {"missing.in.dump": "prefill/embed/out"}})",
      "m.json");
  const MappedTensorSource m(TensorSource::open(dir.file("engine.npz")), map, {.keep_unmapped = false});
  EXPECT_EQ(m.names(), (std::vector<std::string>{"prefill/layers.0.attn/out", "prefill/layers.1.attn/out"}));
  expect_same(a, m.read("prefill/layers.0.attn/out"));
  expect_same(b, m.read("prefill/layers.1.attn/out"));  // bf16 by name, then mapped
  EXPECT_EQ(m.source_name("prefill/layers.1.attn/out"), "blk.1.attn_out");
  EXPECT_EQ(m.mapping().unmapped, std::vector<std::string>{"unrelated"});
  ASSERT_EQ(m.mapping().unused.size(), 1u);
  EXPECT_NE(m.mapping().unused[0].find("missing.in.dump"), std::string::npos);
  EXPECT_NE(error_of([&] { m.read("prefill/embed/out"); }).find("no tensor maps to the canonical name"),
            std::string::npos);
  // a map that matches nothing in this source
  const NameMap none = parse_name_map(R"({"rename": {"zzz": "y"}})", "n.json");
  EXPECT_NE(error_of([&] {
              MappedTensorSource(TensorSource::open(dir.file("engine.npz")), none);
            }).find("n.json: no entry of the map matches any of the 3 names in"),
            std::string::npos);
}

// Quantised candidate outputs: codes × one scale per block of the last dimension, exactly.
TEST(DequantizeBlocks, CodesTimesBlockScalesExactly) {
  // fp8 e4m3 [2, 4] with e8m0 scales per block of 2: 2^-3 and 2^5 in row 0, 2^0 and 2^-10 in row 1.
  Tensor codes(DType::kE4M3, {2, 4});
  const std::vector<double> q = {1.0, -1.5, 448.0, 0.0, 0.25, 3.5, -2.0, 0.001953125};
  for (std::size_t i = 0; i < q.size(); ++i) codes.values<std::uint8_t>()[i] = double_to_e4m3(q[i]);
  Tensor scales(DType::kE8M0, {2, 2});
  const std::vector<int> e = {-3, 5, 0, -10};
  for (std::size_t i = 0; i < e.size(); ++i) scales.values<std::uint8_t>()[i] = static_cast<std::uint8_t>(127 + e[i]);
  const Tensor v = dequantize_blocks(codes, scales, "t");
  ASSERT_EQ(v.dtype(), DType::kF64);
  ASSERT_EQ(v.shape(), codes.shape());
  for (std::size_t i = 0; i < q.size(); ++i)
    EXPECT_EQ(v.values<double>()[i], std::ldexp(q[i], e[(i / 4) * 2 + (i % 4) / 2])) << i;
  // fp4 e2m1 packed two per byte (element 2j in the low nibble), float32 scales per block of 4.
  Tensor f4(DType::kE2M1x2, {1, 8});
  const std::vector<double> q4 = {0.5, -6.0, 1.5, 0.0, 4.0, -0.5, 3.0, 2.0};
  for (std::size_t i = 0; i < q4.size(); i += 2)
    f4.values<std::uint8_t>()[i / 2] =
        static_cast<std::uint8_t>(double_to_e2m1(q4[i]) | (double_to_e2m1(q4[i + 1]) << 4));
  Tensor s32(DType::kF32, {1, 2});
  s32.values<float>()[0] = 0.75f;
  s32.values<float>()[1] = -3.0f;
  const Tensor v4 = dequantize_blocks(f4, s32, "t");
  for (std::size_t i = 0; i < q4.size(); ++i) EXPECT_EQ(v4.values<double>()[i], q4[i] * (i < 4 ? 0.75 : -3.0)) << i;
  // refused: not codes, a scale shape that does not divide the rows into blocks, a bad scale dtype
  EXPECT_THROW(dequantize_blocks(Tensor(DType::kF32, {2, 4}), scales, "t"), InputError);
  EXPECT_THROW(dequantize_blocks(codes, Tensor(DType::kE8M0, {2, 3}), "t"), InputError);
  EXPECT_THROW(dequantize_blocks(codes, Tensor(DType::kE8M0, {1, 2}), "t"), InputError);
  EXPECT_THROW(dequantize_blocks(codes, Tensor(DType::kBF16, {2, 2}), "t"), InputError);
}

}  // namespace
}  // namespace dsv4
