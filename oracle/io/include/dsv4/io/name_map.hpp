// Renaming a foreign dump's tensor names to dsv4's canonical names (`--map M.json`), so that an
// engine's own dump can be checked without rewriting it.
//
// The map file is a JSON object with (at least one of) two keys:
//
//   {
//     "rename":   {"model.layers.0.self_attn.o": "prefill/layers.0.attn/out", ...},
//     "patterns": [{"match": "blk\\.(\\d+)\\.attn_out", "name": "prefill/layers.$1.attn/out"}, ...]
//   }
//
// and optionally "strict" (true: an entry that matches nothing is an error, as NameMapOptions::strict)
// and "comment" (any value, ignored). "rename" maps exact names. "patterns" are
// ECMAScript regular expressions that must match the *whole* name; "name" is the replacement,
// with $1…$99 for groups, $& for the whole match and $$ for a dollar. A name is mapped by its exact
// entry when there is one, else by the first pattern that matches it; a name nothing matches is
// kept as it is (it may already be canonical) unless keep_unmapped is false.
//
// Checks (each an InputError naming the map file and the entry): not JSON; unknown top-level key;
// duplicate keys anywhere; a value of the wrong kind; an empty canonical name; a pattern that does
// not compile or is over 1,000 characters. When applied: two names mapping to the same canonical
// name (including a mapped name colliding with a kept one) is an error naming both; a map none of
// whose entries matches anything is an error; entries that match nothing are reported (`unused`),
// and are an error under `strict`. Names over 1,024 characters are not matched against patterns
// (an error: std::regex recursion grows with the input).
//
// std::regex backtracks, so a pattern is refused when one match could take long: a repeated group
// ("(…)*", "(…)?", "(…){n}"), more than two unbounded repeats (*, +, {n,}), more than three repeats
// in all, a repeat count over 8, or a number over 9 digits (libstdc++'s regex compiler overflows on
// one: found by the fuzz_name_map campaign of 2026-12-08). A name of 1,024 characters then takes
// milliseconds a pattern; and applying the map to one dump's names stops with an error after 10 s.
#pragma once

#include <map>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dsv4/io/input_error.hpp"

namespace dsv4 {

struct NameMapPattern {
  std::string match;  // the regex text
  std::string name;   // the replacement
  std::regex re;
};

struct NameMap {
  std::string where;  // the map file, for messages
  std::map<std::string, std::string> exact;
  std::vector<NameMapPattern> patterns;
  bool strict = false;  // the file's "strict": entries matching nothing are an error
  bool empty() const { return exact.empty() && patterns.empty(); }
};

NameMap parse_name_map(std::string_view json, const std::string& where = "<map>");
NameMap load_name_map(const std::string& path);

struct NameMapOptions {
  bool keep_unmapped = true;  // names no entry matches keep their own name
  bool strict = false;        // an entry that matches nothing is an error
};

struct MappedNames {
  std::map<std::string, std::string> to_source;  // canonical name → name in the source
  std::vector<std::string> unused;               // map entries that matched nothing, described
  std::vector<std::string> unmapped;             // source names no entry matched
};

// Maps `names` (the names in `source`, for messages). An empty map is the identity.
MappedNames apply_name_map(const NameMap& map, const std::vector<std::string>& names, const std::string& source,
                           const NameMapOptions& opts = {});

}  // namespace dsv4
