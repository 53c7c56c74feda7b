// safetensors reader/writer. See safetensors.hpp for the rules a file must follow and the dtypes.
#include "dsv4/io/safetensors.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "dsv4/io/atomic_file.hpp"
#include "strict_json.hpp"

namespace dsv4 {

static_assert(std::endian::native == std::endian::little, "the safetensors reader assumes a little-endian host");

namespace {

constexpr std::size_t kLenBytes = 8;  // the u64 header length

// The format's dtype codes, in the format's own order (increasing alignment: the writer sorts
// tensors by decreasing rank), with their bit sizes and the dsv4 DType where there is one.
struct CodeInfo {
  std::string_view code;
  unsigned bits;
  std::optional<DType> dtype;
};
const std::array<CodeInfo, 22> kCodes{{
    {"BOOL", 8, std::nullopt},
    {"F4", 4, DType::kE2M1x2},
    {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt},
    {"U8", 8, DType::kU8},
    {"I8", 8, DType::kI8},
    {"F8_E5M2", 8, DType::kE5M2},
    {"F8_E4M3", 8, DType::kE4M3},
    {"F8_E8M0", 8, DType::kE8M0},
    {"F8_E4M3FNUZ", 8, std::nullopt},
    {"F8_E5M2FNUZ", 8, std::nullopt},
    {"I16", 16, std::nullopt},
    {"U16", 16, DType::kU16},
    {"F16", 16, DType::kF16},
    {"BF16", 16, DType::kBF16},
    {"I32", 32, DType::kI32},
    {"U32", 32, std::nullopt},
    {"F32", 32, DType::kF32},
    {"C64", 64, std::nullopt},
    {"F64", 64, DType::kF64},
    {"I64", 64, DType::kI64},
    {"U64", 64, std::nullopt},
}};

const CodeInfo* find_code(std::string_view code) {
  for (const auto& c : kCodes) {
    if (c.code == code) return &c;
  }
  return nullptr;
}

std::size_t code_rank(std::string_view code) {
  for (std::size_t i = 0; i < kCodes.size(); ++i) {
    if (kCodes[i].code == code) return i;
  }
  return 0;
}

std::string known_codes() {
  std::string s;
  for (const auto& c : kCodes) {
    if (!s.empty()) s += ' ';
    s += c.code;
  }
  return s;
}

std::string tensor_label(std::string_view name) { return "tensor '" + printable_name(name) + "'"; }
// A top-level header key in a message: a tensor, or the metadata map.
std::string entry_label(std::string_view key) {
  return key == "__metadata__" ? std::string("'__metadata__'") : tensor_label(key);
}

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, ≤ U+10FFFF).
bool valid_utf8(std::span<const std::byte> s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  auto at = [&](std::size_t k) { return std::to_integer<unsigned>(s[k]); };
  while (i < n) {
    const unsigned c = at(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (at(i + 1) < lo || at(i + 1) > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      if (at(i + k) < 0x80 || at(i + k) > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

// A non-negative JSON integer that fits int64, or nullopt.
std::optional<std::uint64_t> json_uint(const nlohmann::json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
  return std::nullopt;
}

}  // namespace

std::optional<unsigned> safetensors_dtype_bits(std::string_view code) {
  const CodeInfo* c = find_code(code);
  if (!c) return std::nullopt;
  return c->bits;
}

std::optional<DType> safetensors_dtype_to_dsv4(std::string_view code) {
  const CodeInfo* c = find_code(code);
  if (!c) return std::nullopt;
  return c->dtype;
}

std::string_view safetensors_dtype_code(DType d) {
  for (const auto& c : kCodes) {
    if (c.dtype == d) return c.code;
  }
  throw InputError("", "dtype " + std::string(dtype_name(d)) + " has no safetensors code");
}

// ---- reader ----

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

// `prefix` holds the first min(file_size, 8 + N) bytes of the file.
void SafetensorsFile::parse_header(std::span<const std::byte> prefix, std::uint64_t file_size) {
  using nlohmann::json;
  if (file_size < kLenBytes) {
    throw InputError(where_, "not a safetensors file: " + std::to_string(file_size) +
                                 " bytes is shorter than the 8-byte header length");
  }
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < kLenBytes; ++i) n |= std::to_integer<std::uint64_t>(prefix[i]) << (8 * i);
  if (n > kSafetensorsMaxHeaderBytes) {
    throw InputError(where_, "header length " + std::to_string(n) + " is over the format's limit of " +
                                 std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  }
  if (n > file_size - kLenBytes) {
    throw InputError(where_, "truncated header: it declares " + std::to_string(n) + " bytes, the file has " +
                                 std::to_string(file_size - kLenBytes) + " after the length");
  }
  if (prefix.size() < kLenBytes + n) throw InputError(where_, "read error in the header");
  const auto text_bytes = prefix.subspan(kLenBytes, static_cast<std::size_t>(n));
  if (!valid_utf8(text_bytes)) throw InputError(where_, "header is not valid UTF-8");
  const std::string_view text(reinterpret_cast<const char*>(text_bytes.data()), text_bytes.size());

  json h;
  try {
    // the schema: root object → tensor entry → shape / data_offsets array
    h = detail::parse_json_strict(text, 3);
  } catch (const detail::JsonStructureError& e) {
    using K = detail::JsonStructureError::Kind;
    if (e.kind == K::kDuplicateKey && e.path.empty()) {
      throw InputError(where_, "duplicate key: " + entry_label(e.key) + " is listed twice");
    }
    const std::string at = e.path.empty() ? std::string() : entry_label(e.path.front()) + ": ";
    if (e.kind == K::kDuplicateKey) throw InputError(where_, at + "duplicate key '" + printable_name(e.key) + "'");
    throw InputError(where_, at + "nested deeper than the format allows");
  } catch (const json::exception& e) {
    throw InputError(where_, "header is not valid JSON: " + detail::json_error_text(e));
  }
  if (!h.is_object()) throw InputError(where_, "header is not a JSON object");

  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw InputError(where_, "'__metadata__' is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          throw InputError(where_, "'__metadata__' entry '" + printable_name(m.key()) + "' is not a string");
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string who = tensor_label(name);
    if (!v.is_object()) throw InputError(where_, who + ": entry is not an object");
    SafetensorsEntry e;
    e.name = name;
    const auto dt = v.find("dtype");
    const auto sh = v.find("shape");
    const auto off = v.find("data_offsets");
    if (dt == v.end()) throw InputError(where_, who + ": missing 'dtype'");
    if (sh == v.end()) throw InputError(where_, who + ": missing 'shape'");
    if (off == v.end()) throw InputError(where_, who + ": missing 'data_offsets'");
    if (!dt->is_string()) throw InputError(where_, who + ": 'dtype' is not a string");
    e.dtype = dt->get<std::string>();
    const CodeInfo* code = find_code(e.dtype);
    if (!code)
      throw InputError(
          where_, who + ": unknown dtype '" + printable_name(e.dtype) + "' (the format knows: " + known_codes() + ")");
    if (!sh->is_array()) throw InputError(where_, who + ": 'shape' is not an array");
    for (const json& d : *sh) {
      const auto u = json_uint(d);
      if (!u) throw InputError(where_, who + ": 'shape' entry " + d.dump() + " is not a non-negative integer");
      if (*u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw InputError(where_, who + ": dimension " + std::to_string(*u) + " is over 2^63 - 1");
      }
      e.shape.push_back(static_cast<std::int64_t>(*u));
    }
    if (!off->is_array() || off->size() != 2) {
      throw InputError(where_, who + ": 'data_offsets' is not a [begin, end] pair");
    }
    const auto b = json_uint((*off)[0]);
    const auto en = json_uint((*off)[1]);
    if (!b || !en) throw InputError(where_, who + ": 'data_offsets' entries are not non-negative integers");
    e.begin = *b;
    e.end = *en;
    if (e.end < e.begin) {
      throw InputError(where_, who + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                                   "] end before they begin");
    }
    // size = numel × bits / 8, every product checked for overflow (ValidationOverflow upstream)
    std::uint64_t numel = 1;
    for (std::int64_t d : e.shape) {
      const auto ud = static_cast<std::uint64_t>(d);
      if (ud != 0 && numel > std::numeric_limits<std::uint64_t>::max() / ud) {
        throw InputError(where_, who + ": shape " + shape_string(e.shape) + " overflows a 64-bit element count");
      }
      numel *= ud;
    }
    if (numel > std::numeric_limits<std::uint64_t>::max() / code->bits) {
      throw InputError(where_,
                       who + ": shape " + shape_string(e.shape) + " of " + e.dtype + " overflows a 64-bit bit count");
    }
    const std::uint64_t bits = numel * code->bits;
    if (bits % 8 != 0) {
      throw InputError(where_, who + ": shape " + shape_string(e.shape) + " of " + e.dtype + " is " +
                                   std::to_string(bits) + " bits, not a whole number of bytes");
    }
    if (e.end - e.begin != bits / 8) {
      throw InputError(where_, who + ": shape " + shape_string(e.shape) + " of " + e.dtype + " needs " +
                                   std::to_string(bits / 8) + " bytes but data_offsets [" + std::to_string(e.begin) +
                                   ", " + std::to_string(e.end) + "] span " + std::to_string(e.end - e.begin));
    }
    entries_.push_back(std::move(e));
  }

  // The tensors must tile the data buffer: sorted by offsets, each starts where the last ended.
  std::sort(entries_.begin(), entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : (a.end != b.end ? a.end < b.end : a.name < b.name);
  });
  std::uint64_t at = 0;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const SafetensorsEntry& e = entries_[i];
    if (e.begin > at) {
      throw InputError(where_, tensor_label(e.name) + ": data_offsets begin at " + std::to_string(e.begin) +
                                   ", leaving a gap of " + std::to_string(e.begin - at) + " bytes after " +
                                   (i ? tensor_label(entries_[i - 1].name) : std::string("the header")));
    }
    if (e.begin < at) {
      throw InputError(where_, tensor_label(e.name) + ": data_offsets [" + std::to_string(e.begin) + ", " +
                                   std::to_string(e.end) + "] overlap " + tensor_label(entries_[i - 1].name) +
                                   " (which ends at " + std::to_string(at) + ")");
    }
    at = e.end;
  }
  const std::uint64_t data_len = file_size - kLenBytes - n;
  if (at < data_len) {
    throw InputError(where_, std::to_string(data_len - at) +
                                 " trailing bytes after the last tensor (the tensors end at " + std::to_string(at) +
                                 ", the data buffer has " + std::to_string(data_len) + ")");
  }
  if (at > data_len) {
    throw InputError(where_,
                     "truncated data: the tensors need " + std::to_string(at) + " bytes, the file has " +
                         std::to_string(data_len) + " after the header" +
                         (entries_.empty() ? std::string() : " (last: " + tensor_label(entries_.back().name) + ")"));
  }
  data_start_ = kLenBytes + n;
  for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].name, i);
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.where_ = path;
  f.src_ = ByteSource::open(path);
  const std::uint64_t size = f.src_.size();
  std::vector<std::byte> prefix(static_cast<std::size_t>(std::min<std::uint64_t>(size, kLenBytes)));
  f.read_at(0, prefix, "");
  if (size >= kLenBytes) {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < kLenBytes; ++i) n |= std::to_integer<std::uint64_t>(prefix[i]) << (8 * i);
    // Only read the header once its length is known to be within the limit and the file.
    if (n <= kSafetensorsMaxHeaderBytes && n <= size - kLenBytes) {
      prefix.resize(static_cast<std::size_t>(kLenBytes + n));
      f.read_at(kLenBytes, std::span(prefix).subspan(kLenBytes), "");
    }
  }
  f.parse_header(prefix, size);
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<std::byte> bytes, const std::string& where) {
  SafetensorsFile f;
  f.where_ = where;
  f.src_ = ByteSource::memory(std::move(bytes));
  f.parse_header(f.src_.memory_bytes(), f.src_.size());
  return f;
}

void SafetensorsFile::read_at(std::uint64_t offset, std::span<std::byte> dst, const std::string& tensor) const {
  const std::string who = tensor.empty() ? std::string() : tensor_label(tensor) + ": ";
  src_.read_at(offset, dst, where_, who, {"read past the end", "truncated data: the file shrank while it was read"});
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> r;
  r.reserve(entries_.size());
  for (const auto& e : entries_) r.push_back(e.name);
  return r;
}

bool SafetensorsFile::contains(std::string_view name) const { return index_.find(name) != index_.end(); }

const SafetensorsEntry& SafetensorsFile::entry(std::string_view name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) throw InputError(where_, tensor_label(name) + ": no such tensor in the file");
  return entries_[it->second];
}

void SafetensorsFile::read_raw(std::string_view name, std::span<std::byte> dst) const {
  const SafetensorsEntry& e = entry(name);
  if (dst.size() != e.nbytes()) {
    throw InputError(where_, tensor_label(name) + ": destination of " + std::to_string(dst.size()) + " bytes for " +
                                 std::to_string(e.nbytes()) + " bytes of data");
  }
  read_at(data_start_ + e.begin, dst, e.name);
}

Tensor SafetensorsFile::read(std::string_view name, const SafetensorsReadOptions& opts) const {
  const SafetensorsEntry& e = entry(name);
  const std::string who = tensor_label(name);
  std::optional<DType> dt = safetensors_dtype_to_dsv4(e.dtype);
  if (!dt) throw InputError(where_, who + ": dtype " + e.dtype + " is valid safetensors but has no dsv4 dtype");
  std::vector<std::int64_t> shape = e.shape;
  if (opts.bytes_as_packed_fp4) {
    if (*dt != DType::kI8 && *dt != DType::kU8) {
      throw InputError(where_, who + ": packed fp4 requested but the dtype is " + e.dtype + " (expected I8 or U8)");
    }
    if (shape.empty()) throw InputError(where_, who + ": packed fp4 requested for a 0-d tensor");
    if (shape.back() > std::numeric_limits<std::int64_t>::max() / 2) {
      throw InputError(where_, who + ": last dimension too large for packed fp4");
    }
    shape.back() *= 2;
    dt = DType::kE2M1x2;
  }
  if (*dt == DType::kE2M1x2 && (shape.empty() || shape.back() % 2 != 0)) {
    throw InputError(where_, who + ": F4 shape " + shape_string(shape) +
                                 " does not have an even last dimension (dsv4 packs fp4 two per byte within a row)");
  }
  Tensor t = Tensor::uninitialized(
      *dt, shape);  // read_at fills it; its byte count equals the validated entry size, which the file holds
  if (t.nbytes() != e.nbytes()) throw InputError(where_, who + ": internal size mismatch");
  read_at(data_start_ + e.begin, std::span(t.bytes(), t.nbytes()), e.name);
  return t;
}

std::map<std::string, Tensor> read_safetensors(const std::string& path, const SafetensorsReadOptions& opts) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  std::map<std::string, Tensor> r;
  for (const auto& e : f.entries()) r.emplace(e.name, f.read(e.name, opts));
  return r;
}

// ---- writer ----

namespace {

struct Planned {
  std::string name;
  std::string_view code;
  std::vector<std::int64_t> shape;
  const Tensor* tensor;
};

// The header bytes (padded to a multiple of 8) and the tensors in data order.
std::pair<std::string, std::vector<Planned>> plan(const NamedTensors& tensors, const SafetensorsWriteOptions& opts) {
  std::vector<Planned> p;
  std::set<std::string_view> seen;
  for (const auto& [name, t] : tensors) {
    if (!t) throw InputError("", tensor_label(name) + ": null tensor");
    if (name.empty()) throw InputError("", "a tensor name is empty");
    if (name == "__metadata__") throw InputError("", "'__metadata__' cannot name a tensor");
    if (!seen.insert(name).second) throw InputError("", tensor_label(name) + ": duplicate name");
    Planned q{name, safetensors_dtype_code(t->dtype()), t->shape(), t};
    if (t->dtype() == DType::kE2M1x2 && opts.fp4_as == SafetensorsWriteOptions::Fp4As::kI8) {
      q.code = "I8";
      if (q.shape.empty()) throw InputError("", tensor_label(name) + ": 0-d packed fp4 tensor");
      q.shape.back() /= 2;  // Tensor guarantees an even last dimension
    }
    if (t->dtype() == DType::kE2M1x2 && q.shape.empty())
      throw InputError("", tensor_label(name) + ": 0-d packed fp4 tensor");
    p.push_back(std::move(q));
  }
  std::sort(p.begin(), p.end(), [](const Planned& a, const Planned& b) {
    const std::size_t ra = code_rank(a.code), rb = code_rank(b.code);
    return ra != rb ? ra > rb : a.name < b.name;
  });
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!opts.metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : opts.metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::uint64_t off = 0;
  for (const Planned& q : p) {
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = q.code;
    e["shape"] = q.shape;
    e["data_offsets"] = {off, off + q.tensor->nbytes()};
    off += q.tensor->nbytes();
    h[q.name] = std::move(e);
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const nlohmann::json::exception&) {
    throw InputError("", "a tensor name or metadata string is not valid UTF-8");
  }
  text.resize((text.size() + kLenBytes - 1) / kLenBytes * kLenBytes, ' ');
  if (text.size() > kSafetensorsMaxHeaderBytes) {
    throw InputError("", "header of " + std::to_string(text.size()) + " bytes is over the format's limit");
  }
  std::string out(kLenBytes, '\0');
  for (std::size_t i = 0; i < kLenBytes; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  return {out + text, std::move(p)};
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

std::vector<std::byte> encode_safetensors(const NamedTensors& tensors, const SafetensorsWriteOptions& opts) {
  const auto [head, p] = plan(tensors, opts);
  std::size_t total = head.size();
  for (const Planned& q : p) total += q.tensor->nbytes();
  std::vector<std::byte> out;
  out.reserve(total);
  const auto hb = as_bytes(head);
  out.insert(out.end(), hb.begin(), hb.end());
  for (const Planned& q : p) out.insert(out.end(), q.tensor->bytes(), q.tensor->bytes() + q.tensor->nbytes());
  return out;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors, const SafetensorsWriteOptions& opts) {
  std::pair<std::string, std::vector<Planned>> pl;
  try {
    pl = plan(tensors, opts);
  } catch (const InputError& e) {
    throw InputError(path, e.what());
  }
  AtomicFile out(path);
  out.write(as_bytes(pl.first));
  for (const Planned& q : pl.second) out.write({q.tensor->bytes(), q.tensor->nbytes()});
  out.commit();
}

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const SafetensorsWriteOptions& opts) {
  NamedTensors v;
  v.reserve(tensors.size());
  for (const auto& [k, t] : tensors) v.emplace_back(k, &t);
  write_safetensors(path, v, opts);
}

}  // namespace dsv4
