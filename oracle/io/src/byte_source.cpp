#include "dsv4/io/byte_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "dsv4/io/input_error.hpp"

namespace dsv4 {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

ByteSource ByteSource::open(const std::string& path) {
  ByteSource s;
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (issue 14 item 3);
  // the regular-file check below refuses it, and reads of a regular file never block anyway.
  s.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (s.fd_ < 0) throw InputError(path, "cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(s.fd_, &st) != 0) throw InputError(path, "cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw InputError(path, "cannot open: not a regular file");
  s.size_ = static_cast<std::uint64_t>(st.st_size);
  return s;
}

ByteSource ByteSource::memory(std::vector<std::byte> bytes) {
  ByteSource s;
  s.size_ = bytes.size();
  s.mem_ = std::move(bytes);
  return s;
}

ByteSource::ByteSource(ByteSource&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), size_(std::exchange(o.size_, 0)), mem_(std::move(o.mem_)) {}

ByteSource& ByteSource::operator=(ByteSource&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    size_ = std::exchange(o.size_, 0);
    mem_ = std::move(o.mem_);
  }
  return *this;
}

ByteSource::~ByteSource() {
  if (fd_ >= 0) ::close(fd_);
}

void ByteSource::read_at(std::uint64_t offset, std::span<std::byte> dst, const std::string& where,
                         const std::string& prefix, const ReadErrors& errors) const {
  if (fd_ < 0) {
    if (offset > mem_.size() || dst.size() > mem_.size() - offset) throw InputError(where, prefix + errors.past_end);
    if (!dst.empty()) std::memcpy(dst.data(), mem_.data() + offset, dst.size());
    return;
  }
  std::size_t done = 0;
  while (done < dst.size()) {
    const ssize_t r = ::pread(fd_, dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw InputError(where, prefix + "read error: " + errno_text());
    if (r == 0) throw InputError(where, prefix + errors.shrank);
    done += static_cast<std::size_t>(r);
  }
}

}  // namespace dsv4
