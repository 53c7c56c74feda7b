// SHA-256 (FIPS 180-4) through OpenSSL's EVP digest interface (sha256.hpp).
#include "dsv4/golden/sha256.hpp"

#include <openssl/evp.h>

#include <cstdio>
#include <fstream>
#include <new>
#include <stdexcept>
#include <vector>

#include "dsv4/io/input_error.hpp"

namespace dsv4 {

namespace {

EVP_MD_CTX* ctx_of(void* p) { return static_cast<EVP_MD_CTX*>(p); }

}  // namespace

Sha256::Sha256() {
  EVP_MD_CTX* c = EVP_MD_CTX_new();
  if (c == nullptr) throw std::bad_alloc();
  if (EVP_DigestInit_ex(c, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(c);
    throw std::runtime_error("SHA-256: EVP_DigestInit_ex failed");
  }
  ctx_ = c;
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_of(ctx_)); }

void Sha256::update(std::span<const std::byte> data) {
  if (done_) throw std::logic_error("Sha256::update after digest");
  if (!data.empty() && EVP_DigestUpdate(ctx_of(ctx_), data.data(), data.size()) != 1)
    throw std::runtime_error("SHA-256: EVP_DigestUpdate failed");
}

void Sha256::update(std::string_view text) { update(std::as_bytes(std::span<const char>(text.data(), text.size()))); }

std::array<std::uint8_t, 32> Sha256::digest() {
  if (done_) throw std::logic_error("Sha256::digest called twice");
  done_ = true;
  std::array<std::uint8_t, 32> out{};
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx_of(ctx_), out.data(), &len) != 1 || len != out.size())
    throw std::runtime_error("SHA-256: EVP_DigestFinal_ex failed");
  return out;
}

std::string Sha256::hex() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (const std::uint8_t b : digest()) {
    s += kHex[b >> 4];
    s += kHex[b & 15];
  }
  return s;
}

std::string sha256_hex(std::span<const std::byte> data) {
  Sha256 h;
  h.update(data);
  return h.hex();
}

std::string sha256_hex(std::string_view text) {
  Sha256 h;
  h.update(text);
  return h.hex();
}

std::string sha256_file_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "cannot open for reading");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (got > 0) h.update(std::string_view(buf.data(), got));
  }
  if (in.bad()) throw InputError(path, "read error");
  return h.hex();
}

}  // namespace dsv4
