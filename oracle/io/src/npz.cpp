// .npz reader/writer. See npz.hpp for what is accepted and refused.
#include "dsv4/io/npz.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <set>

#include "dsv4/io/atomic_file.hpp"

namespace dsv4 {

namespace {

constexpr std::uint32_t kLocalSig = 0x04034b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kEocdSig = 0x06054b50;
constexpr std::uint32_t kZip64EocdSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::size_t kLocalLen = 30, kCentralLen = 46, kEocdLen = 22, kZip64EocdLen = 56, kZip64LocatorLen = 20;
constexpr std::uint32_t k32 = 0xFFFFFFFF;
constexpr std::uint16_t k16 = 0xFFFF;
constexpr std::uint16_t kZip64ExtraId = 0x0001;
// deflate cannot expand data by more than 1032:1 (258-byte matches coded in ≥ 2 bits).
constexpr std::uint64_t kDeflateMaxRatio = 1032;

std::uint64_t le(std::span<const std::byte> b, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::to_integer<std::uint64_t>(b[at + i]) << (8 * i);
  return v;
}

std::string member_label(std::string_view name) { return "member '" + printable_name(name) + "'"; }

bool ends_with(std::string_view s, std::string_view suf) {
  return s.size() >= suf.size() && s.substr(s.size() - suf.size()) == suf;
}

// Values of a ZIP64 extra field (id 1) present for the 32-bit fields that are saturated.
struct Zip64Fields {
  std::uint64_t usize, csize, offset;
};

// Walks an extra-field block; applies a ZIP64 record to the saturated fields.
void apply_extra(std::span<const std::byte> extra, Zip64Fields& f, bool u_sat, bool c_sat, bool off_sat,
                 const std::string& where, const std::string& who) {
  std::size_t i = 0;
  bool seen = false;
  while (i < extra.size()) {
    if (extra.size() - i < 4) throw InputError(where, who + ": malformed extra field (truncated header)");
    const auto id = static_cast<std::uint16_t>(le(extra, i, 2));
    const auto len = static_cast<std::size_t>(le(extra, i + 2, 2));
    if (extra.size() - i - 4 < len) throw InputError(where, who + ": malformed extra field (runs past its block)");
    if (id == kZip64ExtraId) {
      if (seen) throw InputError(where, who + ": two ZIP64 extra fields");
      seen = true;
      const auto body = extra.subspan(i + 4, len);
      std::size_t k = 0;
      auto take = [&](std::uint64_t& dst, bool sat) {
        if (!sat) return;
        if (body.size() - k < 8) throw InputError(where, who + ": ZIP64 extra field too short for its saturated sizes");
        dst = le(body, k, 8);
        k += 8;
      };
      take(f.usize, u_sat);
      take(f.csize, c_sat);
      take(f.offset, off_sat);
    }
    i += 4 + len;
  }
  if ((u_sat || c_sat || off_sat) && !seen) {
    throw InputError(where, who + ": a size or offset is 0xFFFFFFFF but there is no ZIP64 extra field");
  }
}

}  // namespace

NpzFile::NpzFile(NpzFile&&) noexcept = default;
NpzFile& NpzFile::operator=(NpzFile&&) noexcept = default;
NpzFile::~NpzFile() = default;

void NpzFile::read_at(std::uint64_t off, std::span<std::byte> dst) const {
  src_.read_at(off, dst, where_, "",
               {"read past the end of the archive", "truncated: the file shrank while it was read"});
}

NpzFile NpzFile::open(const std::string& path) {
  NpzFile f;
  f.where_ = path;
  f.src_ = ByteSource::open(path);
  f.parse(f.src_.size());
  return f;
}

NpzFile NpzFile::from_bytes(std::vector<std::byte> bytes, const std::string& where) {
  NpzFile f;
  f.where_ = where;
  f.src_ = ByteSource::memory(std::move(bytes));
  f.parse(f.src_.size());
  return f;
}

void NpzFile::parse(std::uint64_t size) {
  // End of central directory: the last 22 + comment bytes of the file.
  if (size < kEocdLen)
    throw InputError(where_, "not a zip archive: no end-of-central-directory record (file too short)");
  const std::uint64_t tail_len = std::min<std::uint64_t>(size, kEocdLen + 0xFFFF);
  std::vector<std::byte> tail(static_cast<std::size_t>(tail_len));
  read_at(size - tail_len, tail);
  std::optional<std::size_t> at;
  for (std::size_t i = tail.size() - kEocdLen + 1; i-- > 0;) {
    if (le(tail, i, 4) == kEocdSig && i + kEocdLen + le(tail, i + 20, 2) == tail.size()) {
      at = i;
      break;
    }
  }
  if (!at) {
    throw InputError(where_, "not a zip archive: no end-of-central-directory record whose comment ends the file");
  }
  const std::uint64_t eocd_pos = size - tail_len + *at;
  const auto e = std::span<const std::byte>(tail).subspan(*at, kEocdLen);
  std::uint64_t disk = le(e, 4, 2), cd_disk = le(e, 6, 2);
  std::uint64_t n_disk = le(e, 8, 2), n_total = le(e, 10, 2);
  std::uint64_t cd_size = le(e, 12, 4), cd_off = le(e, 16, 4);
  std::uint64_t cd_end_expected = eocd_pos;  // where the central directory must end
  const bool zip64 =
      n_disk == k16 || n_total == k16 || cd_size == k32 || cd_off == k32 || disk == k16 || cd_disk == k16;
  if (zip64) {
    if (eocd_pos < kZip64LocatorLen) throw InputError(where_, "ZIP64 archive without a ZIP64 locator");
    std::vector<std::byte> loc(kZip64LocatorLen);
    read_at(eocd_pos - kZip64LocatorLen, loc);
    if (le(loc, 0, 4) != kZip64LocatorSig) throw InputError(where_, "ZIP64 archive without a ZIP64 locator");
    if (le(loc, 4, 4) != 0 || le(loc, 16, 4) != 1) throw InputError(where_, "multi-disk archives are not supported");
    const std::uint64_t z_off = le(loc, 8, 8);
    if (z_off > eocd_pos - kZip64LocatorLen || eocd_pos - kZip64LocatorLen - z_off < kZip64EocdLen) {
      throw InputError(where_, "ZIP64 end-of-central-directory record outside the file");
    }
    std::vector<std::byte> z(kZip64EocdLen);
    read_at(z_off, z);
    if (le(z, 0, 4) != kZip64EocdSig) throw InputError(where_, "ZIP64 end-of-central-directory record not found");
    const std::uint64_t rec = le(z, 4, 8);
    if (rec < kZip64EocdLen - 12 || rec + 12 != eocd_pos - kZip64LocatorLen - z_off) {
      throw InputError(where_, "ZIP64 end-of-central-directory record has a bad size");
    }
    disk = le(z, 16, 4);
    cd_disk = le(z, 20, 4);
    n_disk = le(z, 24, 8);
    n_total = le(z, 32, 8);
    cd_size = le(z, 40, 8);
    cd_off = le(z, 48, 8);
    cd_end_expected = z_off;
  }
  if (disk != 0 || cd_disk != 0 || n_disk != n_total) throw InputError(where_, "multi-disk archives are not supported");
  if (cd_off > cd_end_expected || cd_size != cd_end_expected - cd_off) {
    throw InputError(where_, "central directory [" + std::to_string(cd_off) + ", +" + std::to_string(cd_size) +
                                 ") does not end where its end record begins (" + std::to_string(cd_end_expected) +
                                 ")");
  }
  if (n_total > cd_size / kCentralLen) {
    throw InputError(where_, "central directory of " + std::to_string(cd_size) + " bytes cannot hold the " +
                                 std::to_string(n_total) + " entries it declares");
  }
  std::vector<std::byte> cd(static_cast<std::size_t>(cd_size));
  read_at(cd_off, cd);

  std::set<std::string> names;
  std::size_t i = 0;
  for (std::uint64_t k = 0; k < n_total; ++k) {
    const std::string entry = "central directory entry " + std::to_string(k);
    if (cd.size() - i < kCentralLen || le(cd, i, 4) != kCentralSig) {
      throw InputError(where_, entry + ": bad signature or truncated (the directory declares " +
                                   std::to_string(n_total) + " entries)");
    }
    const auto c = std::span<const std::byte>(cd).subspan(i);
    const auto flags = static_cast<std::uint16_t>(le(c, 8, 2));
    NpzMember m;
    m.method = static_cast<std::uint16_t>(le(c, 10, 2));
    m.crc32 = static_cast<std::uint32_t>(le(c, 16, 4));
    const std::uint64_t csize32 = le(c, 20, 4), usize32 = le(c, 24, 4);
    const std::size_t nlen = le(c, 28, 2), xlen = le(c, 30, 2), clen = le(c, 32, 2);
    const std::uint64_t disk_start = le(c, 34, 2), off32 = le(c, 42, 4);
    if (cd.size() - i - kCentralLen < nlen + xlen + clen) throw InputError(where_, entry + ": runs past the directory");
    m.name.assign(reinterpret_cast<const char*>(c.data() + kCentralLen), nlen);
    const std::string who = member_label(m.name);
    Zip64Fields z{usize32, csize32, off32};
    apply_extra(c.subspan(kCentralLen + nlen, xlen), z, usize32 == k32, csize32 == k32, off32 == k32, where_, who);
    m.uncompressed = z.usize;
    m.compressed = z.csize;
    m.local_offset = z.offset;
    i += kCentralLen + nlen + xlen + clen;

    if (disk_start != 0 && disk_start != k16) throw InputError(where_, who + ": on another disk (multi-disk archive)");
    if (flags & 0x0041) throw InputError(where_, who + ": encrypted");
    if (m.method != 0 && m.method != 8) {
      throw InputError(where_, who + ": compression method " + std::to_string(m.method) +
                                   " is not supported (only stored (0) and deflate (8), as numpy writes)");
    }
    if (!ends_with(m.name, ".npy") || m.name.size() == 4) {
      throw InputError(where_, who + ": not a .npy member (an .npz holds only '<key>.npy' members)");
    }
    if (!names.insert(m.name).second) throw InputError(where_, who + ": duplicate name");
    m.key = m.name.substr(0, m.name.size() - 4);
    if (m.method == 0 && m.compressed != m.uncompressed) {
      throw InputError(where_, who + ": stored, but its compressed size " + std::to_string(m.compressed) +
                                   " differs from its size " + std::to_string(m.uncompressed));
    }

    // Local header: present, consistent with the directory, data inside the file.
    if (m.local_offset > cd_off || cd_off - m.local_offset < kLocalLen) {
      throw InputError(where_,
                       who + ": local header offset " + std::to_string(m.local_offset) + " is outside the member area");
    }
    std::vector<std::byte> lh(kLocalLen);
    read_at(m.local_offset, lh);
    if (le(lh, 0, 4) != kLocalSig) throw InputError(where_, who + ": no local header at its offset");
    const auto lflags = static_cast<std::uint16_t>(le(lh, 6, 2));
    const std::size_t lnlen = le(lh, 26, 2), lxlen = le(lh, 28, 2);
    if (le(lh, 8, 2) != m.method) throw InputError(where_, who + ": local header and directory disagree on the method");
    if (cd_off - m.local_offset - kLocalLen < lnlen + lxlen)
      throw InputError(where_, who + ": local header runs past the members");
    std::vector<std::byte> lvar(lnlen + lxlen);
    read_at(m.local_offset + kLocalLen, lvar);
    if (lnlen != nlen || std::memcmp(lvar.data(), m.name.data(), nlen) != 0) {
      throw InputError(where_, who + ": local header names another file");
    }
    if (!(lflags & 0x0008)) {  // sizes in the local header (else in a data descriptor after the data)
      const std::uint64_t lc = le(lh, 18, 4), lu = le(lh, 22, 4);
      Zip64Fields lz{lu, lc, 0};
      apply_extra(std::span<const std::byte>(lvar).subspan(lnlen), lz, lu == k32, lc == k32, false, where_, who);
      if (lz.csize != m.compressed || lz.usize != m.uncompressed || le(lh, 14, 4) != m.crc32) {
        throw InputError(where_, who + ": local header and directory disagree on sizes or CRC");
      }
    }
    m.data_offset = m.local_offset + kLocalLen + lnlen + lxlen;
    if (m.compressed > cd_off - m.data_offset) {
      throw InputError(where_, who + ": data of " + std::to_string(m.compressed) +
                                   " bytes runs past the member area (truncated archive?)");
    }
    members_.push_back(std::move(m));
  }
  if (i != cd.size())
    throw InputError(where_, std::to_string(cd.size() - i) + " stray bytes after the central directory entries");

  // Members may not overlap (the overlapping-files zip bomb), in file order.
  std::vector<const NpzMember*> by_off;
  for (const auto& m : members_) by_off.push_back(&m);
  std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->local_offset < b->local_offset; });
  for (std::size_t k = 1; k < by_off.size(); ++k) {
    if (by_off[k - 1]->data_offset + by_off[k - 1]->compressed > by_off[k]->local_offset) {
      throw InputError(where_, member_label(by_off[k]->name) + ": overlaps " + member_label(by_off[k - 1]->name));
    }
  }
  for (std::size_t k = 0; k < members_.size(); ++k) index_.emplace(members_[k].key, k);
}

std::vector<std::string> NpzFile::keys() const {
  std::vector<std::string> r;
  for (const auto& m : members_) r.push_back(m.key);
  return r;
}

bool NpzFile::contains(std::string_view key) const { return index_.find(key) != index_.end(); }

const NpzMember& NpzFile::member(std::string_view key) const {
  const auto it = index_.find(key);
  if (it == index_.end()) throw InputError(where_, "no array '" + printable_name(key) + "' in the archive");
  return members_[it->second];
}

std::vector<std::byte> NpzFile::read_member_bytes(std::string_view key, std::uint64_t max_bytes) const {
  const NpzMember& m = member(key);
  const std::string who = member_label(m.name);
  if (m.uncompressed > max_bytes) {
    throw InputError(where_, who + ": " + std::to_string(m.uncompressed) + " bytes is over the read limit of " +
                                 std::to_string(max_bytes));
  }
  if (m.method == 8 && m.uncompressed / kDeflateMaxRatio > m.compressed + 1) {
    throw InputError(where_, who + ": declares " + std::to_string(m.uncompressed) + " bytes from " +
                                 std::to_string(m.compressed) + " compressed, beyond deflate's 1032:1 ratio");
  }
  std::vector<std::byte> comp(static_cast<std::size_t>(m.compressed));
  read_at(m.data_offset, comp);
  std::vector<std::byte> out;
  if (m.method == 0) {
    out = std::move(comp);
  } else {
    out.resize(static_cast<std::size_t>(m.uncompressed));
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw InputError(where_, who + ": cannot initialise zlib");
    // zlib counts in uInt: feed and drain in chunks of at most 1 GiB. Once the declared output is
    // full, a 1-byte probe catches a stream that would produce more.
    constexpr std::uint64_t kChunk = std::uint64_t{1} << 30;
    std::uint64_t in_pos = 0, out_pos = 0;
    Bytef probe = 0;
    bool probing = false, extra_output = false;
    int rc = Z_OK;
    while (true) {
      if (zs.avail_in == 0 && in_pos < comp.size()) {
        const auto n = std::min<std::uint64_t>(kChunk, comp.size() - in_pos);
        zs.next_in = reinterpret_cast<Bytef*>(comp.data() + in_pos);
        zs.avail_in = static_cast<uInt>(n);
        in_pos += n;
      }
      if (zs.avail_out == 0) {
        if (probing) {
          extra_output = true;
          break;
        }
        if (out_pos < out.size()) {
          const auto n = std::min<std::uint64_t>(kChunk, out.size() - out_pos);
          zs.next_out = reinterpret_cast<Bytef*>(out.data() + out_pos);
          zs.avail_out = static_cast<uInt>(n);
          out_pos += n;
        } else {
          zs.next_out = &probe;
          zs.avail_out = 1;
          probing = true;
        }
      }
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc == Z_STREAM_END || (rc != Z_OK && rc != Z_BUF_ERROR)) break;
      if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_pos == comp.size()) break;  // input exhausted
    }
    const bool input_left = zs.avail_in != 0 || in_pos != comp.size();
    const std::uint64_t total_out = zs.total_out;
    inflateEnd(&zs);
    if (extra_output || (probing && zs.avail_out == 0)) {
      throw InputError(where_,
                       who + ": inflates to more than its declared " + std::to_string(m.uncompressed) + " bytes");
    }
    if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_MEM_ERROR || rc == Z_STREAM_ERROR) {
      throw InputError(where_, who + ": corrupt deflate stream");
    }
    if (rc != Z_STREAM_END) throw InputError(where_, who + ": deflate stream ends early (truncated or corrupt)");
    if (total_out != m.uncompressed) {
      throw InputError(where_, who + ": inflates to " + std::to_string(total_out) + " bytes, the directory declares " +
                                   std::to_string(m.uncompressed));
    }
    if (input_left) throw InputError(where_, who + ": bytes left over after the end of the deflate stream");
  }
  // CRC-32 in chunks (zlib's length is a uInt).
  uLong crc = crc32(0L, Z_NULL, 0);
  for (std::size_t off = 0; off < out.size();) {
    const std::size_t n = std::min<std::size_t>(out.size() - off, std::size_t{1} << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + off), static_cast<uInt>(n));
    off += n;
  }
  if (static_cast<std::uint32_t>(crc) != m.crc32) {
    throw InputError(where_, who + ": CRC-32 mismatch (damaged data)");
  }
  return out;
}

std::vector<std::byte> NpzFile::read_member_prefix(const NpzMember& m, std::size_t n) const {
  n = static_cast<std::size_t>(std::min<std::uint64_t>(n, m.uncompressed));
  // Deflate expands at least as much as it stores (≤ 5 bytes per 64 KiB stored block): 1 MiB of
  // input always holds the first 10 kB of output.
  std::vector<std::byte> comp(static_cast<std::size_t>(std::min<std::uint64_t>(m.compressed, std::uint64_t{1} << 20)));
  read_at(m.data_offset, comp);
  if (m.method == 0) {
    comp.resize(std::min(comp.size(), n));
    return comp;
  }
  std::vector<std::byte> out(n);
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
    throw InputError(where_, member_label(m.name) + ": cannot initialise zlib");
  zs.next_in = reinterpret_cast<Bytef*>(comp.data());
  zs.avail_in = static_cast<uInt>(comp.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  while (zs.avail_out > 0) {
    const int rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK) break;  // the end, an error or no progress: the full read reports which
  }
  out.resize(out.size() - zs.avail_out);
  inflateEnd(&zs);
  return out;
}

NpyHeader NpzFile::member_header(std::string_view key, const NpyReadOptions& opts) const {
  const NpzMember& m = member(key);
  return check_npy_prefix(read_member_prefix(m, 12 + kNpyMaxHeaderBytes), m.uncompressed, opts,
                          where_ + ": " + member_label(m.name));
}

Tensor NpzFile::read(std::string_view key, const NpyReadOptions& opts, std::uint64_t max_bytes) const {
  const NpzMember& m = member(key);
  const auto bytes = read_member_bytes(key, max_bytes);
  NpyReadOptions o = opts;
  if (o.u2_as == U2As::kByFileName) o.u2_as = npy_path_is_bf16(m.name) ? U2As::kBF16 : U2As::kUInt16;
  return decode_npy(bytes, o, where_ + ": " + member_label(m.name));
}

std::map<std::string, Tensor> read_npz(const std::string& path, const NpyReadOptions& opts) {
  const NpzFile f = NpzFile::open(path);
  std::map<std::string, Tensor> r;
  for (const auto& k : f.keys()) r.emplace(k, f.read(k, opts));
  return r;
}

// ---- writer ----

namespace {

void put(std::vector<std::byte>& out, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xFF));
}

std::vector<std::byte> deflate_raw(const std::vector<std::byte>& in, const std::string& who) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw InputError("", who + ": cannot initialise zlib");
  }
  std::vector<std::byte> out(deflateBound(&zs, static_cast<uLong>(in.size())));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const auto n = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw InputError("", who + ": deflate failed");
  out.resize(n);
  return out;
}

}  // namespace

std::vector<std::byte> encode_npz(const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                                  const NpzWriteOptions& opts) {
  std::vector<std::byte> out, cd;
  std::set<std::string_view> seen;
  for (const auto& [key, t] : tensors) {
    const std::string name = key + ".npy";
    const std::string who = member_label(name);
    if (key.empty()) throw InputError("", "an array key is empty");
    if (!t) throw InputError("", who + ": null tensor");
    if (!seen.insert(key).second) throw InputError("", who + ": duplicate key");
    if (name.size() > 0xFFFF) throw InputError("", who + ": name too long");
    const std::vector<std::byte> npy = encode_npy(*t);
    if (npy.size() > 0xFFFFFFFFu - 64 && opts.compress) throw InputError("", who + ": too large to deflate here");
    const std::vector<std::byte> data = opts.compress ? deflate_raw(npy, who) : npy;
    const auto crc = static_cast<std::uint32_t>(
        crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(npy.data()), static_cast<uInt>(npy.size())));
    const std::uint64_t local = out.size();
    const std::uint16_t method = opts.compress ? 8 : 0;
    // local header, ZIP64 sizes as numpy (force_zip64) writes them
    put(out, kLocalSig, 4);
    put(out, 45, 2);  // version needed: 4.5 (ZIP64)
    put(out, 0, 2);   // flags
    put(out, method, 2);
    put(out, 0, 2);     // time 00:00:00
    put(out, 0x21, 2);  // date 1980-01-01
    put(out, crc, 4);
    put(out, k32, 4);
    put(out, k32, 4);
    put(out, name.size(), 2);
    put(out, 20, 2);
    out.insert(out.end(), reinterpret_cast<const std::byte*>(name.data()),
               reinterpret_cast<const std::byte*>(name.data()) + name.size());
    put(out, kZip64ExtraId, 2);
    put(out, 16, 2);
    put(out, npy.size(), 8);
    put(out, data.size(), 8);
    out.insert(out.end(), data.begin(), data.end());
    // central directory entry: ZIP64 extra only for what does not fit 32 bits
    const bool zu = npy.size() >= k32, zc = data.size() >= k32, zo = local >= k32;
    const std::size_t xlen = (zu || zc || zo) ? 4 + 8 * (zu + zc + zo) : 0;
    put(cd, kCentralSig, 4);
    put(cd, 45, 2);  // made by: 4.5, MS-DOS attributes
    put(cd, 45, 2);
    put(cd, 0, 2);
    put(cd, method, 2);
    put(cd, 0, 2);
    put(cd, 0x21, 2);
    put(cd, crc, 4);
    put(cd, zc ? k32 : data.size(), 4);
    put(cd, zu ? k32 : npy.size(), 4);
    put(cd, name.size(), 2);
    put(cd, xlen, 2);
    put(cd, 0, 2);           // comment
    put(cd, 0, 2);           // disk
    put(cd, 0, 2);           // internal attributes
    put(cd, 0x01800000, 4);  // external: -rw------- as Python's zipfile.open('w') sets
    put(cd, zo ? k32 : local, 4);
    cd.insert(cd.end(), reinterpret_cast<const std::byte*>(name.data()),
              reinterpret_cast<const std::byte*>(name.data()) + name.size());
    if (xlen) {
      put(cd, kZip64ExtraId, 2);
      put(cd, xlen - 4, 2);
      if (zu) put(cd, npy.size(), 8);
      if (zc) put(cd, data.size(), 8);
      if (zo) put(cd, local, 8);
    }
  }
  const std::uint64_t cd_off = out.size(), n = tensors.size();
  out.insert(out.end(), cd.begin(), cd.end());
  const bool z64 = n >= k16 || cd.size() >= k32 || cd_off >= k32;
  if (z64) {
    const std::uint64_t z_off = out.size();
    put(out, kZip64EocdSig, 4);
    put(out, kZip64EocdLen - 12, 8);
    put(out, 45, 2);
    put(out, 45, 2);
    put(out, 0, 4);
    put(out, 0, 4);
    put(out, n, 8);
    put(out, n, 8);
    put(out, cd.size(), 8);
    put(out, cd_off, 8);
    put(out, kZip64LocatorSig, 4);
    put(out, 0, 4);
    put(out, z_off, 8);
    put(out, 1, 4);
  }
  put(out, kEocdSig, 4);
  put(out, 0, 2);
  put(out, 0, 2);
  put(out, z64 ? k16 : n, 2);
  put(out, z64 ? k16 : n, 2);
  put(out, z64 ? k32 : cd.size(), 4);
  put(out, z64 ? k32 : cd_off, 4);
  put(out, 0, 2);
  return out;
}

void write_npz(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
               const NpzWriteOptions& opts) {
  write_file_atomically(path, [&] { return encode_npz(tensors, opts); });
}

}  // namespace dsv4
