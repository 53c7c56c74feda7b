// SHA-256 (FIPS 180-4) for the goldens' per-dataset hashes and the weights' content hash, through
// OpenSSL's EVP interface (libcrypto: SHA-NI / AVX2 code paths chosen at run time, ~1.7 GB/s per
// core with SHA-NI — certify hashes every golden dataset it reads); checked against the FIPS 180-4
// / NIST example vectors (tests/golden_regen_test).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace dsv4 {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::span<const std::byte> data);
  void update(std::string_view text);
  // The digest; the object is finished afterwards (further updates throw std::logic_error).
  std::array<std::uint8_t, 32> digest();
  // The digest as 64 lowercase hex digits (hashlib's hexdigest()).
  std::string hex();

 private:
  void* ctx_ = nullptr;  // EVP_MD_CTX
  bool done_ = false;
};

std::string sha256_hex(std::span<const std::byte> data);
std::string sha256_hex(std::string_view text);
// Streams a file; InputError naming it when it cannot be read.
std::string sha256_file_hex(const std::string& path);

}  // namespace dsv4
