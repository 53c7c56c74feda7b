#include "strict_json.hpp"

#include <set>

namespace dsv4::detail {

nlohmann::json parse_json_strict(std::string_view text, int max_depth) {
  using nlohmann::json;
  std::vector<std::set<std::string>> keys;  // per open object
  std::vector<bool> is_object;              // per open container
  std::vector<std::string> path;            // the key naming each open container (root: "")
  std::string last_key;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= max_depth) {
          throw JsonStructureError{JsonStructureError::Kind::kTooDeep,
                                   std::vector<std::string>(path.begin() + (path.empty() ? 0 : 1), path.end()), ""};
        }
        path.push_back(last_key);
        is_object.push_back(ev == json::parse_event_t::object_start);
        if (is_object.back()) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!is_object.empty()) {
          if (is_object.back()) keys.pop_back();
          is_object.pop_back();
          path.pop_back();
        }
        break;
      case json::parse_event_t::key:
        last_key = parsed.get<std::string>();
        if (!keys.empty() && !keys.back().insert(last_key).second) {
          throw JsonStructureError{JsonStructureError::Kind::kDuplicateKey,
                                   std::vector<std::string>(path.begin() + 1, path.end()), last_key};
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  return json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
}

std::string json_error_text(const nlohmann::json::exception& e) {
  std::string what = e.what();
  if (const auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
  return what;
}

}  // namespace dsv4::detail
