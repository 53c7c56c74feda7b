#include "dsv4/io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "dsv4/io/input_error.hpp"

namespace dsv4 {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    tmp_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) throw InputError(path_, "cannot create a temporary file next to it: " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::fail(const std::string& what) {
  const std::string why = errno_text();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
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

}  // namespace dsv4
