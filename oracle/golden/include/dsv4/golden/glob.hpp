// The one glob of the oracle's name patterns (certify --require, golden verify --recompute-only).
#pragma once

#include <string_view>

namespace dsv4 {

// Whether `text` matches `pattern`, where '*' matches any run of characters ('/' and '.' included)
// and every other character itself.
bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace dsv4
