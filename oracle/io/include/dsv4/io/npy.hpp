// A minimal, strict reader and writer of NumPy .npy files (NEP 1, format versions 1.0, 2.0, 3.0)
// into and out of dsv4::Tensor. No .npz, no structured dtypes, no big-endian data, no Fortran order.
//
// Supported descr strings and the DType each one maps to:
//   '<f8' float64   '<f4' float32   '<f2' float16   '<i8' int64   '<i4' int32
//   '|i1' / '<i1' int8   '|u1' / '<u1' uint8   '<u2' uint16 — or bfloat16, see below.
//
// The bf16 convention. NumPy has no bfloat16 dtype, so inference engines dump bf16 tensors as a
// uint16 view of the raw bit patterns (torch: `t.view(torch.uint16).numpy()` / `t.view(torch.int16)`
// re-viewed as uint16). We follow that:
//   * the writer writes a kBF16 tensor as '<u2' holding the raw bf16 bit patterns;
//   * the reader returns a '<u2' array as kBF16 only when the caller says so (U2As::kBF16 — the
//     CLI's `--bf16` flag), or, under the default U2As::kByFileName, when the file name ends in
//     ".bf16.npy"; otherwise '<u2' is read as kU16.
// So a bf16 dump should be saved as `name.bf16.npy` (or read with --bf16); a plain uint16 array
// is never silently taken for bf16.
//
// The other raw-code dtypes have no NumPy counterpart either: kE4M3, kE5M2 and kE8M0 tensors are
// written as '|u1' arrays of their codes (same shape), and a kE2M1x2 (packed fp4) tensor as '|u1'
// of its packed bytes, last dimension halved. Reading such a file gives kU8; reinterpret as needed.
//
// Bad input — a hostile or damaged file — never crashes the reader and never makes it allocate
// more than the file holds: it throws dsv4::InputError with one line naming the problem (bad
// magic, unsupported version, header over 10,000 bytes, header not a valid dict, truncated header,
// truncated data, trailing bytes, unsupported dtype, fortran_order True, bad shape).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/io/input_error.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

// The largest header (the dict text, padding included) the reader accepts, as numpy's own
// default `max_header_size`. Longer headers are refused rather than parsed.
inline constexpr std::size_t kNpyMaxHeaderBytes = 10000;
// What the writer aligns the start of the data to (numpy's ARRAY_ALIGN).
inline constexpr std::size_t kNpyAlign = 64;

// How to read a '<u2' array.
enum class U2As {
  kUInt16,      // always DType::kU16
  kBF16,        // always DType::kBF16 (raw bf16 bit patterns)
  kByFileName,  // kBF16 when the path ends in ".bf16.npy", else kU16 (decode_npy: kU16)
};

struct NpyReadOptions {
  U2As u2_as = U2As::kByFileName;
};

struct NpyWriteOptions {
  // 0: as numpy does — 1.0, or 2.0 when the header does not fit 1.0's 16-bit length field.
  // 1, 2 or 3 force that version (3.0 marks the header utf-8; ours is ASCII either way).
  int version = 0;
};

// The parsed header of a .npy file.
struct NpyHeader {
  int major = 0, minor = 0;
  std::string descr;  // e.g. "<f4"
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
  std::size_t data_offset = 0;  // bytes before the array data
};

// True when `path` ends in ".bf16.npy".
bool npy_path_is_bf16(std::string_view path);

// Parses the header dict text, e.g. "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }".
// Keys in any order, any whitespace, optional trailing comma; exactly the three keys. Throws
// InputError (`where` prefixes the message) when the text is not such a dict. Does not check the
// descr against the supported list.
void parse_npy_header_dict(std::string_view text, NpyHeader& out, const std::string& where = "");

// Reads a whole .npy file. Throws InputError naming the path and the problem.
Tensor read_npy(const std::string& path, const NpyReadOptions& opts = {});
// The same from bytes in memory; `where` names the source in messages.
Tensor decode_npy(std::span<const std::byte> file, const NpyReadOptions& opts = {},
                  const std::string& where = "<memory>");

// Checks everything before the data of a .npy whose first bytes are `prefix` (at least
// min(total, 12 + kNpyMaxHeaderBytes) of them) and whose whole size is `total`: magic, version,
// header, dtype, shape, and that `total` is exactly the header plus the data the shape needs. What a
// reader of a compressed member checks before it decompresses: the output is then bounded by the
// declared shape. Returns the header; throws InputError as decode_npy does.
NpyHeader check_npy_prefix(std::span<const std::byte> prefix, std::uint64_t total, const NpyReadOptions& opts = {},
                           const std::string& where = "<memory>");

// The bytes of a .npy file holding `t` (header padded with spaces so the data starts at a multiple
// of 64 bytes). Throws InputError for a version other than 0–3.
std::vector<std::byte> encode_npy(const Tensor& t, const NpyWriteOptions& opts = {});
// Writes `t` to `path` atomically: into a temporary file in the same directory, renamed over
// `path` only once fully written. On failure nothing is left at `path` (an existing file there is
// untouched) and InputError is thrown.
void write_npy(const std::string& path, const Tensor& t, const NpyWriteOptions& opts = {});

}  // namespace dsv4
