// Name maps (--map M.json). See name_map.hpp for the file format and the rules.
#include "dsv4/io/name_map.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "strict_json.hpp"

namespace dsv4 {

namespace {

constexpr std::size_t kMaxPatternChars = 1000;
constexpr std::size_t kMaxMatchedNameChars = 1024;
// Backtracking bounds of one pattern (name_map.hpp: why): std::regex backtracks, so a match costs up to
// the product of its repeats' ranges. At most two unbounded repeats (*, +, {n,}) — a full match of a
// name of kMaxMatchedNameChars then takes at most ~n² steps (measured: `.*.*b` on 4,096 characters
// 0.5 s, on 1,024 about 30 ms) — at most three repeats in all, bounded counts up to 8, no repeated
// group, and no number over 9 digits (libstdc++'s regex compiler overflows a long on one: UB).
constexpr int kMaxUnboundedRepeats = 2;
constexpr int kMaxRepeats = 3;
constexpr long kMaxRepeatCount = 8;
constexpr std::size_t kMaxDigitRun = 9;
// The time all patterns may take over one dump's names before the map is refused.
constexpr double kMaxMatchingSeconds = 10.0;
constexpr std::uintmax_t kMaxMapFileBytes = std::uintmax_t{64} << 20;

std::string q_name(std::string_view s) { return "'" + printable_name(s) + "'"; }

// Why a pattern could backtrack for too long, or "" (the bounds above). Reads the ECMAScript text
// the way std::regex does for what matters here: escapes, bracket classes, groups and quantifiers.
std::string backtracking_risk(const std::string& re) {
  int repeats = 0;
  int unbounded = 0;
  std::size_t digits = 0;
  // what the previous token was: a quantifier may follow an atom only (one lazy '?' may follow it)
  enum class Prev { kAtom, kGroupOpen, kGroupEnd, kQuantifier, kLazy } prev = Prev::kAtom;
  bool in_class = false;
  for (std::size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    digits = (c >= '0' && c <= '9') ? digits + 1 : 0;
    if (digits > kMaxDigitRun) return "a number over " + std::to_string(kMaxDigitRun) + " digits";
    if (in_class) {
      if (c == '\\') ++i;  // an escaped character inside the class
      if (c == ']') {
        in_class = false;
        prev = Prev::kAtom;
      }
      continue;
    }
    if (c == '\\') {  // an escape is one atom; its next character is taken literally here
      if (i + 1 < re.size() && !(re[i + 1] >= '0' && re[i + 1] <= '9')) ++i;
      prev = Prev::kAtom;
      continue;
    }
    bool quantifier = false;
    bool is_unbounded = false;
    if (c == '*' || c == '+') {
      quantifier = is_unbounded = true;
    } else if (c == '?') {
      if (prev == Prev::kGroupOpen) {  // (?: …), (?= …), (?! …)
        prev = Prev::kAtom;
        continue;
      }
      if (prev == Prev::kQuantifier) {  // the lazy form of the quantifier before it
        prev = Prev::kLazy;
        continue;
      }
      quantifier = true;
    } else if (c == '{') {
      const std::size_t close = re.find('}', i);
      const std::string body = close == std::string::npos ? "" : re.substr(i + 1, close - i - 1);
      const std::size_t comma = body.find(',');
      const std::string hi = comma == std::string::npos ? body : body.substr(comma + 1);
      const bool numeric = !body.empty() && body.find_first_not_of("0123456789,") == std::string::npos &&
                           body[0] != ',' &&
                           body.find(',', comma == std::string::npos ? 0 : comma + 1) == std::string::npos;
      if (numeric) {
        quantifier = true;
        if (hi.empty() && comma != std::string::npos) {
          is_unbounded = true;
        } else if (hi.size() > kMaxDigitRun || std::stol(hi) > kMaxRepeatCount) {
          return "a repeat count over " + std::to_string(kMaxRepeatCount);
        }
        i = close;
      }
    }
    if (quantifier) {
      if (prev == Prev::kGroupEnd) return "a repeated group ( … ) followed by a quantifier";
      if (prev == Prev::kQuantifier || prev == Prev::kLazy) return "a quantifier after a quantifier";
      ++repeats;
      if (is_unbounded) ++unbounded;
      prev = Prev::kQuantifier;
      continue;
    }
    prev = c == '(' ? Prev::kGroupOpen : c == ')' ? Prev::kGroupEnd : Prev::kAtom;
    if (c == '[') in_class = true;
  }
  if (unbounded > kMaxUnboundedRepeats) {
    return std::to_string(unbounded) + " unbounded repeats (*, +, {n,}; at most " +
           std::to_string(kMaxUnboundedRepeats) + ")";
  }
  if (repeats > kMaxRepeats) {
    return std::to_string(repeats) + " repeats (at most " + std::to_string(kMaxRepeats) + ")";
  }
  return "";
}

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
        if (const std::string risk = backtracking_risk(pat.match); !risk.empty()) {
          throw InputError(where, who + ": pattern " + q_name(pat.match) + " has " + risk +
                                      " (std::regex backtracks: such a pattern can take hours on one name)");
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
  const auto start = std::chrono::steady_clock::now();
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
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > kMaxMatchingSeconds) {
          throw InputError(map.where, "the map's patterns took over " + std::to_string(int(kMaxMatchingSeconds)) +
                                          " s on the names of " + source + " (simplify the patterns)");
        }
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
