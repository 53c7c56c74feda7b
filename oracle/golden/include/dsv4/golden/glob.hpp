// The one glob of the oracle's name patterns (certify --require, golden verify --recompute-only).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv4 {

// Whether `text` matches `pattern`, where '*' matches any run of characters ('/' and '.' included)
// and every other character itself.
bool glob_match(std::string_view pattern, std::string_view text);

// The items of a comma-separated list, each trimmed of spaces ("a, b" → {"a", "b"}; an empty item
// stays: "a,,b" → {"a", "", "b"}, for the caller to refuse).
std::vector<std::string> split_pattern_list(const std::string& text);

}  // namespace dsv4
