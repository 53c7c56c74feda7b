// Writing a file atomically: the bytes go to a temporary file next to the target, which is renamed
// over the target only once everything was written. A failure (or an AtomicFile destroyed before
// commit) leaves no file at the target and an existing target untouched.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace dsv4 {

class AtomicFile {
 public:
  // Creates the temporary file. Throws InputError naming `path` when it cannot.
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends bytes. Throws InputError naming the target path on a write error.
  void write(std::span<const std::byte> bytes);
  // Closes the temporary file and renames it over the target. Throws InputError on failure.
  void commit();

  const std::string& path() const { return path_; }

 private:
  void fail(const std::string& what);

  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// A path a command reads or writes, with the option that named it (for messages).
struct NamedPath {
  std::string option;  // "--json", "--golden", …
  std::string path;    // empty: not given (skipped)
};

// Refuses an output path before any work (InputError naming the output's option): one that names a
// directory, a device, FIFO or socket, or a symbolic link (the temp-then-rename write would replace
// the node itself), or the same file (device and inode) as one of the command's inputs or of its
// other outputs. A path that does not exist yet is accepted.
void check_output_paths(const std::vector<NamedPath>& outputs, const std::vector<NamedPath>& inputs);

// The whole-file writers' one path (write_npy, write_npz): `encode()` builds the file's bytes (an
// InputError it throws is re-thrown naming `path`), then they are written atomically.
void write_file_atomically(const std::string& path, const std::function<std::vector<std::byte>()>& encode);

}  // namespace dsv4
