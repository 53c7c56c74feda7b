// A candidate's tensors, whatever file they came in: HDF5, safetensors, a .npy file, a directory
// of .npy files, or a .npz archive — recognised by content, not by extension — listed by name and
// read as dsv4 Tensors; MappedTensorSource renames them to canonical names with a NameMap.
//
// Names per format:
//   HDF5          dataset paths without the leading "/" ("prefill/layers.0.attn/out")
//   safetensors   the tensor names
//   .npz          the member names without ".npy" (np.load's keys)
//   .npy dir      each *.npy file's path relative to the directory, without ".npy"
//                 ("dump/prefill/layers.0.attn/out.npy" → "prefill/layers.0.attn/out");
//                 symbolic links are not followed
//   .npy          the file name without ".npy"
//
// bf16. A bf16 tensor may arrive as raw bits or as float32 (then it is simply kF32). Raw bits are
// recognised (1) natively: safetensors "BF16", an HDF5 uint16/int16 dataset with a dtype="bfloat16"
// attribute; or (2) by the ".bf16" naming convention of oracle/README.md: a name ending in ".bf16"
// ("out.bf16.npy", HDF5 dataset "out.bf16", npz member "out.bf16.npy", safetensors "out.bf16")
// holding uint16 is kBF16 — and the ".bf16" is not part of its name ("out"). A ".bf16" name holding
// anything else is refused when read; "x" and "x.bf16" in one source are refused as a duplicate.
// fp8/fp4 codes and e8m0 scales come as the formats carry them (safetensors dtypes, HDF5 dtype
// attributes, .npy uint8 codes); certify pairs an output's codes with "<name>.scale"
// (dequantize_blocks).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/io/input_error.hpp"
#include "dsv4/io/name_map.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4 {

enum class SourceFormat { kHdf5, kSafetensors, kNpy, kNpyDir, kNpz };
std::string_view source_format_name(SourceFormat f);

// What a file is, by its first bytes (a directory is kNpyDir). Throws InputError when it is none
// of the formats.
SourceFormat sniff_source_format(const std::string& path);

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // Opens by content. Throws InputError (unknown format, or the format's own errors).
  static std::unique_ptr<TensorSource> open(const std::string& path);

  virtual SourceFormat format() const = 0;
  virtual const std::string& path() const = 0;
  // Names, sorted, with the ".bf16" convention applied.
  virtual std::vector<std::string> names() const = 0;
  virtual bool contains(const std::string& name) const = 0;
  // Throws InputError naming the source and the tensor.
  virtual Tensor read(const std::string& name) const = 0;
  // The same into `into`, reusing its storage where the format allows (HDF5); default: read().
  virtual void read_into(const std::string& name, Tensor& into) const { into = read(name); }
  // The shape the file declares for `name`, read without its data (the stored shape: packed fp4
  // in bytes where the format stores it so), or nullopt where the format cannot tell cheaply.
  virtual std::optional<std::vector<std::int64_t>> declared_shape(const std::string& name) const {
    (void)name;
    return std::nullopt;
  }
};

// Quantised values: codes (fp8 e4m3 / e5m2, or fp4 e2m1 packed two per byte) times one scale per
// block of the last dimension (e8m0 or float32; its shape is the codes' with the last dimension
// divided by the block size). Returns float64 values, exact. InputError (naming `where`) for
// other dtypes or a scale shape that does not divide the codes into blocks.
Tensor dequantize_blocks(const Tensor& codes, const Tensor& scales, const std::string& where);

// A source seen through a name map: canonical names → the source's tensors.
class MappedTensorSource {
 public:
  // `map` may be empty (identity). Throws InputError (see apply_name_map).
  MappedTensorSource(std::unique_ptr<TensorSource> source, const NameMap& map, const NameMapOptions& opts = {});

  const TensorSource& source() const { return *source_; }
  std::vector<std::string> names() const;  // canonical, sorted
  bool contains(const std::string& canonical) const;
  // The source's own name for a canonical name; throws InputError when absent.
  const std::string& source_name(const std::string& canonical) const;
  Tensor read(const std::string& canonical) const;
  void read_into(const std::string& canonical, Tensor& into) const;
  // The same, refused (InputError naming the tensor) before anything is read or decompressed when
  // the file declares more than `max_elements` elements — the golden's count: no candidate form of
  // an output (float, bf16, fp8 codes, packed fp4, scales) holds more (issue 14 item 3).
  Tensor read(const std::string& canonical, std::int64_t max_elements) const;
  void read_into(const std::string& canonical, Tensor& into, std::int64_t max_elements) const;
  const MappedNames& mapping() const { return mapped_; }

 private:
  void check_declared(const std::string& canonical, std::int64_t max_elements) const;
  std::unique_ptr<TensorSource> source_;
  MappedNames mapped_;
};

}  // namespace dsv4
