// The contained first reading of an HDF5 file; see hdf5_probe.hpp.
#include "hdf5_probe.hpp"

#include <hdf5.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/io/input_error.hpp"

namespace dsv4::detail {

namespace {

bool in_probe_child = false;

constexpr std::uint64_t kProbeDatasetBytes = std::uint64_t{1} << 20;  // data read per dataset, at most
constexpr std::uint64_t kProbeTotalBytes = std::uint64_t{64} << 20;   // and in all
constexpr std::size_t kProbeObjects = 1'000'000;                      // datasets visited, at most

double probe_seconds() {
  const char* v = std::getenv("DSV4_HDF5_PROBE_SECONDS");
  if (v && *v) {
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    if (end && *end == '\0' && s > 0 && s <= 86400) return s;
  }
  return 60.0;
}

// ---- the child: libhdf5's C API only, so that a crash there is libhdf5's, not dsv4's reader code
// (which runs afterwards, in-process, where sanitizers and fuzzers see it) ----

// Reads a string-typed attribute or dataset of `space` (fixed or variable length) through `read`.
template <class Read>
void read_strings(hid_t ftype, hid_t space, Read read) {
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n < 0 || n > 4096) return;
  if (H5Tis_variable_str(ftype) > 0) {
    const hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    std::vector<char*> p(static_cast<std::size_t>(n) + 1, nullptr);
    if (read(mem, p.data()) >= 0) {
#if H5_VERSION_GE(1, 12, 0)
      H5Treclaim(mem, space, H5P_DEFAULT, p.data());
#else
      H5Dvlen_reclaim(mem, space, H5P_DEFAULT, p.data());
#endif
    }
    H5Tclose(mem);
    return;
  }
  const std::size_t size = H5Tget_size(ftype);
  if (size == 0 || size * static_cast<std::size_t>(n) > kProbeDatasetBytes) return;
  std::vector<char> buf(size * static_cast<std::size_t>(n) + 1);
  read(ftype, buf.data());
}

herr_t attribute(hid_t obj, const char* name, const H5A_info_t*, void*) {
  const hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return 0;
  const hid_t t = H5Aget_type(a), s = H5Aget_space(a);
  if (t >= 0 && s >= 0 && H5Tget_class(t) == H5T_STRING)
    read_strings(t, s, [&](hid_t mem, void* buf) { return H5Aread(a, mem, buf); });
  if (s >= 0) H5Sclose(s);
  if (t >= 0) H5Tclose(t);
  H5Aclose(a);
  return 0;
}

void attributes(hid_t obj) { H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, nullptr, attribute, nullptr); }

#if H5_VERSION_GE(1, 12, 0)
herr_t visit(hid_t, const char* name, const H5O_info2_t* info, void* data) {
#else
herr_t visit(hid_t, const char* name, const H5O_info_t* info, void* data) {
#endif
  auto* names = static_cast<std::vector<std::string>*>(data);
  if (info->type == H5O_TYPE_DATASET && name) names->emplace_back(name);
  return names->size() < kProbeObjects ? 0 : 1;
}

void dataset(hid_t file, const std::string& name, std::uint64_t& total) {
  const hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (ds < 0) return;
  attributes(ds);
  const hid_t t = H5Dget_type(ds), s = H5Dget_space(ds), dcpl = H5Dget_create_plist(ds);
  const H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
  // Compact data whose stored size is not its shape's is refused by the reader before H5Dread
  // (hdf5_file.cpp, check_storage): not read here, so that the refusal names it.
  const hssize_t points = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
  const bool compact_mismatch =
      layout == H5D_COMPACT && t >= 0 && points >= 0 &&
      (H5Tis_variable_str(t) > 0 || H5Dget_storage_size(ds) != static_cast<hsize_t>(points) * H5Tget_size(t));
  if (t >= 0 && s >= 0 && !compact_mismatch) {
    if (H5Tget_class(t) == H5T_STRING) {
      read_strings(t, s, [&](hid_t mem, void* buf) { return H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); });
    } else if (H5Tdetect_class(t, H5T_VLEN) <= 0 && H5Tdetect_class(t, H5T_REFERENCE) <= 0) {
      const hssize_t n = H5Sget_simple_extent_npoints(s);
      const std::uint64_t bytes = n > 0 ? static_cast<std::uint64_t>(n) * H5Tget_size(t) : 0;
      if (n > 0 && bytes / static_cast<std::uint64_t>(n) == H5Tget_size(t) && bytes <= kProbeDatasetBytes &&
          total + bytes <= kProbeTotalBytes) {
        std::vector<unsigned char> buf(bytes);
        H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
        total += bytes;
      }
    }
  }
  if (dcpl >= 0) H5Pclose(dcpl);
  if (s >= 0) H5Sclose(s);
  if (t >= 0) H5Tclose(t);
  H5Dclose(ds);
}

[[noreturn]] void child(const std::string& path) {
  in_probe_child = true;
  // A crash kills the child by its signal, as the parent checks: the handlers inherited (a
  // sanitizer's report, libFuzzer's crash dump and exit code) are reset; no core file is written.
  for (const int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) ::signal(sig, SIG_DFL);
  const struct rlimit no_core { 0, 0 };
  ::setrlimit(RLIMIT_CORE, &no_core);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f >= 0) {
    attributes(f);
    std::vector<std::string> names;
#if H5_VERSION_GE(1, 12, 0)
    H5Ovisit3(f, H5_INDEX_NAME, H5_ITER_INC, visit, &names, H5O_INFO_BASIC);
#else
    H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit, &names, H5O_INFO_BASIC);
#endif
    std::uint64_t total = 0;
    for (const std::string& n : names) dataset(f, n, total);
  }
  ::_exit(0);  // no atexit handlers, no stdio flush, no H5close: the parent's state is the parent's
}

std::string signal_text(int sig) {
  const char* d = ::strsignal(sig);
  return "signal " + std::to_string(sig) + (d ? std::string(", ") + d : std::string());
}

}  // namespace

void probe_hdf5_structure(const std::string& path) {
  if (in_probe_child) return;
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(path + ": cannot start the HDF5 probe process: " + std::strerror(errno));
  if (pid == 0) child(path);
  using Clock = std::chrono::steady_clock;
  const double limit = probe_seconds();
  const auto deadline = Clock::now() + std::chrono::duration<double>(limit);
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) throw std::runtime_error(path + ": lost the HDF5 probe process");
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g", limit);
      throw InputError(path, std::string("libhdf5 did not finish reading the file's structure in ") + secs +
                                 " s (a damaged or crafted file: libhdf5 loops on some): refused");
    }
    ::usleep(200);
  }
  if (WIFSIGNALED(status)) {
    throw InputError(path, "libhdf5 crashed reading the file's structure (" + signal_text(WTERMSIG(status)) +
                               ", contained in a child process): a damaged or crafted file, refused");
  }
}

}  // namespace dsv4::detail
