// A strict reader (and a small writer) of NumPy .npz archives: a ZIP file of .npy members, as
// np.savez (stored) and np.savez_compressed (deflate) write them — numpy forces ZIP64 local
// headers for every member; data descriptors (an archive written to a pipe) are accepted too.
//
// Keys are the member names without ".npy" (as np.load's NpzFile presents them). Each member is
// decoded by the .npy reader (npy.hpp), so its rules apply inside; the bf16 convention carries
// over: under U2As::kByFileName a '<u2' member named "*.bf16.npy" is read as kBF16.
//
// What the reader refuses, each with an InputError naming the archive, the member and the rule:
// no end-of-central-directory record, or one whose comment does not end the file; multi-disk
// archives; a ZIP64 record that is missing, truncated or inconsistent; a central directory outside
// the file, not immediately before its end record, or not holding exactly the declared entries;
// malformed extra fields; encrypted members; compression methods other than stored (0) and
// deflate (8); duplicate names; members not named "*.npy"; a local header that is missing or
// disagrees with the central directory (name, method, sizes); member data outside the file or
// overlapping another member (the overlapping-files zip bomb); a stored member whose sizes differ;
// a declared size over the read limit or beyond deflate's 1032:1 ratio (refused before any
// allocation); a deflate stream that is corrupt, ends early, or leaves input or output over; a
// CRC-32 mismatch. The reader reads the central directory at open and each member on demand.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dsv4/io/byte_source.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

// The largest member (uncompressed) read() accepts by default.
inline constexpr std::uint64_t kNpzDefaultMaxMemberBytes = std::uint64_t{16} << 30;

struct NpzMember {
  std::string key;   // name without ".npy"
  std::string name;  // the member name in the archive
  std::uint16_t method = 0;
  std::uint32_t crc32 = 0;
  std::uint64_t compressed = 0, uncompressed = 0;
  std::uint64_t local_offset = 0;
  std::uint64_t data_offset = 0;  // first byte of the (compressed) data
};

class NpzFile {
 public:
  static NpzFile open(const std::string& path);
  static NpzFile from_bytes(std::vector<std::byte> bytes, const std::string& where = "<memory>");

  NpzFile(NpzFile&&) noexcept;
  NpzFile& operator=(NpzFile&&) noexcept;
  ~NpzFile();

  const std::string& where() const { return where_; }
  // Keys in archive order.
  std::vector<std::string> keys() const;
  bool contains(std::string_view key) const;
  const NpzMember& member(std::string_view key) const;  // throws InputError when absent
  const std::vector<NpzMember>& members() const { return members_; }

  // Decompresses, checks the CRC and decodes the member's .npy.
  Tensor read(std::string_view key, const NpyReadOptions& opts = {},
              std::uint64_t max_bytes = kNpzDefaultMaxMemberBytes) const;
  // The member's .npy header, from its first bytes only (nothing else is decompressed); checks that
  // the member's declared size is exactly the header plus the data of the declared shape.
  NpyHeader member_header(std::string_view key, const NpyReadOptions& opts = {}) const;
  // The member's .npy bytes (decompressed, CRC checked).
  std::vector<std::byte> read_member_bytes(std::string_view key,
                                           std::uint64_t max_bytes = kNpzDefaultMaxMemberBytes) const;

 private:
  NpzFile() = default;
  void parse(std::uint64_t size);
  void read_at(std::uint64_t off, std::span<std::byte> dst) const;
  // The first min(n, uncompressed) bytes of a member, decompressed from at most 1 MiB of its data
  // (fewer when its stream is corrupt or short: the full read reports it).
  std::vector<std::byte> read_member_prefix(const NpzMember& m, std::size_t n) const;

  std::string where_;
  std::vector<NpzMember> members_;
  std::map<std::string, std::size_t, std::less<>> index_;
  ByteSource src_;  // the file, or the bytes of from_bytes
};

std::map<std::string, Tensor> read_npz(const std::string& path, const NpyReadOptions& opts = {});

struct NpzWriteOptions {
  bool compress = false;  // deflate (np.savez_compressed) instead of stored (np.savez)
};

// An archive as np.savez writes it: members "<key>.npy" in the given order, ZIP64 local headers,
// a fixed timestamp (1980-01-01) so the bytes are reproducible. Refuses empty or duplicate keys.
std::vector<std::byte> encode_npz(const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                                  const NpzWriteOptions& opts = {});
void write_npz(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
               const NpzWriteOptions& opts = {});

}  // namespace dsv4
