// A candidate tensor is bounded by the golden before it is read (issue 14 item 3): every format
// declares its tensors' shapes without their data, and MappedTensorSource refuses a tensor that
// declares more elements than the golden's before reading or decompressing it; an .npz member's
// declared size must be exactly its .npy header plus the data of the declared shape.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/io/npz.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "support/temp_files.hpp"

namespace dsv4 {
namespace {

class CandidateBounds : public ::testing::Test {
 protected:
  std::string file(const std::string& n) const { return dir_.file(n); }
  testing_support::TempDir dir_;
};

// A 4 MiB float64 tensor of zeros: an npz bomb's shape of payload (compresses ~1000:1).
Tensor zeros() { return Tensor(DType::kF64, {512, 1024}); }

void expect_bounded(const std::string& path) {
  const MappedTensorSource src(TensorSource::open(path), NameMap{});
  ASSERT_TRUE(src.contains("x")) << path;
  ASSERT_EQ(src.source().declared_shape("x"), (std::vector<std::int64_t>{512, 1024})) << path;
  try {
    (void)src.read("x", 1000);
    ADD_FAILURE() << path << ": read past the golden's 1000 elements";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("declares shape [512, 1024]"), std::string::npos) << m;
    EXPECT_NE(m.find("refused before reading"), std::string::npos) << m;
  }
  Tensor t;
  EXPECT_THROW(src.read_into("x", t, 524287), InputError);
  EXPECT_NO_THROW(src.read_into("x", t, 524288)) << path;
  EXPECT_EQ(t.shape(), (std::vector<std::int64_t>{512, 1024}));
}

TEST_F(CandidateBounds, EveryFormatIsRefusedBeforeReadingPastTheGoldensSize) {
  const Tensor z = zeros();
  write_npz(file("c.npz"), {{"x", &z}}, {.compress = true});
  EXPECT_LT(std::filesystem::file_size(file("c.npz")), 64u << 10);
  expect_bounded(file("c.npz"));
  write_npy(file("x.npy"), z);
  expect_bounded(file("x.npy"));
  {
    Hdf5File f = Hdf5File::create(file("c.h5"));
    f.write("x", z, {.deflate = 9});
    f.commit();
  }
  expect_bounded(file("c.h5"));
  write_safetensors(file("c.safetensors"), std::map<std::string, Tensor>{{"x", z}});
  expect_bounded(file("c.safetensors"));
}

TEST_F(CandidateBounds, NpzMemberHeaderIsReadWithoutTheData) {
  const Tensor z = zeros();
  write_npz(file("c.npz"), {{"x", &z}}, {.compress = true});
  const NpzFile f = NpzFile::open(file("c.npz"));
  const NpyHeader h = f.member_header("x");
  EXPECT_EQ(h.shape, (std::vector<std::int64_t>{512, 1024}));
  EXPECT_EQ(h.descr, "<f8");
  // A member whose .npy header declares another size than the archive's directory: refused by
  // check_npy_prefix before anything is decompressed.
  std::vector<std::byte> npy = encode_npy(z);
  EXPECT_THROW((void)check_npy_prefix(npy, npy.size() + 8), InputError);
  EXPECT_THROW((void)check_npy_prefix(npy, npy.size() - 8), InputError);
  EXPECT_EQ(check_npy_prefix(std::span(npy).first(200), npy.size()).shape, h.shape);
}

}  // namespace
}  // namespace dsv4
