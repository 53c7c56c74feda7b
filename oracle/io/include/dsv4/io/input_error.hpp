// Bad input (a malformed file, a wrong shape, a dtype we do not read) is reported by throwing
// InputError with one line naming the problem; the CLI prints it and exits with status 2.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dsv4 {

class InputError : public std::runtime_error {
 public:
  InputError(const std::string& where, const std::string& what);
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

// A name from a file as it may appear in a one-line message: control bytes escaped as \xNN and
// anything past `max` bytes cut to "...".
std::string printable_name(std::string_view s, std::size_t max = 200);

}  // namespace dsv4
