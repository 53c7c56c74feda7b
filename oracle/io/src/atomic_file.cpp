#include "dsv4/io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "dsv4/io/input_error.hpp"
#include "dsv4/io/temp_files.hpp"

namespace dsv4 {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  static std::atomic<unsigned> counter{0};
  remove_stale_temps(path_);
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    tmp_ = temp_name(path_, counter++);
    register_temp(tmp_);  // before it exists: a signal between the two finds nothing to remove
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0) unregister_temp(tmp_);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) throw InputError(path_, "cannot create a temporary file next to it: " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    ::unlink(tmp_.c_str());
    unregister_temp(tmp_);
  }
}

void AtomicFile::fail(const std::string& what) {
  const std::string why = errno_text();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  unregister_temp(tmp_);
  committed_ = true;  // nothing left to clean up
  throw InputError(path_, what + ": " + why);
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  if (fd_ < 0) throw InputError(path_, "write after the file was closed");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("write failed");
    done += static_cast<std::size_t>(w);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) throw InputError(path_, "commit after the file was closed");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("write failed");
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file into place");
  unregister_temp(tmp_);
  committed_ = true;
}

void write_file_atomically(const std::string& path, const std::function<std::vector<std::byte>()>& encode) {
  std::vector<std::byte> bytes;
  try {
    bytes = encode();
  } catch (const InputError& e) {
    throw InputError(path, e.what());
  }
  AtomicFile out(path);
  out.write(bytes);
  out.commit();
}

void check_output_paths(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const NamedPath& out = outputs[i];
    const auto refuse = [&](const std::string& why) {
      throw InputError(out.option, "refusing to write " + out.path + ": " + why);
    };
    for (std::size_t j = 0; j < i && !out.path.empty(); ++j) {  // two outputs, one (new) file
      std::error_code e1, e2;
      if (!outputs[j].path.empty() &&
          std::filesystem::weakly_canonical(outputs[j].path, e1) == std::filesystem::weakly_canonical(out.path, e2) &&
          !e1 && !e2)
        refuse("it is the same file as " + outputs[j].option + " " + outputs[j].path);
    }
    struct stat o {};
    if (out.path.empty() || ::lstat(out.path.c_str(), &o) != 0) continue;  // not given, or a new file
    if (S_ISLNK(o.st_mode)) refuse("it is a symbolic link (give the file it points to)");
    if (S_ISDIR(o.st_mode)) refuse("it is a directory");
    if (!S_ISREG(o.st_mode)) refuse("it is not a regular file (a device, FIFO or socket)");
    std::vector<NamedPath> others = inputs;
    others.insert(others.end(), outputs.begin(), outputs.begin() + static_cast<std::ptrdiff_t>(i));
    for (const NamedPath& in : others) {
      struct stat s {};
      if (in.path.empty() || ::stat(in.path.c_str(), &s) != 0) continue;
      if (s.st_dev == o.st_dev && s.st_ino == o.st_ino) refuse("it is the same file as " + in.option + " " + in.path);
    }
  }
}

}  // namespace dsv4
