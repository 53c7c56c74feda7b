// A strict reader and writer of safetensors files (the Hugging Face format), written for dsv4 and
// validated the way the format's own implementation (huggingface/safetensors, safetensors/src/
// tensor.rs) validates a file:
//
//   [u64 little-endian N] [N bytes of UTF-8 JSON header] [data buffer]
//
//   * N ≤ 100,000,000 (the format's MAX_HEADER_SIZE) and 8 + N ≤ the file size;
//   * the header is a JSON object: every key but "__metadata__" names a tensor whose value is
//     {"dtype": "<code>", "shape": [d0, d1, …], "data_offsets": [begin, end]} (other fields are
//     ignored, as the format's own reader does); "__metadata__", when present, maps strings to
//     strings; leading/trailing JSON whitespace is allowed (writers pad with spaces);
//   * sorted by data_offsets, the tensors tile the data buffer exactly: the first begins at 0,
//     each begins where the previous one ends, end ≥ begin, and the last ends at the end of the
//     file (no gap, no overlap, no trailing bytes, no truncation);
//   * end − begin = numel × bits(dtype) / 8, with numel and the bit count computed without
//     overflow and the bit count a multiple of 8.
//  dsv4 is stricter in three places: duplicate keys anywhere in the header are refused (serde
//  keeps the last one silently), the header may nest at most 3 levels (object → tensor → shape),
//  and a dimension must fit in int64 (dsv4 shapes are int64).
//
// dtype codes → dsv4 DType (the format knows more codes: BOOL, I16, U32, U64, C64, F6_E2M3,
// F6_E3M2, F8_E4M3FNUZ, F8_E5M2FNUZ — files holding them open and validate, but reading such a
// tensor is refused, naming the dtype; a code the format does not know is refused at open):
//
//   F64 kF64   F32 kF32   F16 kF16   BF16 kBF16   U16 kU16   I64 kI64   I32 kI32   I8 kI8   U8 kU8
//   F8_E4M3 kE4M3   F8_E5M2 kE5M2   F8_E8M0 kE8M0   F4 kE2M1x2
//
// Packed fp4 in DeepSeek-V4 checkpoints. The Hugging Face checkpoints (deepseek-ai/DeepSeek-V4-*)
// store the routed experts' fp4 weights as "I8" of shape [out, in/2] (two e2m1 codes per byte,
// element 2j in the low nibble), their scales as "F8_E8M0" of shape [out, in/32], the other fp8
// weights as "F8_E4M3" with "F8_E8M0" 128×128 block scales (names ending ".scale"), tid2eid as
// I64/I32. The official converter (inference/convert.py, --expert-dtype fp4) re-views the packed
// int8 as torch.float4_e2m1fn_x2, which safetensors saves as "F4" with the *logical* shape
// [out, in] (the format counts 4-bit elements; 2 per byte). So a packed fp4 tensor arrives either
// as "F4" (read as kE2M1x2 directly) or as "I8"/"U8" bytes: read those with
// SafetensorsReadOptions::bytes_as_packed_fp4 to get kE2M1x2 with the last dimension doubled.
//
// Hostile input never crashes the reader and never makes it allocate more than the file holds:
// every problem throws dsv4::InputError with one line naming the file, the tensor (when one is
// concerned) and the broken rule. Tensor data is read lazily (pread) only for the tensors asked
// for, so opening a checkpoint shard costs its header only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dsv4/io/byte_source.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

// The format's limit on the JSON header (MAX_HEADER_SIZE in safetensors/src/tensor.rs).
inline constexpr std::uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// The bits per element of a safetensors dtype code, or nullopt when the format does not know it.
std::optional<unsigned> safetensors_dtype_bits(std::string_view code);
// The dsv4 DType of a code, or nullopt when dsv4 has no such dtype (or the code is unknown).
std::optional<DType> safetensors_dtype_to_dsv4(std::string_view code);
// The code the writer emits for a DType (kE2M1x2 → "F4").
std::string_view safetensors_dtype_code(DType d);

// One tensor of the header. `shape` is as the header states it (for F4: 4-bit elements);
// `begin`/`end` are byte offsets into the data buffer (after the header).
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;
  std::uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsReadOptions {
  // Read an "I8" or "U8" tensor as packed fp4 (kE2M1x2, last dimension doubled, same bytes), as
  // the Hugging Face DeepSeek-V4 checkpoints store fp4 experts. Refused for any other dtype.
  bool bytes_as_packed_fp4 = false;
};

// An opened, fully validated safetensors file. Reads tensors on demand; movable, not copyable.
class SafetensorsFile {
 public:
  // Opens and validates `path` (header only; the data is not read). Throws InputError.
  static SafetensorsFile open(const std::string& path);
  // Validates a whole file held in memory; `where` names it in messages.
  static SafetensorsFile from_bytes(std::vector<std::byte> bytes, const std::string& where = "<memory>");

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::string& where() const { return where_; }
  // Tensor names in data-offset order.
  std::vector<std::string> names() const;
  bool contains(std::string_view name) const;
  // Throws InputError naming the file and the tensor when there is no such tensor.
  const SafetensorsEntry& entry(std::string_view name) const;
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  // The "__metadata__" map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Reads one tensor. Throws InputError naming the file and the tensor (missing tensor, dtype
  // dsv4 does not hold, F4 with an odd last dimension, read error).
  Tensor read(std::string_view name, const SafetensorsReadOptions& opts = {}) const;
  // Copies the tensor's raw bytes into `dst` (dst.size() must equal entry(name).nbytes()).
  void read_raw(std::string_view name, std::span<std::byte> dst) const;

 private:
  SafetensorsFile() = default;
  void parse_header(std::span<const std::byte> prefix, std::uint64_t file_size);
  void read_at(std::uint64_t offset, std::span<std::byte> dst, const std::string& tensor) const;

  std::string where_;
  std::vector<SafetensorsEntry> entries_;  // sorted by begin
  std::map<std::string, std::size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
  std::uint64_t data_start_ = 0;  // 8 + N
  ByteSource src_;                // the file, or the bytes of from_bytes
};

// Reads every tensor of a file (convenience for small files and tests).
std::map<std::string, Tensor> read_safetensors(const std::string& path, const SafetensorsReadOptions& opts = {});

struct SafetensorsWriteOptions {
  std::map<std::string, std::string> metadata;  // written as "__metadata__" when not empty
  // How kE2M1x2 tensors are written: "F4" with the logical shape (as safetensors saves
  // torch.float4_e2m1fn_x2), or "I8" bytes with the last dimension halved (as the Hugging Face
  // DeepSeek-V4 checkpoints store them).
  enum class Fp4As { kF4, kI8 } fp4_as = Fp4As::kF4;
};

using NamedTensors = std::vector<std::pair<std::string, const Tensor*>>;

// The bytes of a safetensors file: the header lists the tensors in data order, data sorted as the
// format's own writer sorts it (by decreasing dtype alignment, then by name), the header padded
// with spaces to a multiple of 8 bytes. Throws InputError for a duplicate or empty name, the
// name "__metadata__", or a header over the limit.
std::vector<std::byte> encode_safetensors(const NamedTensors& tensors, const SafetensorsWriteOptions& opts = {});
// Writes atomically (temporary file + rename), streaming the tensor data.
void write_safetensors(const std::string& path, const NamedTensors& tensors, const SafetensorsWriteOptions& opts = {});
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const SafetensorsWriteOptions& opts = {});

}  // namespace dsv4
