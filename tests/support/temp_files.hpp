// File fixtures for the reader/writer tests (hdf5_file, npy, npz, safetensors, tensor_source): a
// private temporary directory per test, patterned tensors, byte-exact tensor comparison.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/numerics/tensor.hpp"

namespace dsv4::testing_support {

// A directory of its own for the running test, removed with the object.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("dsv4_" + std::string(info->test_suite_name()) + "_" + std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A tensor whose bytes follow a fixed pattern (salt shifts it): any byte misplaced shows.
inline Tensor patterned(DType dtype, std::vector<std::int64_t> shape, unsigned salt = 0) {
  Tensor t(dtype, std::move(shape));
  for (std::size_t i = 0; i < t.nbytes(); ++i) t.bytes()[i] = static_cast<std::byte>((i * 37 + 11 + salt) & 0xFF);
  return t;
}

// Same dtype, shape and bytes.
inline void expect_same(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.dtype(), b.dtype());
  EXPECT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.nbytes(), b.nbytes());
  if (a.nbytes()) {
    EXPECT_EQ(0, std::memcmp(a.bytes(), b.bytes(), a.nbytes()));
  }
}

inline void write_bytes(const std::string& path, const std::vector<std::byte>& b) {
  std::ofstream o(path, std::ios::binary);
  o.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// The bytes of `s`, for hand-made files.
inline std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

}  // namespace dsv4::testing_support
