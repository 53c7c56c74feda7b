// `dsv4 quant` end to end: runs the built CLI (DSV4_CLI_PATH) on temporary files. Expected outputs
// are worked out by hand in the comments, not by calling the library's quantisers.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "dsv4/io/npy.hpp"
#include "dsv4/numerics/quant.hpp"
#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

class CliQuant : public testing_support::CliDir {
 protected:
  Result run(const std::string& args) const { return dsv4("quant " + args); }

  // Bad input: exit 2, exactly one line on stderr starting "dsv4 quant: error: " and containing
  // `expect`, and no output file (nor a temporary) in the directory.
  void expect_refused(const std::string& args, const std::string& expect, const std::string& out_name = "out.npy") {
    SCOPED_TRACE(args);
    const auto before = listing();
    expect_bad_input(run(args), "quant", expect);
    EXPECT_FALSE(fs::exists(file(out_name)));
    EXPECT_EQ(listing(), before) << "nothing written";
  }
  std::vector<std::string> listing() const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(dir_)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }
};

Tensor f32(std::vector<std::int64_t> shape, const std::vector<float>& v) {
  Tensor t(DType::kF32, std::move(shape));
  std::copy(v.begin(), v.end(), t.values<float>().begin());
  return t;
}

TEST_F(CliQuant, Fp8Ue8m0KnownValues) {
  // Two rows of 64 (one fp8-act-64-ue8m0 block each), zeros except the first few elements.
  std::vector<float> x(128, 0.0f);
  // Row 0: amax 300, 300·fl32(1/448) ≈ 0.67 → ceil(log2) = 0 → scale 1; the values are e4m3-rounded.
  x[0] = 300.0f;   // e4m3 step 32 in [256, 512): 288 (|12|) beats 320 → 288
  x[1] = 1.0f;     // exact
  x[2] = 0.1f;     // [1/16, 1/8) step 1/128: 0.1·128 = 12.8 → 13/128 = 0.1015625
  x[3] = 17.0f;    // step 2 in [16, 32): tie 16 | 18 → even mantissa → 16
  x[4] = -17.0f;   // → −16
  x[5] = 19.0f;    // tie 18 | 20 → even mantissa (20 = 1.25·16) → 20
  x[6] = -300.0f;  // → −288
  // Row 1: amax 1000, 1000/448 ≈ 2.23 → ceil(log2) = 2 → scale 4.
  x[64] = 1000.0f;  // 250 → step 16 in [128, 256): 256 (|6|) beats 240 → 256·4 = 1024
  x[65] = 3.0f;     // 0.75 exact → 3
  x[66] = 0.3f;     // 0.075 → step 1/128: 9.6 → 10/128 = 0.078125 → ·4 = 0.3125
  x[67] = -5.0f;    // 1.25 exact → −5
  write_npy(file("in.npy"), f32({2, 64}, x));
  const Result r = run("--kind fp8-act-64-ue8m0 --in " + file("in.npy") + " --out " + file("out.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.empty());
  const Tensor y = read_npy(file("out.npy"));
  ASSERT_EQ(y.dtype(), DType::kF32);
  ASSERT_EQ(y.shape(), (std::vector<std::int64_t>{2, 64}));
  const auto v = y.values<float>();
  EXPECT_EQ(v[0], 288.0f);
  EXPECT_EQ(v[1], 1.0f);
  EXPECT_EQ(v[2], 0.1015625f);
  EXPECT_EQ(v[3], 16.0f);
  EXPECT_EQ(v[4], -16.0f);
  EXPECT_EQ(v[5], 20.0f);
  EXPECT_EQ(v[6], -288.0f);
  EXPECT_EQ(v[7], 0.0f);
  EXPECT_EQ(v[64], 1024.0f);
  EXPECT_EQ(v[65], 3.0f);
  EXPECT_EQ(v[66], 0.3125f);
  EXPECT_EQ(v[67], -5.0f);
  EXPECT_EQ(v[127], 0.0f);
}

TEST_F(CliQuant, Bf16KindFromFloat32AndFloat64AndBf16Inputs) {
  // bf16 keeps 7 mantissa bits: 1 + 2^-8 is a tie → 1 (even); 1 + 3·2^-8 ties → 1 + 2^-6 (even);
  // 1 + 2^-8 + 2^-20 is above the tie → 1 + 2^-7.
  const std::vector<float> x = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, -2.5f};
  write_npy(file("a.npy"), f32({4}, x));
  Result r = run("--kind bf16 --in " + file("a.npy") + " --out " + file("a_out.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  Tensor y = read_npy(file("a_out.npy"));
  auto v = y.values<float>();
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 1.0f + 0x1p-6f);
  EXPECT_EQ(v[2], 1.0f + 0x1p-7f);
  EXPECT_EQ(v[3], -2.5f);

  // float64 0.1 → fp32 0x3DCCCCCD (RNE) → bf16: low half 0xCCCD > 0x8000 → round up → 0x3DCD.
  Tensor d(DType::kF64, {1, 1});
  d.values<double>()[0] = 0.1;
  write_npy(file("d.npy"), d);
  r = run("--kind bf16 --in " + file("d.npy") + " --out " + file("d_out.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const Tensor dy = read_npy(file("d_out.npy"));
  EXPECT_EQ(dy.shape(), (std::vector<std::int64_t>{1, 1}));
  EXPECT_EQ(std::bit_cast<std::uint32_t>(dy.values<float>()[0]), 0x3DCD0000u);

  // bf16 input ('<u2' bit patterns): 0x3FC0 = 1.5, 0xC120 = −10; by --bf16 and by the file name.
  Tensor b(DType::kBF16, {2});
  b.values<std::uint16_t>()[0] = 0x3FC0;
  b.values<std::uint16_t>()[1] = 0xC120;
  write_npy(file("b.npy"), b);
  write_npy(file("b.bf16.npy"), b);
  r = run("--kind bf16 --bf16 --in " + file("b.npy") + " --out " + file("b_out.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  y = read_npy(file("b_out.npy"));
  v = y.values<float>();
  EXPECT_EQ(v[0], 1.5f);
  EXPECT_EQ(v[1], -10.0f);
  r = run("--kind bf16 --in " + file("b.bf16.npy") + " --out " + file("b2_out.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  y = read_npy(file("b2_out.npy"));
  EXPECT_EQ(y.values<float>()[1], -10.0f);
}

TEST_F(CliQuant, OutputMayReplaceInput) {
  write_npy(file("x.npy"), f32({2}, {1.0f + 0x1p-8f + 0x1p-20f, 3.0f}));
  const Result r = run("--kind bf16 --in " + file("x.npy") + " --out " + file("x.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const Tensor y = read_npy(file("x.npy"));
  EXPECT_EQ(y.values<float>()[0], 1.0f + 0x1p-7f);
}

TEST_F(CliQuant, ListShowsEveryKind) {
  const Result r = run("--list");
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_FALSE(quant_kinds().empty());
  std::istringstream lines(r.out);
  std::string line;
  std::size_t found = 0;
  while (std::getline(lines, line)) {
    for (const auto& k : quant_kinds()) {
      std::istringstream w(line);
      std::string name;
      int block = 0;
      if (w >> name >> block && name == k.name) {
        EXPECT_EQ(block, k.block) << line;
        EXPECT_NE(line.find(k.description), std::string::npos) << line;
        ++found;
      }
    }
  }
  EXPECT_EQ(found, quant_kinds().size()) << r.out;
}

TEST_F(CliQuant, HelpTeaches) {
  const Result r = run("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("dsv4 quant --kind"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(".bf16.npy"), std::string::npos);
  EXPECT_NE(r.out.find("--bf16"), std::string::npos);
  EXPECT_NE(r.out.find("float32"), std::string::npos);
}

TEST_F(CliQuant, BadInputsExitTwoAndWriteNothing) {
  const std::string out = " --out " + file("out.npy");
  write_npy(file("good.npy"), f32({2, 64}, std::vector<float>(128, 1.0f)));

  expect_refused("--kind nope --in " + file("good.npy") + out, "unknown kind 'nope' (valid kinds: ");
  expect_refused("--kind nope --in " + file("good.npy") + out, "fp8-act-64-ue8m0");
  expect_refused("--in " + file("good.npy") + out, "--kind is required");
  expect_refused("--kind bf16" + out, "--in is required");
  expect_refused("--kind bf16 --in " + file("missing.npy") + out, "no such file");

  write_npy(file("w100.npy"), f32({3, 100}, std::vector<float>(300, 1.0f)));
  expect_refused("--kind fp8-act-128 --in " + file("w100.npy") + out,
                 "shape [3, 100] has last dimension 100, not a multiple of the fp8-act-128 block 128");

  std::vector<float> x(128, 1.0f);
  x[64 + 2] = std::numeric_limits<float>::quiet_NaN();
  x[100] = std::numeric_limits<float>::infinity();
  write_npy(file("nan.npy"), f32({2, 64}, x));
  expect_refused("--kind fp8-act-64 --in " + file("nan.npy") + out, "NaN at index [1, 2] (flat index 66)");
  x[66] = 1.0f;
  write_npy(file("inf.npy"), f32({2, 64}, x));
  expect_refused("--kind fp8-act-64 --in " + file("inf.npy") + out, "Inf at index [1, 36]");

  Tensor big(DType::kF64, {2});
  big.values<double>()[1] = 1e300;
  write_npy(file("big.npy"), big);
  expect_refused("--kind bf16 --in " + file("big.npy") + out, "overflows float32");

  write_npy(file("u2.npy"), Tensor(DType::kU16, {4}));
  expect_refused("--kind bf16 --in " + file("u2.npy") + out, "pass --bf16");
  write_npy(file("i4.npy"), Tensor(DType::kI32, {4}));
  expect_refused("--kind bf16 --in " + file("i4.npy") + out, "unsupported input dtype int32");
  write_npy(file("scalar.npy"), Tensor(DType::kF32, {}));
  expect_refused("--kind bf16 --in " + file("scalar.npy") + out, "0-d");

  {
    std::ofstream o(file("junk.npy"), std::ios::binary);
    o << "PK\x03\x04 this is not an npy file";
  }
  expect_refused("--kind bf16 --in " + file("junk.npy") + out, "bad magic");
  {
    const auto bytes = encode_npy(f32({2, 64}, std::vector<float>(128, 1.0f)));
    std::ofstream o(file("short.npy"), std::ios::binary);
    o.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size() - 4));
  }
  expect_refused("--kind fp8-act-64 --in " + file("short.npy") + out, "truncated data");

  // An output that already exists is left untouched by a failure.
  write_npy(file("keep.npy"), f32({1}, {42.0f}));
  const auto before = slurp(file("keep.npy"));
  const Result r = run("--kind nope --in " + file("good.npy") + " --out " + file("keep.npy"));
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(slurp(file("keep.npy")), before);

  // An output in a directory that does not exist: refused, nothing created.
  expect_refused("--kind bf16 --in " + file("good.npy") + " --out " + file("nodir/out.npy"), "nodir/out.npy");
}

}  // namespace
}  // namespace dsv4
