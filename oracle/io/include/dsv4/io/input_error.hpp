// Bad input (a malformed file, a wrong shape, a dtype we do not read) is reported by throwing
// InputError with one line naming the problem; the CLI prints it and exits with status 2.
#pragma once

#include <stdexcept>
#include <string>

namespace dsv4 {

class InputError : public std::runtime_error {
 public:
  InputError(const std::string& where, const std::string& what);
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

}  // namespace dsv4
