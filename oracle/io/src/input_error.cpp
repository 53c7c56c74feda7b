#include "dsv4/io/input_error.hpp"

namespace dsv4 {

InputError::InputError(const std::string& where, const std::string& what)
    : std::runtime_error(where.empty() ? what : where + ": " + what), where_(where) {}

}  // namespace dsv4
