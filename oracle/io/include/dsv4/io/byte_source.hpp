// The storage behind the random-access readers (NpzFile, SafetensorsFile): a regular file opened
// read-only and read with pread, or bytes already in memory, read at offsets with the same checks.
// Move-only; the file is closed with the object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dsv4 {

class ByteSource {
 public:
  // What a failed read says (after the caller's prefix), per reader.
  struct ReadErrors {
    const char* past_end;  // the in-memory bytes end before the read does
    const char* shrank;    // the file ended before the read did
  };

  ByteSource() = default;
  // Opens a regular file. Throws InputError naming `path` ("cannot open: …", "cannot stat: …",
  // "cannot open: not a regular file").
  static ByteSource open(const std::string& path);
  static ByteSource memory(std::vector<std::byte> bytes);

  ByteSource(ByteSource&& o) noexcept;
  ByteSource& operator=(ByteSource&& o) noexcept;
  ~ByteSource();
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  std::uint64_t size() const { return size_; }
  // The bytes when in memory (empty for a file).
  const std::vector<std::byte>& memory_bytes() const { return mem_; }

  // Fills `dst` from `offset`. Throws InputError(where, prefix + message) when the bytes are not
  // there or the file cannot be read.
  void read_at(std::uint64_t offset, std::span<std::byte> dst, const std::string& where, const std::string& prefix,
               const ReadErrors& errors) const;

 private:
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::vector<std::byte> mem_;
};

}  // namespace dsv4
