// Tensor sources. See tensor_source.hpp for the names per format and the bf16 convention.
#include "dsv4/io/tensor_source.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/io/npz.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/numerics/formats.hpp"

namespace dsv4 {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kBf16Suffix = ".bf16";
constexpr std::size_t kMaxDirFiles = 1'000'000;

bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

std::string q_name(std::string_view s) { return "'" + printable_name(s) + "'"; }

// A source's names with the ".bf16" convention applied.
struct Entry {
  std::string raw;    // the name in the file
  bool bf16_by_name;  // the raw name ends in ".bf16"
};

std::map<std::string, Entry> index_names(const std::vector<std::string>& raws, const std::string& where) {
  std::map<std::string, Entry> r;
  for (const std::string& raw : raws) {
    const bool b = ends_with(raw, kBf16Suffix) && raw.size() > kBf16Suffix.size();
    const std::string name = b ? raw.substr(0, raw.size() - kBf16Suffix.size()) : raw;
    const auto [it, fresh] = r.emplace(name, Entry{raw, b});
    if (!fresh) {
      throw InputError(where, q_name(it->second.raw) + " and " + q_name(raw) + " both name the tensor " + q_name(name) +
                                  " (the .bf16 suffix is a naming convention, not part of the name)");
    }
  }
  return r;
}

// Applies the ".bf16" convention to a tensor read under a ".bf16" name.
Tensor as_bf16_by_name(Tensor t, const std::string& where, const Entry& e) {
  if (t.dtype() == DType::kBF16) return t;
  if (t.dtype() != DType::kU16) {
    throw InputError(where, q_name(e.raw) + " is named .bf16 but holds " + std::string(dtype_name(t.dtype())) +
                                " (expected uint16 raw bf16 bits)");
  }
  Tensor b(DType::kBF16, t.shape());
  if (t.nbytes()) std::memcpy(b.bytes(), t.bytes(), t.nbytes());
  return b;
}

class IndexedSource : public TensorSource {
 public:
  IndexedSource(std::string path, SourceFormat f) : path_(std::move(path)), format_(f) {}
  SourceFormat format() const override { return format_; }
  const std::string& path() const override { return path_; }
  std::vector<std::string> names() const override {
    std::vector<std::string> r;
    for (const auto& [n, e] : index_) r.push_back(n);
    return r;
  }
  bool contains(const std::string& name) const override { return index_.count(name) > 0; }
  Tensor read(const std::string& name) const override {
    const auto it = index_.find(name);
    if (it == index_.end()) throw InputError(path_, "no tensor " + q_name(name));
    Tensor t = read_raw(it->second.raw);
    if (it->second.bf16_by_name) return as_bf16_by_name(std::move(t), path_, it->second);
    return t;  // moved, not copied (a conditional expression would copy it)
  }
  void read_into(const std::string& name, Tensor& into) const override {
    const auto it = index_.find(name);
    if (it == index_.end() || it->second.bf16_by_name) {
      into = read(name);
      return;
    }
    read_raw_into(it->second.raw, into);
  }
  std::optional<std::vector<std::int64_t>> declared_shape(const std::string& name) const override {
    const auto it = index_.find(name);
    if (it == index_.end()) throw InputError(path_, "no tensor " + q_name(name));
    return declared_raw(it->second.raw);
  }

 protected:
  virtual Tensor read_raw(const std::string& raw) const = 0;
  virtual std::optional<std::vector<std::int64_t>> declared_raw(const std::string&) const { return std::nullopt; }
  virtual void read_raw_into(const std::string& raw, Tensor& into) const { into = read_raw(raw); }
  void set_names(const std::vector<std::string>& raws) { index_ = index_names(raws, path_); }

 private:
  std::string path_;
  SourceFormat format_;
  std::map<std::string, Entry> index_;
};

class Hdf5Source final : public IndexedSource {
 public:
  explicit Hdf5Source(const std::string& path) : IndexedSource(path, SourceFormat::kHdf5), file_(Hdf5File::open(path)) {
    set_names(file_.list_datasets());
  }

 private:
  Tensor read_raw(const std::string& raw) const override { return file_.read(raw); }
  void read_raw_into(const std::string& raw, Tensor& into) const override { file_.read_into(raw, into); }
  std::optional<std::vector<std::int64_t>> declared_raw(const std::string& raw) const override {
    return file_.info(raw).shape;
  }
  Hdf5File file_;
};

class SafetensorsSource final : public IndexedSource {
 public:
  explicit SafetensorsSource(const std::string& path)
      : IndexedSource(path, SourceFormat::kSafetensors), file_(SafetensorsFile::open(path)) {
    set_names(file_.names());
  }

 private:
  Tensor read_raw(const std::string& raw) const override { return file_.read(raw); }
  std::optional<std::vector<std::int64_t>> declared_raw(const std::string& raw) const override {
    return file_.entry(raw).shape;
  }
  SafetensorsFile file_;
};

class NpzSource final : public IndexedSource {
 public:
  explicit NpzSource(const std::string& path) : IndexedSource(path, SourceFormat::kNpz), file_(NpzFile::open(path)) {
    set_names(file_.keys());
  }

 private:
  Tensor read_raw(const std::string& raw) const override { return file_.read(raw, {U2As::kUInt16}); }
  std::optional<std::vector<std::int64_t>> declared_raw(const std::string& raw) const override {
    return file_.member_header(raw).shape;
  }
  NpzFile file_;
};

// One .npy file (`dir` empty) or a directory of them.
class NpySource final : public IndexedSource {
 public:
  NpySource(const std::string& path, bool is_dir)
      : IndexedSource(path, is_dir ? SourceFormat::kNpyDir : SourceFormat::kNpy), dir_(is_dir) {
    std::vector<std::string> raws;
    if (!dir_) {
      std::string base = fs::path(path).filename().string();
      if (ends_with(base, ".npy")) base.resize(base.size() - 4);
      raws.push_back(base);
      file_of_[base] = path;
    } else {
      std::error_code ec;
      fs::recursive_directory_iterator it(path, fs::directory_options::none, ec), end;
      if (ec) throw InputError(path, "cannot list the directory: " + ec.message());
      for (; it != end; it.increment(ec)) {
        if (ec) throw InputError(path, "cannot list the directory: " + ec.message());
        if (it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
        const std::string rel = fs::relative(it->path(), path, ec).generic_string();
        if (ec || !ends_with(rel, ".npy")) continue;
        const std::string raw = rel.substr(0, rel.size() - 4);
        raws.push_back(raw);
        file_of_[raw] = it->path().string();
        if (raws.size() > kMaxDirFiles) throw InputError(path, "more than a million .npy files");
      }
      if (raws.empty()) throw InputError(path, "the directory holds no .npy files");
    }
    set_names(raws);
  }

 private:
  Tensor read_raw(const std::string& raw) const override { return read_npy(file_of_.at(raw), {U2As::kUInt16}); }
  std::optional<std::vector<std::int64_t>> declared_raw(const std::string& raw) const override {
    const std::string& p = file_of_.at(raw);
    std::error_code ec;
    const auto total = fs::file_size(p, ec);
    if (ec) return std::nullopt;  // the read reports it
    std::ifstream in(p, std::ios::binary);
    std::vector<std::byte> head(static_cast<std::size_t>(std::min<std::uintmax_t>(total, 12 + kNpyMaxHeaderBytes)));
    if (!in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()))) return std::nullopt;
    return check_npy_prefix(head, total, {U2As::kUInt16}, p).shape;
  }
  bool dir_;
  std::map<std::string, std::string> file_of_;
};

}  // namespace

std::string_view source_format_name(SourceFormat f) {
  switch (f) {
    case SourceFormat::kHdf5:
      return "HDF5";
    case SourceFormat::kSafetensors:
      return "safetensors";
    case SourceFormat::kNpy:
      return ".npy";
    case SourceFormat::kNpyDir:
      return "directory of .npy";
    case SourceFormat::kNpz:
      return ".npz";
  }
  return "?";
}

SourceFormat sniff_source_format(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw InputError(path, "cannot open: no such file or directory");
  if (fs::is_directory(st)) return SourceFormat::kNpyDir;
  if (!fs::is_regular_file(st)) throw InputError(path, "cannot open: not a regular file or directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "cannot open");
  char b[16] = {};
  in.read(b, sizeof b);
  const auto n = static_cast<std::size_t>(in.gcount());
  if (n >= 6 && std::memcmp(b, "\x93NUMPY", 6) == 0) return SourceFormat::kNpy;
  if (n >= 4 && (std::memcmp(b, "PK\x03\x04", 4) == 0 || std::memcmp(b, "PK\x05\x06", 4) == 0)) {
    return SourceFormat::kNpz;
  }
  if (looks_like_hdf5(path)) return SourceFormat::kHdf5;
  if (n >= 9) {
    std::uint64_t len = 0;
    for (int i = 0; i < 8; ++i) len |= std::uint64_t{static_cast<unsigned char>(b[i])} << (8 * i);
    std::size_t k = 8;
    while (k < n && (b[k] == ' ' || b[k] == '\t' || b[k] == '\n' || b[k] == '\r')) ++k;
    const auto size = fs::file_size(path, ec);
    if (!ec && len <= kSafetensorsMaxHeaderBytes && len + 8 <= size && k < n && b[k] == '{') {
      return SourceFormat::kSafetensors;
    }
  }
  throw InputError(path, "unrecognised format: not HDF5, safetensors, .npy or .npz (by content)");
}

std::unique_ptr<TensorSource> TensorSource::open(const std::string& path) {
  switch (sniff_source_format(path)) {
    case SourceFormat::kHdf5:
      return std::make_unique<Hdf5Source>(path);
    case SourceFormat::kSafetensors:
      return std::make_unique<SafetensorsSource>(path);
    case SourceFormat::kNpy:
      return std::make_unique<NpySource>(path, false);
    case SourceFormat::kNpyDir:
      return std::make_unique<NpySource>(path, true);
    case SourceFormat::kNpz:
      return std::make_unique<NpzSource>(path);
  }
  throw InputError(path, "unrecognised format");
}

MappedTensorSource::MappedTensorSource(std::unique_ptr<TensorSource> source, const NameMap& map,
                                       const NameMapOptions& opts)
    : source_(std::move(source)) {
  if (!source_) throw InputError("", "no tensor source");
  mapped_ = apply_name_map(map, source_->names(), source_->path(), opts);
}

std::vector<std::string> MappedTensorSource::names() const {
  std::vector<std::string> r;
  for (const auto& [c, s] : mapped_.to_source) r.push_back(c);
  return r;
}

bool MappedTensorSource::contains(const std::string& canonical) const { return mapped_.to_source.count(canonical) > 0; }

const std::string& MappedTensorSource::source_name(const std::string& canonical) const {
  const auto it = mapped_.to_source.find(canonical);
  if (it == mapped_.to_source.end()) {
    throw InputError(source_->path(), "no tensor maps to the canonical name " + q_name(canonical));
  }
  return it->second;
}

Tensor MappedTensorSource::read(const std::string& canonical) const { return source_->read(source_name(canonical)); }

void MappedTensorSource::read_into(const std::string& canonical, Tensor& into) const {
  source_->read_into(source_name(canonical), into);
}

void MappedTensorSource::check_declared(const std::string& canonical, std::int64_t max_elements) const {
  const std::string& name = source_name(canonical);
  const auto shape = source_->declared_shape(name);
  if (!shape) return;
  std::int64_t n = 1;
  for (std::int64_t d : *shape) {
    if (d < 0 || (d != 0 && n > max_elements / d)) {
      n = max_elements + 1;
      break;
    }
    n *= d;
  }
  if (n > max_elements)
    throw InputError(source_->path(), q_name(name) + " declares shape " + shape_string(*shape) + ", more than the " +
                                          std::to_string(max_elements) + " elements of the golden's " +
                                          q_name(canonical) + " (refused before reading it)");
}

Tensor MappedTensorSource::read(const std::string& canonical, std::int64_t max_elements) const {
  check_declared(canonical, max_elements);
  return read(canonical);
}

void MappedTensorSource::read_into(const std::string& canonical, Tensor& into, std::int64_t max_elements) const {
  check_declared(canonical, max_elements);
  read_into(canonical, into);
}

Tensor dequantize_blocks(const Tensor& codes, const Tensor& scales, const std::string& where) {
  const DType cd = codes.dtype();
  if (cd != DType::kE4M3 && cd != DType::kE5M2 && cd != DType::kE2M1x2)
    throw InputError(where, "dtype " + std::string(dtype_name(cd)) + " is not fp8 or fp4 codes");
  if (scales.dtype() != DType::kE8M0 && scales.dtype() != DType::kF32)
    throw InputError(where,
                     "scales of dtype " + std::string(dtype_name(scales.dtype())) + ", expected e8m0 or float32");
  const auto& cs = codes.shape();
  const auto& ss = scales.shape();
  const bool lead_ok = !cs.empty() && ss.size() == cs.size() && std::equal(cs.begin(), cs.end() - 1, ss.begin());
  if (!lead_ok || ss.back() <= 0 || cs.back() % ss.back() != 0)
    throw InputError(where, "scale shape " + shape_string(ss) + " does not divide the codes' shape " +
                                shape_string(cs) + " into blocks of the last dimension");
  const std::int64_t cols = cs.back(), per_row = ss.back(), block = cols / per_row, n = codes.numel();
  Tensor v(DType::kF64, cs);
  auto out = v.values<double>();
  const auto c = codes.values<std::uint8_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    double q = 0.0;
    if (cd == DType::kE2M1x2) {
      const std::uint8_t byte = c[k / 2];
      q = e2m1_to_float(static_cast<std::uint8_t>(k % 2 == 0 ? byte & 0xFu : byte >> 4));
    } else {
      q = cd == DType::kE4M3 ? e4m3_to_float(c[k]) : e5m2_to_float(c[k]);
    }
    const auto si = static_cast<std::size_t>((i / cols) * per_row + (i % cols) / block);
    const double s = scales.dtype() == DType::kE8M0 ? e8m0_to_float(scales.values<std::uint8_t>()[si])
                                                    : static_cast<double>(scales.values<float>()[si]);
    out[k] = q * s;  // exact: ≤ 4 significant bits times ≤ 24
  }
  return v;
}

}  // namespace dsv4
