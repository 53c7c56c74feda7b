// A small RAII wrapper over the HDF5 C library for dsv4's goldens and candidate dumps: create or
// open a file, nested groups from slash paths, datasets of dsv4 Tensors with their shapes, string
// and numeric attributes, a recursive listing of datasets. Files are plain HDF5 — contiguous (or
// gzip-chunked) datasets, no custom filters — so h5py alone reads them.
//
// Dataset types (write → HDF5 → read):
//   kF64 float64, kF32 float32, kF16 IEEE half (numpy float16), kI8 int8, kU8 uint8, kU16 uint16,
//   kI32 int32, kI64 int64 — native little-endian HDF5 types, read back as the same DType.
//   kBF16 → uint16 holding the raw bf16 bit patterns, with the string attribute dtype="bfloat16".
//   kE4M3 / kE5M2 / kE8M0 → uint8 codes with dtype="float8_e4m3fn" / "float8_e5m2" / "float8_e8m0fnu".
//   kE2M1x2 → uint8 packed bytes, last dimension halved, dtype="float4_e2m1fn_x2".
// Reading honours a "dtype" attribute naming one of those raw dtypes (also "bf16",
// "torch.bfloat16", and int16 storage for bf16/f16 as torch's int16 view produces) when the
// storage matches it; a uint16 dataset without the attribute is kU16 (TensorSource applies the
// ".bf16" name convention on top). Big-endian datasets are converted on read.
//
// Hostile input: a file that is not HDF5, truncated or damaged, a dataset of a type dsv4 does not
// hold (strings, compounds, uint32, …), a "dtype" attribute that contradicts the storage, a null
// dataspace, a shape whose byte count overflows or exceeds the read limit, external raw storage,
// virtual datasets, soft or external links in a path: each throws InputError with one line naming
// the file, the object and the problem (with HDF5's own innermost message where it has one).
// HDF5's automatic error printing is switched off. Not thread-safe (neither is libhdf5's default
// build): use one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/io/input_error.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

// Largest dataset read() accepts by default (bytes in memory); a larger one is refused before
// anything is allocated (a small file can declare a huge chunked or compressed dataset).
inline constexpr std::uint64_t kHdf5DefaultMaxReadBytes = std::uint64_t{16} << 30;

struct Hdf5WriteOptions {
  int deflate = 0;  // 0: contiguous, no filter; 1–9: chunked + gzip at that level (h5py reads it)
};

struct Hdf5ReadOptions {
  std::uint64_t max_bytes = kHdf5DefaultMaxReadBytes;
};

// What a dataset holds, without reading its data.
struct Hdf5DatasetInfo {
  std::vector<std::int64_t> shape;  // the stored shape (packed fp4: bytes)
  std::string storage;              // e.g. "float32", "uint16", "int16 (big-endian)"
  std::optional<DType> dtype;       // what read() returns, or nullopt (and why in `problem`)
  std::string problem;
};

class Hdf5File {
 public:
  // A new file, written to a temporary name next to `path` and renamed over it by commit().
  // Destroyed without commit(), it leaves nothing at `path`.
  static Hdf5File create(const std::string& path);
  static Hdf5File open(const std::string& path);     // read-only
  static Hdf5File open_rw(const std::string& path);  // read-write, in place

  Hdf5File(Hdf5File&&) noexcept;
  Hdf5File& operator=(Hdf5File&&) noexcept;
  ~Hdf5File();

  const std::string& path() const { return path_; }
  // Flushes, closes and (for create()) renames into place. The object is closed afterwards.
  void commit();

  // Object paths are slash-separated ("prefill/layers.0.attn/out"); a leading "/" is optional;
  // empty components, "." and ".." are refused. "/" (or "") is the root group.
  void create_group(const std::string& path);  // with missing parents; fine when it exists
  bool exists(const std::string& path) const;  // a group or dataset at `path`
  bool is_dataset(const std::string& path) const;

  // Creates a dataset (and missing parent groups). Refused when `path` exists.
  void write(const std::string& path, const Tensor& t, const Hdf5WriteOptions& opts = {});
  Tensor read(const std::string& path, const Hdf5ReadOptions& opts = {}) const;
  // The same into `into`, reusing its storage when large enough (Tensor::reuse_as). On an error
  // `into` holds unspecified bytes.
  void read_into(const std::string& path, Tensor& into, const Hdf5ReadOptions& opts = {}) const;
  Hdf5DatasetInfo info(const std::string& path) const;
  // A scalar variable-length UTF-8 string dataset (h5py reads it as bytes/str).
  void write_string(const std::string& path, const std::string& value);
  std::string read_string(const std::string& path) const;

  // Every dataset under `group` (default: the whole file), full paths without the leading "/",
  // sorted. Only hard links are followed.
  std::vector<std::string> list_datasets(const std::string& group = "/") const;
  // The names of the direct children (groups and datasets) of a group, sorted.
  std::vector<std::string> list_children(const std::string& group = "/") const;

  // Attributes on a group or dataset (replaced when they exist).
  void set_attr(const std::string& object, const std::string& name, const std::string& value);
  void set_attr(const std::string& object, const std::string& name, const char* value);
  void set_attr(const std::string& object, const std::string& name, double value);
  void set_attr(const std::string& object, const std::string& name, std::int64_t value);
  void set_attr(const std::string& object, const std::string& name, const std::vector<double>& value);
  void set_attr(const std::string& object, const std::string& name, const std::vector<std::int64_t>& value);
  bool has_attr(const std::string& object, const std::string& name) const;
  std::vector<std::string> attr_names(const std::string& object) const;
  // Throw InputError naming the object and attribute when absent or of another kind. Strings:
  // fixed or variable length. Numbers: any integer or float attribute, converted (an integer
  // attribute read as int64 must be an integer type).
  std::string attr_string(const std::string& object, const std::string& name) const;
  double attr_double(const std::string& object, const std::string& name) const;
  std::int64_t attr_int64(const std::string& object, const std::string& name) const;
  std::vector<double> attr_doubles(const std::string& object, const std::string& name) const;
  std::vector<std::int64_t> attr_int64s(const std::string& object, const std::string& name) const;

 private:
  Hdf5File() = default;
  // open and open_rw: H5Fopen with `flags`; `failure` is the message when that fails.
  static Hdf5File open_existing(const std::string& path, unsigned flags, const char* failure);
  void close_quietly() noexcept;
  std::int64_t id() const;  // the open file id; throws when closed

  std::string path_;
  std::string tmp_;  // create(): the temporary file renamed at commit
  std::int64_t file_ = -1;
};

// True when the file starts with the HDF5 signature (at offset 0, 512, 1024, …, as the format
// allows a user block) — content sniffing without opening it with libhdf5.
bool looks_like_hdf5(const std::string& path);

}  // namespace dsv4
