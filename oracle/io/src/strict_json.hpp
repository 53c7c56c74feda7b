// Internal to dsv4_oracle's io module: JSON parsing that refuses duplicate keys (nlohmann keeps
// the last one silently) and nesting deeper than the caller's schema (a deep-nesting bomb is
// refused at the first container too deep, before it is built).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::detail {

struct JsonStructureError {
  enum class Kind { kDuplicateKey, kTooDeep } kind;
  std::vector<std::string> path;  // the keys leading to the object/array where it happened
  std::string key;                // the duplicated key (kDuplicateKey)
};

// Parses `text`; containers may nest at most `max_depth` deep (the root object is depth 1).
// Throws JsonStructureError, or nlohmann::json::exception for a syntax error.
nlohmann::json parse_json_strict(std::string_view text, int max_depth);

// nlohmann's exception text without its "[json.exception.parse_error.101] " prefix.
std::string json_error_text(const nlohmann::json::exception& e);

}  // namespace dsv4::detail
