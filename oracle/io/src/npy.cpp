// .npy reader/writer (NEP 1). See npy.hpp for the supported subset and the bf16 convention.
#include "dsv4/io/npy.hpp"

#include <array>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#include "dsv4/io/atomic_file.hpp"
#include "dtype_names.hpp"

namespace dsv4 {

static_assert(std::endian::native == std::endian::little, "the .npy reader assumes a little-endian host");

namespace {

constexpr std::array<unsigned char, 6> kMagic{0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr std::size_t kPreambleV1 = 10;  // magic, 2 version bytes, uint16 header length
constexpr std::size_t kPreambleV2 = 12;  // magic, 2 version bytes, uint32 header length

// ---- descr ↔ DType ----

// The first entry for a dtype is what the writer emits.
constexpr std::array<io_detail::DTypeName, 10> kDescrs{{
    {"<f8", DType::kF64},
    {"<f4", DType::kF32},
    {"<f2", DType::kF16},
    {"<i8", DType::kI64},
    {"<i4", DType::kI32},
    {"|i1", DType::kI8},
    {"<i1", DType::kI8},
    {"|u1", DType::kU8},
    {"<u1", DType::kU8},
    {"<u2", DType::kU16},
}};

std::string describe_unsupported(const std::string& d) {
  std::string why;
  if (d.empty()) {
    why = "empty descr";
  } else if (d[0] == '>') {
    why = "big-endian data; byteswap to little-endian ('<') before saving";
  } else {
    const char kind = (d[0] == '<' || d[0] == '|' || d[0] == '=') ? (d.size() > 1 ? d[1] : '\0') : d[0];
    switch (kind) {
      case 'O':
        why = "Python objects";
        break;
      case 'c':
        why = "complex";
        break;
      case 'U':
      case 'S':
      case 'a':
        why = "strings";
        break;
      case 'M':
      case 'm':
        why = "datetime";
        break;
      case 'V':
        why = "void/record";
        break;
      case 'b':
      case '?':
        why = "bool";
        break;
      default:
        break;
    }
    if (d[0] == '=') why = "native byte order '='; save with an explicit '<'";
  }
  std::string msg = "unsupported dtype '" + d + "'";
  if (!why.empty()) msg += " (" + why + ")";
  return msg + "; supported: <f8 <f4 <f2 <i8 <i4 |i1 |u1 <u2";
}

std::string_view descr_for(DType d) {
  switch (d) {
    case DType::kBF16:
    case DType::kU16:
      return "<u2";
    case DType::kE4M3:
    case DType::kE5M2:
    case DType::kE8M0:
    case DType::kE2M1x2:
    case DType::kU8:
      return "|u1";
    default:
      break;
  }
  if (const auto descr = io_detail::name_of_dtype(kDescrs, d)) return *descr;
  throw InputError("", "cannot write dtype " + std::string(dtype_name(d)) + " to .npy");
}

// ---- header dict parser: a tiny subset of Python literal syntax ----

class DictParser {
 public:
  DictParser(std::string_view s, const std::string& where) : s_(s), where_(where) {}

  void parse(NpyHeader& out) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    ws();
    expect('{', "the header must start with '{'");
    while (true) {
      ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = string_literal("a quoted key");
      ws();
      expect(':', "expected ':' after key '" + key + "'");
      ws();
      if (key == "descr") {
        if (have_descr) fail_dup(key);
        have_descr = true;
        if (peek() == '[') {
          throw InputError(where_, "unsupported dtype: structured (record) dtype, descr is a list");
        }
        out.descr = string_literal("a quoted dtype string for 'descr'");
      } else if (key == "fortran_order") {
        if (have_fortran) fail_dup(key);
        have_fortran = true;
        out.fortran_order = boolean();
      } else if (key == "shape") {
        if (have_shape) fail_dup(key);
        have_shape = true;
        out.shape = shape_tuple();
      } else {
        bad("unexpected key '" + key + "' (a .npy header has exactly 'descr', 'fortran_order', 'shape')");
      }
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() == '}') {
        ++i_;
        break;
      }
      bad("expected ',' or '}' after the value of '" + key + "'");
    }
    ws();
    if (i_ != s_.size()) bad("unexpected text after the closing '}'");
    if (!have_descr) bad("missing key 'descr'");
    if (!have_fortran) bad("missing key 'fortran_order'");
    if (!have_shape) bad("missing key 'shape'");
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    throw InputError(where_, "header is not a valid dict: " + what + " (at header byte " + std::to_string(i_) + ")");
  }
  [[noreturn]] void fail_dup(const std::string& key) const { bad("duplicate key '" + key + "'"); }

  int peek() const { return i_ < s_.size() ? static_cast<unsigned char>(s_[i_]) : -1; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c, const std::string& what) {
    if (peek() != static_cast<unsigned char>(c)) bad(what);
    ++i_;
  }

  std::string string_literal(const std::string& what) {
    const int q = peek();
    if (q != '\'' && q != '"') bad("expected " + what);
    ++i_;
    std::string r;
    while (true) {
      const int c = peek();
      if (c < 0 || c == '\n' || c == '\r') bad("unterminated string");
      ++i_;
      if (c == q) break;
      if (c == '\\') bad("escape sequences are not supported in header strings");
      if (c < 0x20 || c > 0x7E) bad("non-printable or non-ASCII byte in a header string");
      r.push_back(static_cast<char>(c));
    }
    return r;
  }

  bool boolean() {
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    bad("expected True or False for 'fortran_order'");
  }

  std::int64_t integer() {
    bool neg = false;
    if (peek() == '-') {
      neg = true;
      ++i_;
      ws();
    }
    if (peek() < '0' || peek() > '9') bad("expected an integer in 'shape'");
    std::uint64_t v = 0;
    bool overflow = false;
    while (peek() >= '0' && peek() <= '9') {
      const auto d = static_cast<std::uint64_t>(peek() - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) {
        overflow = true;
      } else {
        v = v * 10 + d;
      }
      ++i_;
    }
    if (peek() == 'L' || peek() == 'l') ++i_;  // Python 2 long suffix, as numpy tolerates
    if (neg && (v != 0 || overflow)) {
      throw InputError(where_,
                       "negative dimension -" + (overflow ? std::string("<huge>") : std::to_string(v)) + " in 'shape'");
    }
    if (overflow || v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      throw InputError(where_, "dimension in 'shape' is too large (over 2^63 - 1)");
    }
    return static_cast<std::int64_t>(v);
  }

  std::vector<std::int64_t> shape_tuple() {
    expect('(', "expected a tuple '(...)' for 'shape'");
    std::vector<std::int64_t> dims;
    bool trailing_comma = false;
    while (true) {
      ws();
      if (peek() == ')') {
        ++i_;
        break;
      }
      if (dims.size() >= 64) bad("more than 64 dimensions in 'shape'");
      dims.push_back(integer());
      trailing_comma = false;
      ws();
      if (peek() == ',') {
        ++i_;
        trailing_comma = true;
        continue;
      }
      if (peek() == ')') {
        ++i_;
        break;
      }
      bad("expected ',' or ')' in 'shape'");
    }
    if (dims.size() == 1 && !trailing_comma) bad("'shape' (n) is not a tuple; a 1-d shape is written (n,)");
    return dims;
  }

  std::string_view s_;
  const std::string& where_;
  std::size_t i_ = 0;
};

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

std::uint32_t read_le(const std::byte* p, std::size_t n) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint32_t>(std::to_integer<unsigned>(p[i])) << (8 * i);
  return v;
}

// The result of validating everything before the data: the header, the dtype and the data size.
struct Prefix {
  NpyHeader header;
  DType dtype = DType::kF32;
  std::uint64_t data_bytes = 0;
};

// `p` holds the first `avail` bytes of a file of `total` bytes (avail ≥ min(total, 12 + limit)).
Prefix parse_prefix(const std::byte* p, std::size_t avail, std::uint64_t total, const NpyReadOptions& opts,
                    bool bf16_name, const std::string& where) {
  Prefix r;
  if (total < kMagic.size() || std::memcmp(p, kMagic.data(), kMagic.size()) != 0) {
    throw InputError(where, "not a .npy file (bad magic: the file does not start with \\x93NUMPY)");
  }
  if (total < 8) throw InputError(where, "truncated header: the file ends inside the version bytes");
  const int major = std::to_integer<int>(p[6]);
  const int minor = std::to_integer<int>(p[7]);
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    throw InputError(where, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                                " (supported: 1.0, 2.0, 3.0)");
  }
  const std::size_t pre = major == 1 ? kPreambleV1 : kPreambleV2;
  if (total < pre) throw InputError(where, "truncated header: the file ends inside the header-length field");
  const std::uint32_t hlen = read_le(p + 8, pre - 8);
  if (hlen > kNpyMaxHeaderBytes) {
    throw InputError(where, "header of " + std::to_string(hlen) + " bytes is longer than the " +
                                std::to_string(kNpyMaxHeaderBytes) + "-byte limit (refused)");
  }
  if (total - pre < hlen || avail < pre + hlen) {
    throw InputError(where, "truncated header: it declares " + std::to_string(hlen) + " bytes, the file has " +
                                std::to_string(total - pre) + " after the preamble");
  }
  NpyHeader& h = r.header;
  h.major = major;
  h.minor = minor;
  h.data_offset = pre + hlen;
  const std::string_view text(reinterpret_cast<const char*>(p + pre), hlen);
  parse_npy_header_dict(text, h, where);

  // dtype
  std::optional<DType> dt = io_detail::dtype_named(kDescrs, h.descr);
  if (!dt) throw InputError(where, describe_unsupported(h.descr));
  if (*dt == DType::kU16 && (opts.u2_as == U2As::kBF16 || (opts.u2_as == U2As::kByFileName && bf16_name))) {
    dt = DType::kBF16;
  }
  r.dtype = *dt;
  if (h.fortran_order) {
    throw InputError(where, "fortran_order True (column-major data) is not supported; save a C-order array");
  }

  // size: every product checked for overflow before it is used
  std::uint64_t n = 1;
  for (std::int64_t d : h.shape) {
    const auto ud = static_cast<std::uint64_t>(d);
    if (ud != 0 && n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / ud) {
      throw InputError(where, "shape " + shape_text(h.shape) + " overflows a 64-bit element count");
    }
    n *= ud;
  }
  const std::uint64_t item = dtype_size(r.dtype);
  if (n > std::numeric_limits<std::uint64_t>::max() / item) {
    throw InputError(where, "shape " + shape_text(h.shape) + " overflows a 64-bit byte count");
  }
  r.data_bytes = n * item;
  const std::uint64_t have = total - h.data_offset;
  if (have < r.data_bytes) {
    throw InputError(where, "truncated data: shape " + shape_text(h.shape) + " of " + h.descr + " needs " +
                                std::to_string(r.data_bytes) + " bytes, the file has " + std::to_string(have) +
                                " after the header");
  }
  if (have > r.data_bytes) {
    throw InputError(where, "trailing garbage: " + std::to_string(have - r.data_bytes) +
                                " bytes after the data of shape " + shape_text(h.shape) + " of " + h.descr);
  }
  return r;
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

bool npy_path_is_bf16(std::string_view path) {
  constexpr std::string_view kSuffix = ".bf16.npy";
  return path.size() >= kSuffix.size() && path.substr(path.size() - kSuffix.size()) == kSuffix;
}

void parse_npy_header_dict(std::string_view text, NpyHeader& out, const std::string& where) {
  DictParser(text, where).parse(out);
}

NpyHeader check_npy_prefix(std::span<const std::byte> prefix, std::uint64_t total, const NpyReadOptions& opts,
                           const std::string& where) {
  return parse_prefix(prefix.data(), prefix.size(), total, opts, false, where).header;
}

Tensor decode_npy(std::span<const std::byte> file, const NpyReadOptions& opts, const std::string& where) {
  const Prefix pr = parse_prefix(file.data(), file.size(), file.size(), opts, false, where);
  Tensor t(pr.dtype, pr.header.shape);
  if (pr.data_bytes) std::memcpy(t.bytes(), file.data() + pr.header.data_offset, pr.data_bytes);
  return t;
}

Tensor read_npy(const std::string& path, const NpyReadOptions& opts) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) throw InputError(path, "cannot open: no such file");
  if (!std::filesystem::is_regular_file(st)) throw InputError(path, "cannot open: not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "cannot open: " + errno_text());
  const std::uint64_t total = std::filesystem::file_size(path, ec);
  if (ec) throw InputError(path, "cannot read the file size: " + ec.message());

  std::vector<std::byte> head(
      static_cast<std::size_t>(std::min<std::uint64_t>(total, kPreambleV2 + kNpyMaxHeaderBytes)));
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  if (static_cast<std::size_t>(in.gcount()) != head.size()) throw InputError(path, "read error in the header");

  const Prefix pr = parse_prefix(head.data(), head.size(), total, opts, npy_path_is_bf16(path), path);
  Tensor t(pr.dtype, pr.header.shape);  // data_bytes ≤ file size: checked by parse_prefix
  in.clear();
  in.seekg(static_cast<std::streamoff>(pr.header.data_offset));
  if (pr.data_bytes) {
    in.read(reinterpret_cast<char*>(t.bytes()), static_cast<std::streamsize>(pr.data_bytes));
    if (static_cast<std::uint64_t>(in.gcount()) != pr.data_bytes) {
      throw InputError(path, "truncated data: the file shrank while it was read");
    }
  }
  return t;
}

std::vector<std::byte> encode_npy(const Tensor& t, const NpyWriteOptions& opts) {
  if (opts.version < 0 || opts.version > 3) {
    throw InputError("", "cannot write .npy format version " + std::to_string(opts.version) + " (use 1, 2 or 3)");
  }
  std::vector<std::int64_t> shape = t.shape();
  if (t.dtype() == DType::kE2M1x2 && !shape.empty()) shape.back() /= 2;  // packed bytes
  const std::string dict = "{'descr': '" + std::string(descr_for(t.dtype())) +
                           "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  int version = opts.version;
  auto padded_len = [&](std::size_t pre) {
    const std::size_t unpadded = pre + dict.size() + 1;  // + '\n'
    return dict.size() + 1 + (kNpyAlign - unpadded % kNpyAlign) % kNpyAlign;
  };
  if (version == 0) version = padded_len(kPreambleV1) <= 0xFFFF ? 1 : 2;
  const std::size_t pre = version == 1 ? kPreambleV1 : kPreambleV2;
  const std::size_t hlen = padded_len(pre);
  if (version == 1 && hlen > 0xFFFF) throw InputError("", "header too long for .npy format version 1.0");

  std::vector<std::byte> out(pre + hlen + t.nbytes());
  std::memcpy(out.data(), kMagic.data(), kMagic.size());
  out[6] = static_cast<std::byte>(version);
  out[7] = std::byte{0};
  for (std::size_t i = 0; i < pre - 8; ++i) out[8 + i] = static_cast<std::byte>((hlen >> (8 * i)) & 0xFF);
  std::memcpy(out.data() + pre, dict.data(), dict.size());
  std::memset(out.data() + pre + dict.size(), ' ', hlen - dict.size() - 1);
  out[pre + hlen - 1] = static_cast<std::byte>('\n');
  if (t.nbytes()) std::memcpy(out.data() + pre + hlen, t.bytes(), t.nbytes());
  return out;
}

void write_npy(const std::string& path, const Tensor& t, const NpyWriteOptions& opts) {
  write_file_atomically(path, [&] { return encode_npy(t, opts); });
}

}  // namespace dsv4
