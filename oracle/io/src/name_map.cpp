// Name maps (--map M.json). See name_map.hpp for the file format and the rules.
#include "dsv4/io/name_map.hpp"

#include <filesystem>
#include <fstream>
#include <set>

#include "strict_json.hpp"

namespace dsv4 {

namespace {

constexpr std::size_t kMaxPatternChars = 1000;
constexpr std::size_t kMaxMatchedNameChars = 4096;
constexpr std::uintmax_t kMaxMapFileBytes = std::uintmax_t{64} << 20;

std::string q_name(std::string_view s) { return "'" + printable_name(s) + "'"; }

}  // namespace

NameMap parse_name_map(std::string_view text, const std::string& where) {
  using nlohmann::json;
  json j;
  try {
    j = detail::parse_json_strict(text, 3);  // root → "rename" object / "patterns" array → entry object
  } catch (const detail::JsonStructureError& e) {
    std::string at;
    for (const auto& k : e.path) at += (at.empty() ? "" : "/") + printable_name(k);
    if (e.kind == detail::JsonStructureError::Kind::kDuplicateKey) {
      throw InputError(where, "duplicate key " + q_name(e.key) + (at.empty() ? "" : " in '" + at + "'"));
    }
    throw InputError(where, "nested deeper than a map allows" + (at.empty() ? "" : " (in '" + at + "')"));
  } catch (const json::exception& e) {
    throw InputError(where, "not valid JSON: " + detail::json_error_text(e));
  }
  if (!j.is_object()) throw InputError(where, "a map is a JSON object with \"rename\" and/or \"patterns\"");
  NameMap m;
  m.where = where;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "comment") continue;
    if (key == "strict") {
      if (!v.is_boolean()) throw InputError(where, "\"strict\" is not true or false");
      m.strict = v.get<bool>();
      continue;
    }
    if (key == "rename") {
      if (!v.is_object()) throw InputError(where, "\"rename\" is not an object of name → canonical name");
      for (auto r = v.begin(); r != v.end(); ++r) {
        if (!r.value().is_string()) throw InputError(where, "\"rename\" entry " + q_name(r.key()) + " is not a string");
        const std::string to = r.value().get<std::string>();
        if (to.empty()) throw InputError(where, "\"rename\" entry " + q_name(r.key()) + " maps to an empty name");
        m.exact.emplace(r.key(), to);
      }
    } else if (key == "patterns") {
      if (!v.is_array()) throw InputError(where, "\"patterns\" is not an array of {\"match\", \"name\"} objects");
      for (std::size_t i = 0; i < v.size(); ++i) {
        const json& p = v[i];
        const std::string who = "\"patterns\"[" + std::to_string(i) + "]";
        if (!p.is_object())
          throw InputError(where, who + " is not an object {\"match\": regex, \"name\": replacement}");
        for (auto f = p.begin(); f != p.end(); ++f) {
          if (f.key() != "match" && f.key() != "name") {
            throw InputError(where, who + ": unknown key " + q_name(f.key()) + " (expected \"match\" and \"name\")");
          }
        }
        const auto mt = p.find("match");
        const auto nm = p.find("name");
        if (mt == p.end() || !mt->is_string()) throw InputError(where, who + ": \"match\" is missing or not a string");
        if (nm == p.end() || !nm->is_string()) throw InputError(where, who + ": \"name\" is missing or not a string");
        NameMapPattern pat;
        pat.match = mt->get<std::string>();
        pat.name = nm->get<std::string>();
        if (pat.name.empty()) throw InputError(where, who + ": \"name\" is empty");
        if (pat.match.size() > kMaxPatternChars) {
          throw InputError(where, who + ": pattern over " + std::to_string(kMaxPatternChars) + " characters");
        }
        try {
          pat.re = std::regex(pat.match, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          throw InputError(where, who + ": pattern " + q_name(pat.match) + " does not compile: " + e.what());
        }
        m.patterns.push_back(std::move(pat));
      }
    } else {
      throw InputError(where,
                       "unknown key " + q_name(key) + " (a map has \"rename\", \"patterns\", \"strict\", \"comment\")");
    }
  }
  return m;
}

NameMap load_name_map(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) throw InputError(path, "cannot open the map: no such file");
  if (!std::filesystem::is_regular_file(st)) throw InputError(path, "cannot open the map: not a regular file");
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxMapFileBytes) throw InputError(path, "the map file is over 64 MiB");
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw InputError(path, "read error");
  return parse_name_map(text, path);
}

MappedNames apply_name_map(const NameMap& map, const std::vector<std::string>& names, const std::string& source,
                           const NameMapOptions& opts) {
  MappedNames r;
  std::set<std::string> exact_used;
  std::vector<bool> pattern_used(map.patterns.size(), false);
  std::vector<std::pair<std::string, std::string>> mapped;  // (canonical, source)
  for (const std::string& n : names) {
    if (const auto it = map.exact.find(n); it != map.exact.end()) {
      exact_used.insert(n);
      mapped.emplace_back(it->second, n);
      continue;
    }
    bool done = false;
    if (!map.patterns.empty()) {
      if (n.size() > kMaxMatchedNameChars) {
        throw InputError(source, "name " + q_name(n) + " is over " + std::to_string(kMaxMatchedNameChars) +
                                     " characters; not matched against the map's patterns");
      }
      for (std::size_t i = 0; i < map.patterns.size() && !done; ++i) {
        std::smatch sm;
        if (std::regex_match(n, sm, map.patterns[i].re)) {
          pattern_used[i] = true;
          const std::string to = sm.format(map.patterns[i].name);
          if (to.empty()) {
            throw InputError(map.where,
                             "\"patterns\"[" + std::to_string(i) + "] maps " + q_name(n) + " to an empty name");
          }
          mapped.emplace_back(to, n);
          done = true;
        }
      }
    }
    if (done) continue;
    r.unmapped.push_back(n);
    if (opts.keep_unmapped) mapped.emplace_back(n, n);
  }
  for (const auto& [canonical, src] : mapped) {
    const auto [it, fresh] = r.to_source.emplace(canonical, src);
    if (!fresh) {
      throw InputError(map.where.empty() ? source : map.where, "two names of " + source +
                                                                   " map to the canonical name " + q_name(canonical) +
                                                                   ": " + q_name(it->second) + " and " + q_name(src));
    }
  }
  for (const auto& [from, to] : map.exact) {
    if (!exact_used.count(from)) r.unused.push_back("\"rename\" " + q_name(from) + " → " + q_name(to));
  }
  for (std::size_t i = 0; i < map.patterns.size(); ++i) {
    if (!pattern_used[i])
      r.unused.push_back("\"patterns\"[" + std::to_string(i) + "] " + q_name(map.patterns[i].match));
  }
  if (!map.empty()) {
    const std::size_t entries = map.exact.size() + map.patterns.size();
    if (r.unused.size() == entries) {
      throw InputError(
          map.where, "no entry of the map matches any of the " + std::to_string(names.size()) + " names in " + source);
    }
    if ((opts.strict || map.strict) && !r.unused.empty()) {
      throw InputError(map.where, std::to_string(r.unused.size()) + " map entries match nothing in " + source +
                                      ", first: " + r.unused.front());
    }
  }
  return r;
}

}  // namespace dsv4
