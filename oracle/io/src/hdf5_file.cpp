// HDF5 wrapper. See hdf5_file.hpp for the dataset types and what is refused.
#include "dsv4/io/hdf5_file.hpp"

#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <type_traits>
#include <utility>

#include "dsv4/io/temp_files.hpp"
#include "dtype_names.hpp"
#include "hdf5_probe.hpp"

namespace dsv4 {

static_assert(std::is_same_v<hid_t, std::int64_t>, "hid_t is stored as int64 in hdf5_file.hpp");

namespace {

// ---- handles and errors ----

using Closer = herr_t (*)(hid_t);

class H {
 public:
  H() = default;
  H(hid_t id, Closer close) : id_(id), close_(close) {}
  H(H&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  H& operator=(H&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      close_ = o.close_;
    }
    return *this;
  }
  H(const H&) = delete;
  H& operator=(const H&) = delete;
  ~H() { reset(); }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// The innermost message of HDF5's error stack (then cleared), or "".
std::string h5_detail() {
  std::string first;
  auto cb = [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
    if (n == 0 && e && e->desc) *static_cast<std::string*>(data) = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, cb, &first);
  H5Eclear2(H5E_DEFAULT);
  return printable_name(first);
}

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  const std::string d = h5_detail();
  throw InputError(file, d.empty() ? what : what + " (HDF5: " + d + ")");
}

std::string obj_label(const std::string& p) { return "'" + printable_name(p) + "'"; }

// "/a/b" from "a/b", "/a/b", "a/b/"; refuses empty components, "." and "..".
std::string normalize(const std::string& file, const std::string& path) {
  std::string out;
  std::size_t i = 0;
  const std::size_t n = path.size();
  if (i < n && path[i] == '/') ++i;
  while (i < n) {
    std::size_t j = path.find('/', i);
    if (j == std::string::npos) j = n;
    const std::string comp = path.substr(i, j - i);
    if (comp.empty() && j != n) throw InputError(file, "object path " + obj_label(path) + " has an empty component");
    if (comp == "." || comp == "..") throw InputError(file, "object path " + obj_label(path) + " contains '.' or '..'");
    if (comp.find('\0') != std::string::npos)
      throw InputError(file, "object path " + obj_label(path) + " contains NUL");
    if (!comp.empty()) out += "/" + comp;
    i = j + 1;
  }
  return out.empty() ? "/" : out;
}

std::string strip_root(const std::string& p) { return p.size() > 1 ? p.substr(1) : p; }

// ---- dtype mapping ----

// The 16-bit IEEE half type (numpy float16), little-endian, as h5py builds it.
H half_type() {
  H t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  if (!t.ok() || H5Tset_fields(t.get(), 15, 10, 5, 0, 10) < 0 || H5Tset_size(t.get(), 2) < 0 ||
      H5Tset_ebias(t.get(), 15) < 0) {
    throw InputError("", "cannot build the HDF5 float16 type");
  }
  return t;
}

bool float_fields(hid_t t, std::size_t spos, std::size_t epos, std::size_t esize, std::size_t mpos, std::size_t msize,
                  std::size_t ebias) {
  std::size_t s = 0, ep = 0, es = 0, mp = 0, ms = 0;
  if (H5Tget_fields(t, &s, &ep, &es, &mp, &ms) < 0) return false;
  return s == spos && ep == epos && es == esize && mp == mpos && ms == msize && H5Tget_ebias(t) == ebias;
}

// The raw dtypes a "dtype" attribute may name (with the storage they need).
constexpr std::array<io_detail::DTypeName, 12> kRawNames{{
    {"bfloat16", DType::kBF16},
    {"bf16", DType::kBF16},
    {"float16", DType::kF16},
    {"half", DType::kF16},
    {"float8_e4m3fn", DType::kE4M3},
    {"e4m3", DType::kE4M3},
    {"float8_e5m2", DType::kE5M2},
    {"e5m2", DType::kE5M2},
    {"float8_e8m0fnu", DType::kE8M0},
    {"e8m0", DType::kE8M0},
    {"float4_e2m1fn_x2", DType::kE2M1x2},
    {"e2m1x2", DType::kE2M1x2},
}};

// What a dataset's storage is, and how to read it into memory.
struct Storage {
  std::string text;              // e.g. "float32"
  std::size_t size = 0;          // bytes per element in the file
  std::optional<DType> natural;  // the DType of the storage alone
  hid_t mem = -1;                // memory type for H5Dread (native, or owned_mem)
  H owned_mem;                   // a built memory type (float16)
  bool is_int16 = false, is_u8 = false, is_i8 = false, is_u16 = false, is_f16 = false;
};

Storage classify(hid_t t) {
  Storage s;
  const H5T_class_t cls = H5Tget_class(t);
  const std::size_t size = H5Tget_size(t);
  s.size = size;
  const bool be = H5Tget_order(t) == H5T_ORDER_BE;
  const std::string suffix = be && size > 1 ? " (big-endian)" : "";
  if (cls == H5T_FLOAT) {
    if (size == 8) {
      s.text = "float64";
      s.natural = DType::kF64;
      s.mem = H5T_NATIVE_DOUBLE;
    } else if (size == 4) {
      s.text = "float32";
      s.natural = DType::kF32;
      s.mem = H5T_NATIVE_FLOAT;
    } else if (size == 2 && float_fields(t, 15, 10, 5, 0, 10, 15)) {
      s.text = "float16";
      s.natural = DType::kF16;
      s.owned_mem = half_type();
      s.mem = s.owned_mem.get();
      s.is_f16 = true;
    } else if (size == 2 && float_fields(t, 15, 7, 8, 0, 7, 127)) {
      s.text = "bfloat16";
      s.natural = DType::kBF16;
      s.owned_mem = H(H5Tcopy(t), H5Tclose);
      if (!s.owned_mem.ok() || H5Tset_order(s.owned_mem.get(), H5T_ORDER_LE) < 0) s.natural.reset();
      s.mem = s.owned_mem.get();
    } else {
      s.text = std::to_string(size) + "-byte float of an unknown layout";
    }
    s.text += suffix;
    return s;
  }
  if (cls == H5T_INTEGER) {
    const bool sign = H5Tget_sign(t) == H5T_SGN_2;
    s.text = (sign ? "int" : "uint") + std::to_string(size * 8) + suffix;
    if (size == 1) {
      s.natural = sign ? DType::kI8 : DType::kU8;
      s.mem = sign ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8;
      s.is_i8 = sign;
      s.is_u8 = !sign;
    } else if (size == 2 && !sign) {
      s.natural = DType::kU16;
      s.mem = H5T_NATIVE_UINT16;
      s.is_u16 = true;
    } else if (size == 2 && sign) {
      s.mem = H5T_NATIVE_INT16;  // only as the raw bits of bf16/f16 (torch's int16 view)
      s.is_int16 = true;
    } else if (size == 4 && sign) {
      s.natural = DType::kI32;
      s.mem = H5T_NATIVE_INT32;
    } else if (size == 8 && sign) {
      s.natural = DType::kI64;
      s.mem = H5T_NATIVE_INT64;
    }
    return s;
  }
  switch (cls) {
    case H5T_STRING:
      s.text = "string";
      break;
    case H5T_COMPOUND:
      s.text = "compound";
      break;
    case H5T_ENUM:
      s.text = "enum";
      break;
    case H5T_VLEN:
      s.text = "variable-length";
      break;
    case H5T_ARRAY:
      s.text = "array";
      break;
    case H5T_OPAQUE:
      s.text = "opaque";
      break;
    case H5T_BITFIELD:
      s.text = "bitfield";
      break;
    case H5T_REFERENCE:
      s.text = "reference";
      break;
    default:
      s.text = "unknown type class";
      break;
  }
  return s;
}

// The file and memory types the writer uses for a DType, and the "dtype" attribute it adds.
struct WriteType {
  hid_t file;
  hid_t mem;
  H owned;  // float16
  std::string attr;
};

WriteType write_type(DType d) {
  WriteType w{-1, -1, {}, {}};
  switch (d) {
    case DType::kF64:
      w.file = H5T_IEEE_F64LE;
      w.mem = H5T_NATIVE_DOUBLE;
      break;
    case DType::kF32:
      w.file = H5T_IEEE_F32LE;
      w.mem = H5T_NATIVE_FLOAT;
      break;
    case DType::kF16:
      w.owned = half_type();
      w.file = w.mem = w.owned.get();
      break;
    case DType::kBF16:
      w.file = H5T_STD_U16LE;
      w.mem = H5T_NATIVE_UINT16;
      w.attr = "bfloat16";
      break;
    case DType::kU16:
      w.file = H5T_STD_U16LE;
      w.mem = H5T_NATIVE_UINT16;
      break;
    case DType::kE4M3:
    case DType::kE5M2:
    case DType::kE8M0:
    case DType::kE2M1x2:
      w.file = H5T_STD_U8LE;
      w.mem = H5T_NATIVE_UINT8;
      w.attr = std::string(dtype_name(d));
      break;
    case DType::kU8:
      w.file = H5T_STD_U8LE;
      w.mem = H5T_NATIVE_UINT8;
      break;
    case DType::kI8:
      w.file = H5T_STD_I8LE;
      w.mem = H5T_NATIVE_INT8;
      break;
    case DType::kI32:
      w.file = H5T_STD_I32LE;
      w.mem = H5T_NATIVE_INT32;
      break;
    case DType::kI64:
      w.file = H5T_STD_I64LE;
      w.mem = H5T_NATIVE_INT64;
      break;
  }
  return w;
}

// A fixed-length UTF-8 string type holding `value` (NUL-padded, at least 1 byte). Fixed-length,
// not variable-length: variable-length strings live in HDF5's global heap, whose reader in
// libhdf5 1.10 loops forever on some corrupted heaps, so dsv4's own files avoid it.
H fixed_string_type(const std::string& value) {
  H t(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!t.ok() || H5Tset_size(t.get(), std::max<std::size_t>(1, value.size())) < 0 ||
      H5Tset_cset(t.get(), H5T_CSET_UTF8) < 0 || H5Tset_strpad(t.get(), H5T_STR_NULLPAD) < 0) {
    throw InputError("", "cannot build the HDF5 string type");
  }
  return t;
}

// Reads one string (scalar or 1-element) from a dataset or attribute of string type `ftype`.
template <class ReadFn>
std::string read_one_string(hid_t ftype, hid_t space, ReadFn read, const std::string& file, const std::string& who) {
  if (H5Tget_class(ftype) != H5T_STRING) throw InputError(file, who + " is not a string");
  const hssize_t npts = H5Sget_simple_extent_npoints(space);
  if (npts != 1) throw InputError(file, who + " holds " + std::to_string(npts) + " strings, not one");
  const htri_t var = H5Tis_variable_str(ftype);
  if (var < 0) fail(file, who + ": cannot inspect the string type");
  H mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_cset(mem.get(), H5Tget_cset(ftype));
  if (var > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    char* p = nullptr;
    if (read(mem.get(), &p) < 0) fail(file, who + ": cannot read the string");
    std::string r = p ? std::string(p) : std::string();
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem.get(), space, H5P_DEFAULT, &p);
#else
    H5Dvlen_reclaim(mem.get(), space, H5P_DEFAULT, &p);
#endif
    return r;
  }
  const std::size_t size = H5Tget_size(ftype);
  if (size == 0 || size > (std::size_t{1} << 30)) throw InputError(file, who + ": string of absurd size");
  H5Tset_size(mem.get(), size);
  H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
  std::string buf(size, '\0');
  if (read(mem.get(), buf.data()) < 0) fail(file, who + ": cannot read the string");
  const auto end = buf.find('\0');
  if (end != std::string::npos) buf.resize(end);
  return buf;
}

}  // namespace

// ---- file ----

Hdf5File::Hdf5File(Hdf5File&& o) noexcept
    : path_(std::move(o.path_)), tmp_(std::move(o.tmp_)), file_(std::exchange(o.file_, -1)) {}

Hdf5File& Hdf5File::operator=(Hdf5File&& o) noexcept {
  if (this != &o) {
    close_quietly();
    path_ = std::move(o.path_);
    tmp_ = std::move(o.tmp_);
    file_ = std::exchange(o.file_, -1);
  }
  return *this;
}

Hdf5File::~Hdf5File() { close_quietly(); }

void Hdf5File::close_quietly() noexcept {
  if (file_ >= 0) {
    quiet();
    H5Fclose(file_);
    file_ = -1;
  }
  if (!tmp_.empty()) {
    ::unlink(tmp_.c_str());
    unregister_temp(tmp_);
    tmp_.clear();
  }
}

std::int64_t Hdf5File::id() const {
  if (file_ < 0) throw InputError(path_, "the HDF5 file is closed");
  quiet();
  return file_;
}

namespace {
// Object creation property lists with modification-time tracking off: HDF5 stamps every object
// header with the time by default, which would make the same content give different bytes.
H untimed(hid_t cls) {
  H p(H5Pcreate(cls), H5Pclose);
  if (!p.ok() || H5Pset_obj_track_times(p.get(), 0) < 0) throw InputError("", "cannot create an HDF5 property list");
  return p;
}

H strong_fapl() {
  H fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.ok() || H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG) < 0) {
    throw InputError("", "cannot create an HDF5 file access property list");
  }
  return fapl;
}

void check_regular(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw InputError(path, std::string("cannot open: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw InputError(path, "cannot open: not a regular file");
}
}  // namespace

Hdf5File Hdf5File::create(const std::string& path) {
  quiet();
  static std::atomic<unsigned> counter{0};
  Hdf5File f;
  f.path_ = path;
  const H fapl = strong_fapl();
  const H fcpl = untimed(H5P_FILE_CREATE);  // the root group
  remove_stale_temps(path);
  for (int attempt = 0; attempt < 100 && f.file_ < 0; ++attempt) {
    f.tmp_ = temp_name(path, counter++);
    register_temp(f.tmp_);
    f.file_ = H5Fcreate(f.tmp_.c_str(), H5F_ACC_EXCL, fcpl.get(), fapl.get());
    if (f.file_ < 0) unregister_temp(f.tmp_);
    if (f.file_ < 0 && ::access(f.tmp_.c_str(), F_OK) != 0) break;  // not a name clash
  }
  if (f.file_ < 0) {
    f.tmp_.clear();
    fail(path, "cannot create the HDF5 file (a temporary file next to it)");
  }
  return f;
}

Hdf5File Hdf5File::open_existing(const std::string& path, unsigned flags, const char* failure) {
  quiet();
  check_regular(path);
  Hdf5File f;
  f.path_ = path;
  f.file_ = H5Fopen(path.c_str(), flags, strong_fapl().get());
  if (f.file_ < 0) fail(path, failure);
  return f;
}

Hdf5File Hdf5File::open(const std::string& path) {
  check_regular(path);
  detail::probe_hdf5_structure(path);  // libhdf5 crashes and hangs contained (hdf5_probe.hpp)
  return open_existing(path, H5F_ACC_RDONLY, "not an HDF5 file, or a damaged one");
}

Hdf5File Hdf5File::open_rw(const std::string& path) {
  return open_existing(path, H5F_ACC_RDWR, "cannot open read-write: not an HDF5 file, a damaged one, or not writable");
}

void Hdf5File::commit() {
  const hid_t f = id();
  if (H5Fflush(f, H5F_SCOPE_LOCAL) < 0) fail(path_, "cannot flush the HDF5 file");
  file_ = -1;
  if (H5Fclose(f) < 0) fail(path_, "cannot close the HDF5 file");
  if (!tmp_.empty()) {
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      ::unlink(tmp_.c_str());
      unregister_temp(tmp_);
      tmp_.clear();
      throw InputError(path_, "cannot rename the temporary file into place: " + why);
    }
    unregister_temp(tmp_);
    tmp_.clear();
  }
}

// ---- objects ----

namespace {

// "/a/b" → "/a"; "/a" → "/".
std::string parent_of(const std::string& p) {
  const auto k = p.rfind('/');
  return k == 0 ? std::string("/") : p.substr(0, k);
}

// Every component of `p` (normalized) is a hard link to an existing object; throws otherwise
// (`must_exist`) or returns false.
bool hard_path(hid_t file, const std::string& fname, const std::string& p, bool must_exist) {
  if (p == "/") return true;
  std::size_t i = 1;
  while (true) {
    const std::size_t j = p.find('/', i);
    const std::string prefix = p.substr(0, j);
    const htri_t ex = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (ex <= 0) {
      H5Eclear2(H5E_DEFAULT);
      if (must_exist) throw InputError(fname, "no object " + obj_label(strip_root(p)) + " in the file");
      return false;
    }
    H5L_info_t li;
    if (H5Lget_info(file, prefix.c_str(), &li, H5P_DEFAULT) < 0)
      fail(fname, "cannot inspect link " + obj_label(prefix));
    if (li.type != H5L_TYPE_HARD) {
      throw InputError(fname, obj_label(strip_root(prefix)) + " is a soft or external link (not followed)");
    }
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return true;
}

H open_object(hid_t file, const std::string& fname, const std::string& p) {
  hard_path(file, fname, p, true);
  H o(H5Oopen(file, p.c_str(), H5P_DEFAULT), H5Oclose);
  if (!o.ok()) fail(fname, "cannot open object " + obj_label(strip_root(p)));
  return o;
}

H open_dataset(hid_t file, const std::string& fname, const std::string& p) {
  hard_path(file, fname, p, true);
  H o(H5Oopen(file, p.c_str(), H5P_DEFAULT), H5Oclose);
  if (!o.ok()) fail(fname, "cannot open object " + obj_label(strip_root(p)));
  if (H5Iget_type(o.get()) != H5I_DATASET) throw InputError(fname, obj_label(strip_root(p)) + " is not a dataset");
  return o;
}

// The dataset's storage layout, refusing what dsv4 does not read: virtual datasets and data in
// external files (a file must not make dsv4 open other files).
H5D_layout_t readable_layout(hid_t ds, const std::string& fname, const std::string& who) {
  H dcpl(H5Dget_create_plist(ds), H5Pclose);
  if (!dcpl.ok()) fail(fname, who + ": cannot read its creation properties");
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout == H5D_VIRTUAL) throw InputError(fname, who + ": virtual datasets are not read");
  if (H5Pget_external_count(dcpl.get()) > 0)
    throw InputError(fname, who + ": data stored in external files is not read");
  return layout;
}

// Before H5Dread: the data of `needed` bytes (as stored in the file) must be able to come from the
// file. libhdf5 1.10 trusts a crafted layout message: a compact dataset of stored size 0 keeps a
// null buffer that H5Dread copies from (a crash), a smaller size is read past its end (found by
// fuzz_hdf5_raw; regression test hdf5_file_test CompactStorageSmallerThanItsShapeIsRefused).
// Contiguous data lies in the file; chunked data expands at most by deflate's 1032:1 (a small file
// declaring a huge dataset is refused, not allocated). `what` names the dataset and its shape.
void check_storage(hid_t file, hid_t ds, H5D_layout_t layout, std::uint64_t needed, const std::string& fname,
                   const std::string& what) {
  const hsize_t stored = H5Dget_storage_size(ds);
  const auto damaged = [&](const std::string& holds) {
    throw InputError(fname, what + " needs " + std::to_string(needed) + " bytes, " + holds + " (damaged file?)");
  };
  if (layout == H5D_COMPACT) {
    if (needed > 0 && stored != needed) damaged("its compact storage holds " + std::to_string(stored));
  } else if (layout == H5D_CONTIGUOUS) {
    hsize_t file_size = 0;
    if (H5Fget_filesize(file, &file_size) < 0) fail(fname, "cannot read the file size");
    if (needed > file_size) damaged("the file has " + std::to_string(file_size));
    if (stored != 0 && stored != needed) damaged("its storage holds " + std::to_string(stored));
  } else if (layout == H5D_CHUNKED && needed / 1032 > stored + (1u << 20) / 1032) {
    damaged("only " + std::to_string(stored) + " are stored (beyond deflate's 1032:1; unwritten or damaged)");
  }
}

// The bytes a string dataset's elements take in the file: the fixed length, or for variable-length
// strings the global heap reference (4-byte length, heap address, 4-byte index).
std::uint64_t stored_string_bytes(hid_t file, hid_t ftype, hid_t space, const std::string& fname,
                                  const std::string& who) {
  const hssize_t npts = H5Sget_simple_extent_npoints(space);
  if (npts < 0) fail(fname, who + ": cannot read its dataspace");
  std::size_t element = H5Tget_size(ftype);
  if (H5Tis_variable_str(ftype) > 0) {
    const H fcpl(H5Fget_create_plist(file), H5Pclose);
    std::size_t addr = 0, len = 0;
    if (!fcpl.ok() || H5Pget_sizes(fcpl.get(), &addr, &len) < 0) fail(fname, "cannot read the file's address size");
    element = 4 + addr + 4;
  }
  return static_cast<std::uint64_t>(npts) * element;
}

// The shape of a dataspace (scalar → {}); refuses a null dataspace.
std::vector<std::int64_t> space_shape(hid_t space, const std::string& fname, const std::string& who) {
  const H5S_class_t c = H5Sget_simple_extent_type(space);
  if (c == H5S_SCALAR) return {};
  if (c != H5S_SIMPLE) throw InputError(fname, who + " has a null or unknown dataspace (no shape)");
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > H5S_MAX_RANK) fail(fname, who + ": bad rank");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0) fail(fname, who + ": cannot read the shape");
  std::vector<std::int64_t> shape;
  for (hsize_t d : dims) {
    if (d > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max())) {
      throw InputError(fname, who + ": dimension " + std::to_string(d) + " is over 2^63 - 1");
    }
    shape.push_back(static_cast<std::int64_t>(d));
  }
  return shape;
}

// The "dtype" attribute of an object when it is a string, else "".
std::string dtype_attr(hid_t obj) {
  if (H5Aexists(obj, "dtype") <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return "";
  }
  H a(H5Aopen(obj, "dtype", H5P_DEFAULT), H5Aclose);
  if (!a.ok()) return "";
  H t(H5Aget_type(a.get()), H5Tclose);
  H s(H5Aget_space(a.get()), H5Sclose);
  if (!t.ok() || !s.ok() || H5Tget_class(t.get()) != H5T_STRING) return "";
  try {
    return read_one_string(
        t.get(), s.get(), [&](hid_t mem, void* buf) { return H5Aread(a.get(), mem, buf); }, "", "");
  } catch (const InputError&) {
    H5Eclear2(H5E_DEFAULT);
    return "";
  }
}

struct Resolved {
  std::vector<std::int64_t> shape;  // stored
  Storage storage;
  std::optional<DType> dtype;
  std::string problem;
};

// What read() would return for a dataset.
Resolved resolve(hid_t ds, const std::string& fname, const std::string& who) {
  Resolved r;
  H type(H5Dget_type(ds), H5Tclose);
  H space(H5Dget_space(ds), H5Sclose);
  if (!type.ok() || !space.ok()) fail(fname, who + ": cannot read its type or dataspace");
  r.shape = space_shape(space.get(), fname, who);
  r.storage = classify(type.get());
  std::string attr = dtype_attr(ds);
  if (attr.rfind("torch.", 0) == 0) attr = attr.substr(6);
  const std::optional<DType> raw = io_detail::dtype_named(kRawNames, attr);
  const Storage& s = r.storage;
  if (raw) {
    const bool ok16 = s.is_u16 || s.is_int16;
    const bool ok8 = s.is_u8 || s.is_i8;
    bool ok = false;
    switch (*raw) {
      case DType::kBF16:
        ok = ok16 || s.natural == DType::kBF16;
        break;
      case DType::kF16:
        ok = ok16 || s.is_f16;
        break;
      default:
        ok = ok8;
        break;
    }
    if (!ok) {
      r.problem = "attribute dtype='" + printable_name(attr) + "' does not match its " + s.text + " storage";
    } else if (*raw == DType::kE2M1x2 && r.shape.empty()) {
      r.problem = "attribute dtype='" + attr + "' on a 0-d dataset (packed fp4 needs a last dimension)";
    } else {
      r.dtype = raw;
    }
    return r;
  }
  if (!s.natural) {
    r.problem = s.is_int16 ? "int16 storage has no dsv4 dtype (int16 is read only as bf16/f16 raw bits, with a dtype "
                             "attribute)"
                           : s.text + " storage has no dsv4 dtype";
    return r;
  }
  if (!attr.empty() && attr != dtype_name(*s.natural)) {
    r.problem = "attribute dtype='" + printable_name(attr) + "' does not match its " + s.text + " storage";
    return r;
  }
  r.dtype = s.natural;
  return r;
}

}  // namespace

void Hdf5File::create_group(const std::string& path) {
  const hid_t f = id();
  const std::string p = normalize(path_, path);
  if (p == "/") return;
  if (hard_path(f, path_, p, false)) {
    const H o = open_object(f, path_, p);
    if (H5Iget_type(o.get()) != H5I_GROUP) throw InputError(path_, obj_label(path) + " exists and is not a group");
    return;
  }
  create_group(parent_of(p));  // one level at a time, each untimed
  const H gcpl = untimed(H5P_GROUP_CREATE);
  H g(H5Gcreate2(f, p.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
  if (!g.ok()) fail(path_, "cannot create group " + obj_label(path));
}

bool Hdf5File::exists(const std::string& path) const {
  const hid_t f = id();
  const std::string p = normalize(path_, path);
  if (!hard_path(f, path_, p, false)) return false;
  const htri_t e = H5Oexists_by_name(f, p.c_str(), H5P_DEFAULT);
  H5Eclear2(H5E_DEFAULT);
  return e > 0;
}

bool Hdf5File::is_dataset(const std::string& path) const {
  if (!exists(path)) return false;
  const H o = open_object(id(), path_, normalize(path_, path));
  return H5Iget_type(o.get()) == H5I_DATASET;
}

void Hdf5File::write(const std::string& path, const Tensor& t, const Hdf5WriteOptions& opts) {
  const hid_t f = id();
  const std::string p = normalize(path_, path);
  if (p == "/") throw InputError(path_, "a dataset cannot be the root group");
  if (exists(p)) throw InputError(path_, obj_label(strip_root(p)) + " already exists");
  if (opts.deflate < 0 || opts.deflate > 9) throw InputError(path_, "deflate level must be 0-9");
  if (t.rank() > H5S_MAX_RANK) throw InputError(path_, obj_label(strip_root(p)) + ": rank over HDF5's 32");
  std::vector<hsize_t> dims;
  for (std::int64_t d : t.shape()) dims.push_back(static_cast<hsize_t>(d));
  if (t.dtype() == DType::kE2M1x2) {
    if (dims.empty()) throw InputError(path_, obj_label(strip_root(p)) + ": 0-d packed fp4 tensor");
    dims.back() /= 2;
  }
  H space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
          H5Sclose);
  if (!space.ok()) fail(path_, obj_label(strip_root(p)) + ": cannot create the dataspace");
  const WriteType w = write_type(t.dtype());
  create_group(parent_of(p));
  H dcpl = untimed(H5P_DATASET_CREATE);
  const bool any_zero = std::find(dims.begin(), dims.end(), hsize_t{0}) != dims.end();
  if (opts.deflate > 0 && !dims.empty() && !any_zero) {
    // chunks of at most ~1 MiB: halve the leading dimensions until it fits
    std::vector<hsize_t> chunk = dims;
    const std::size_t item = t.dtype() == DType::kE2M1x2 ? 1 : dtype_size(t.dtype());
    auto bytes = [&] {
      hsize_t b = item;
      for (hsize_t c : chunk) b *= c;
      return b;
    };
    for (std::size_t k = 0; k < chunk.size() && bytes() > (hsize_t{1} << 20); ++k) {
      while (chunk[k] > 1 && bytes() > (hsize_t{1} << 20)) chunk[k] = (chunk[k] + 1) / 2;
    }
    if (H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) < 0 ||
        H5Pset_deflate(dcpl.get(), static_cast<unsigned>(opts.deflate)) < 0) {
      fail(path_, obj_label(strip_root(p)) + ": cannot set up gzip chunks");
    }
  }
  H ds(H5Dcreate2(f, p.c_str(), w.file, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) fail(path_, "cannot create dataset " + obj_label(strip_root(p)));
  if (t.nbytes() > 0 && H5Dwrite(ds.get(), w.mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.bytes()) < 0) {
    fail(path_, "cannot write dataset " + obj_label(strip_root(p)));
  }
  ds.reset();
  if (!w.attr.empty()) set_attr(p, "dtype", w.attr);
}

Hdf5DatasetInfo Hdf5File::info(const std::string& path) const {
  const std::string p = normalize(path_, path);
  const H ds = open_dataset(id(), path_, p);
  Resolved r = resolve(ds.get(), path_, obj_label(strip_root(p)));
  return {r.shape, r.storage.text, r.dtype, r.problem};
}

Tensor Hdf5File::read(const std::string& path, const Hdf5ReadOptions& opts) const {
  Tensor t;
  read_into(path, t, opts);
  return t;
}

void Hdf5File::read_into(const std::string& path, Tensor& t, const Hdf5ReadOptions& opts) const {
  const std::string p = normalize(path_, path);
  const std::string who = obj_label(strip_root(p));
  const H ds = open_dataset(id(), path_, p);
  const H5D_layout_t layout = readable_layout(ds.get(), path_, who);
  Resolved r = resolve(ds.get(), path_, who);
  if (!r.dtype) throw InputError(path_, who + ": " + r.problem);
  std::vector<std::int64_t> shape = r.shape;
  std::uint64_t n = 1;
  for (std::int64_t d : shape) {
    const auto ud = static_cast<std::uint64_t>(d);
    if (ud != 0 && n > std::numeric_limits<std::uint64_t>::max() / ud) {
      throw InputError(path_, who + ": shape " + shape_string(shape) + " overflows a 64-bit element count");
    }
    n *= ud;
  }
  const std::uint64_t item = *r.dtype == DType::kE2M1x2 ? 1 : dtype_size(*r.dtype);
  if (n > std::numeric_limits<std::uint64_t>::max() / item || n * item > opts.max_bytes) {
    throw InputError(path_, who + ": shape " + shape_string(shape) + " of " + r.storage.text +
                                " is over the read limit of " + std::to_string(opts.max_bytes) + " bytes");
  }
  // The data must be able to come from the file: contiguous data lies in it; chunked data expands
  // at most by deflate's 1032:1 (a small file declaring a huge dataset is refused, not allocated).
  const std::uint64_t file_item = std::max<std::size_t>(r.storage.size, 1);
  if (n > std::numeric_limits<std::uint64_t>::max() / file_item) {
    throw InputError(path_, who + ": shape " + shape_string(shape) + " overflows a 64-bit byte count");
  }
  check_storage(id(), ds.get(), layout, n * file_item, path_,
                who + ": shape " + shape_string(shape) + " of " + r.storage.text);
  if (*r.dtype == DType::kE2M1x2) {
    if (shape.back() > std::numeric_limits<std::int64_t>::max() / 2) {
      throw InputError(path_, who + ": last dimension too large for packed fp4");
    }
    shape.back() *= 2;
  }
  t.reuse_as(*r.dtype, shape);  // H5Dread fills every byte
  if (t.nbytes() > 0 && H5Dread(ds.get(), r.storage.mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.bytes()) < 0) {
    fail(path_, who + ": cannot read the data (damaged file?)");
  }
}

void Hdf5File::write_string(const std::string& path, const std::string& value) {
  const hid_t f = id();
  const std::string p = normalize(path_, path);
  if (p == "/") throw InputError(path_, "a dataset cannot be the root group");
  if (exists(p)) throw InputError(path_, obj_label(strip_root(p)) + " already exists");
  H space(H5Screate(H5S_SCALAR), H5Sclose);
  H type = fixed_string_type(value);
  create_group(parent_of(p));
  const H dcpl = untimed(H5P_DATASET_CREATE);
  H ds(H5Dcreate2(f, p.c_str(), type.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) fail(path_, "cannot create dataset " + obj_label(strip_root(p)));
  std::string buf = value;
  buf.resize(std::max<std::size_t>(1, value.size()), '\0');
  if (H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0) {
    fail(path_, "cannot write dataset " + obj_label(strip_root(p)));
  }
}

std::string Hdf5File::read_string(const std::string& path) const {
  const std::string p = normalize(path_, path);
  const std::string who = obj_label(strip_root(p));
  const H ds = open_dataset(id(), path_, p);
  const H5D_layout_t layout = readable_layout(ds.get(), path_, who);
  H type(H5Dget_type(ds.get()), H5Tclose);
  H space(H5Dget_space(ds.get()), H5Sclose);
  if (!type.ok() || !space.ok()) fail(path_, who + ": cannot read its type or dataspace");
  check_storage(id(), ds.get(), layout, stored_string_bytes(id(), type.get(), space.get(), path_, who), path_, who);
  return read_one_string(
      type.get(), space.get(),
      [&](hid_t mem, void* buf) { return H5Dread(ds.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); }, path_, who);
}

// ---- listing ----

namespace {
struct VisitState {
  std::vector<std::string> names;
  std::string prefix;  // the group visited, normalized, without the leading "/" ("" for root)
};

#if H5_VERSION_GE(1, 12, 0)
herr_t visit_cb(hid_t, const char* name, const H5O_info2_t* info, void* data) {
#else
herr_t visit_cb(hid_t, const char* name, const H5O_info_t* info, void* data) {
#endif
  auto* st = static_cast<VisitState*>(data);
  if (info->type == H5O_TYPE_DATASET && name && std::strcmp(name, ".") != 0) {
    st->names.push_back(st->prefix.empty() ? std::string(name) : st->prefix + "/" + name);
  }
  if (st->names.size() > 50'000'000) return -1;
  return 0;
}
}  // namespace

std::vector<std::string> Hdf5File::list_datasets(const std::string& group) const {
  const std::string p = normalize(path_, group);
  const H g = open_object(id(), path_, p);
  if (H5Iget_type(g.get()) != H5I_GROUP) throw InputError(path_, obj_label(strip_root(p)) + " is not a group");
  VisitState st;
  st.prefix = p == "/" ? "" : p.substr(1);
#if H5_VERSION_GE(1, 12, 0)
  const herr_t rc = H5Ovisit3(g.get(), H5_INDEX_NAME, H5_ITER_INC, visit_cb, &st, H5O_INFO_BASIC);
#else
  const herr_t rc = H5Ovisit2(g.get(), H5_INDEX_NAME, H5_ITER_INC, visit_cb, &st, H5O_INFO_BASIC);
#endif
  if (rc < 0) fail(path_, "cannot list the objects under " + obj_label(group) + " (damaged file?)");
  std::sort(st.names.begin(), st.names.end());
  return st.names;
}

std::vector<std::string> Hdf5File::list_children(const std::string& group) const {
  const std::string p = normalize(path_, group);
  const H g = open_object(id(), path_, p);
  if (H5Iget_type(g.get()) != H5I_GROUP) throw InputError(path_, obj_label(strip_root(p)) + " is not a group");
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    auto* v = static_cast<std::vector<std::string>*>(data);
    v->emplace_back(name);
    return v->size() > 50'000'000 ? -1 : 0;
  };
  hsize_t idx = 0;
  if (H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, cb, &names) < 0) {
    fail(path_, "cannot list the children of " + obj_label(group) + " (damaged file?)");
  }
  std::sort(names.begin(), names.end());
  return names;
}

// ---- attributes ----

namespace {

// Opens the object and, when the attribute exists, deletes it (so it can be re-created).
H attr_target(hid_t file, const std::string& fname, const std::string& object, const std::string& name) {
  const std::string p = normalize(fname, object);
  H o = open_object(file, fname, p);
  const htri_t ex = H5Aexists(o.get(), name.c_str());
  if (ex < 0) fail(fname, "cannot inspect attribute '" + printable_name(name) + "' of " + obj_label(object));
  if (ex > 0 && H5Adelete(o.get(), name.c_str()) < 0) {
    fail(fname, "cannot replace attribute '" + printable_name(name) + "' of " + obj_label(object));
  }
  return o;
}

void write_attr(hid_t obj, const std::string& fname, const std::string& object, const std::string& name, hid_t ftype,
                hid_t mtype, hid_t space, const void* data) {
  H a(H5Acreate2(obj, name.c_str(), ftype, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.ok() || (data && H5Awrite(a.get(), mtype, data) < 0)) {
    fail(fname, "cannot write attribute '" + printable_name(name) + "' of " + obj_label(object));
  }
}

struct OpenAttr {
  H obj, attr, type, space;
  std::string who;
};

OpenAttr open_attr(hid_t file, const std::string& fname, const std::string& object, const std::string& name) {
  OpenAttr r;
  const std::string p = normalize(fname, object);
  r.who =
      "attribute '" + printable_name(name) + "' of " + (p == "/" ? std::string("the root group") : obj_label(object));
  r.obj = open_object(file, fname, p);
  const htri_t ex = H5Aexists(r.obj.get(), name.c_str());
  if (ex < 0) fail(fname, "cannot inspect " + r.who);
  if (ex == 0) throw InputError(fname, "missing " + r.who);
  r.attr = H(H5Aopen(r.obj.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  if (!r.attr.ok()) fail(fname, "cannot open " + r.who);
  r.type = H(H5Aget_type(r.attr.get()), H5Tclose);
  r.space = H(H5Aget_space(r.attr.get()), H5Sclose);
  if (!r.type.ok() || !r.space.ok()) fail(fname, "cannot inspect " + r.who);
  return r;
}

// The number of values of a numeric attribute (1-d or scalar), after checking its class.
std::size_t numeric_count(const OpenAttr& a, const std::string& fname, bool integer_only) {
  const H5T_class_t c = H5Tget_class(a.type.get());
  if (!(c == H5T_INTEGER || (!integer_only && c == H5T_FLOAT))) {
    throw InputError(fname, a.who + " is not " + (integer_only ? "an integer" : "a number"));
  }
  const H5S_class_t sc = H5Sget_simple_extent_type(a.space.get());
  if (sc == H5S_SCALAR) return 1;
  if (sc != H5S_SIMPLE || H5Sget_simple_extent_ndims(a.space.get()) != 1) {
    throw InputError(fname, a.who + " is not a scalar or a 1-d array");
  }
  const hssize_t n = H5Sget_simple_extent_npoints(a.space.get());
  if (n < 0 || n > (hssize_t{1} << 28)) throw InputError(fname, a.who + " has an absurd size");
  return static_cast<std::size_t>(n);
}

std::vector<std::int64_t> read_int64s(const OpenAttr& a, const std::string& fname) {
  const std::size_t n = numeric_count(a, fname, true);
  const bool is_unsigned = H5Tget_sign(a.type.get()) == H5T_SGN_NONE;
  if (is_unsigned && H5Tget_size(a.type.get()) >= 8) {
    std::vector<std::uint64_t> u(n);
    if (n && H5Aread(a.attr.get(), H5T_NATIVE_UINT64, u.data()) < 0) fail(fname, "cannot read " + a.who);
    std::vector<std::int64_t> r;
    for (std::uint64_t x : u) {
      if (x > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw InputError(fname, a.who + " holds " + std::to_string(x) + ", over int64");
      }
      r.push_back(static_cast<std::int64_t>(x));
    }
    return r;
  }
  if (H5Tget_size(a.type.get()) > 8) throw InputError(fname, a.who + " is wider than 64 bits");
  std::vector<std::int64_t> r(n);
  if (n && H5Aread(a.attr.get(), H5T_NATIVE_INT64, r.data()) < 0) fail(fname, "cannot read " + a.who);
  return r;
}

std::vector<double> read_doubles(const OpenAttr& a, const std::string& fname) {
  const std::size_t n = numeric_count(a, fname, false);
  std::vector<double> r(n);
  if (n && H5Aread(a.attr.get(), H5T_NATIVE_DOUBLE, r.data()) < 0) fail(fname, "cannot read " + a.who);
  return r;
}

}  // namespace

void Hdf5File::set_attr(const std::string& object, const std::string& name, const std::string& value) {
  const H o = attr_target(id(), path_, object, name);
  H space(H5Screate(H5S_SCALAR), H5Sclose);
  H type = fixed_string_type(value);
  std::string buf = value;
  buf.resize(std::max<std::size_t>(1, value.size()), '\0');
  write_attr(o.get(), path_, object, name, type.get(), type.get(), space.get(), buf.data());
}

void Hdf5File::set_attr(const std::string& object, const std::string& name, const char* value) {
  set_attr(object, name, std::string(value));
}

void Hdf5File::set_attr(const std::string& object, const std::string& name, double value) {
  const H o = attr_target(id(), path_, object, name);
  H space(H5Screate(H5S_SCALAR), H5Sclose);
  write_attr(o.get(), path_, object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space.get(), &value);
}

void Hdf5File::set_attr(const std::string& object, const std::string& name, std::int64_t value) {
  const H o = attr_target(id(), path_, object, name);
  H space(H5Screate(H5S_SCALAR), H5Sclose);
  write_attr(o.get(), path_, object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space.get(), &value);
}

void Hdf5File::set_attr(const std::string& object, const std::string& name, const std::vector<double>& value) {
  const H o = attr_target(id(), path_, object, name);
  const hsize_t n = value.size();
  H space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  write_attr(o.get(), path_, object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space.get(),
             value.empty() ? nullptr : value.data());
}

void Hdf5File::set_attr(const std::string& object, const std::string& name, const std::vector<std::int64_t>& value) {
  const H o = attr_target(id(), path_, object, name);
  const hsize_t n = value.size();
  H space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  write_attr(o.get(), path_, object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space.get(),
             value.empty() ? nullptr : value.data());
}

bool Hdf5File::has_attr(const std::string& object, const std::string& name) const {
  const H o = open_object(id(), path_, normalize(path_, object));
  const htri_t ex = H5Aexists(o.get(), name.c_str());
  H5Eclear2(H5E_DEFAULT);
  return ex > 0;
}

std::vector<std::string> Hdf5File::attr_names(const std::string& object) const {
  const H o = open_object(id(), path_, normalize(path_, object));
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  hsize_t idx = 0;
  if (H5Aiterate2(o.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, cb, &names) < 0) {
    fail(path_, "cannot list the attributes of " + obj_label(object));
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string Hdf5File::attr_string(const std::string& object, const std::string& name) const {
  const OpenAttr a = open_attr(id(), path_, object, name);
  return read_one_string(
      a.type.get(), a.space.get(), [&](hid_t mem, void* buf) { return H5Aread(a.attr.get(), mem, buf); }, path_, a.who);
}

double Hdf5File::attr_double(const std::string& object, const std::string& name) const {
  const OpenAttr a = open_attr(id(), path_, object, name);
  const auto v = read_doubles(a, path_);
  if (v.size() != 1) throw InputError(path_, a.who + " holds " + std::to_string(v.size()) + " values, not one");
  return v[0];
}

std::int64_t Hdf5File::attr_int64(const std::string& object, const std::string& name) const {
  const OpenAttr a = open_attr(id(), path_, object, name);
  const auto v = read_int64s(a, path_);
  if (v.size() != 1) throw InputError(path_, a.who + " holds " + std::to_string(v.size()) + " values, not one");
  return v[0];
}

std::vector<double> Hdf5File::attr_doubles(const std::string& object, const std::string& name) const {
  return read_doubles(open_attr(id(), path_, object, name), path_);
}

std::vector<std::int64_t> Hdf5File::attr_int64s(const std::string& object, const std::string& name) const {
  return read_int64s(open_attr(id(), path_, object, name), path_);
}

bool looks_like_hdf5(const std::string& path) {
  static constexpr char kSig[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  for (std::uint64_t off = 0; off < (std::uint64_t{1} << 40); off = off == 0 ? 512 : off * 2) {
    in.seekg(static_cast<std::streamoff>(off));
    char b[8];
    if (!in.read(b, 8)) return false;
    if (std::memcmp(b, kSig, 8) == 0) return true;
  }
  return false;
}

}  // namespace dsv4
