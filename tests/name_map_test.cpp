// Name maps (--map M.json): exact renames before patterns, the first matching pattern wins, regex
// groups in the replacement, unmapped names kept or dropped, entries that match nothing reported
// (an error under strict, and always when the whole map matches nothing), duplicate canonical
// names refused naming both sources, and a table of malformed map files.
#include "dsv4/io/name_map.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/expect_errors.hpp"

namespace dsv4 {
namespace {

using testing_support::error_of;

const char* kMap = R"j({
  "comment": "llama-style dump of layer 0 and 1",
  "rename": {"tok_embeddings.out": "prefill/embed/out", "norm.out": "prefill/norm/out"},
  "patterns": [
    {"match": "blk\\.(\\d+)\\.attn_out", "name": "prefill/layers.$1.attn/out"},
    {"match": "blk\\.(\\d+)\\.(ffn)_(gate)", "name": "prefill/layers.$1.$2.$3/out"},
    {"match": "blk\\.(\\d+)\\..*", "name": "prefill/layers.$1/other:$&"},
    {"match": "never\\.matches", "name": "x"}
  ]
})j";

TEST(NameMap, MapsExactThenFirstPattern) {
  const NameMap m = parse_name_map(kMap, "m.json");
  EXPECT_EQ(m.exact.size(), 2u);
  EXPECT_EQ(m.patterns.size(), 4u);
  const std::vector<std::string> names = {"tok_embeddings.out", "blk.0.attn_out",    "blk.12.ffn_gate",
                                          "blk.3.weird",        "already/canonical", "norm.out"};
  const MappedNames r = apply_name_map(m, names, "dump.h5");
  EXPECT_EQ(r.to_source.at("prefill/embed/out"), "tok_embeddings.out");
  EXPECT_EQ(r.to_source.at("prefill/layers.0.attn/out"), "blk.0.attn_out");
  EXPECT_EQ(r.to_source.at("prefill/layers.12.ffn.gate/out"), "blk.12.ffn_gate");  // not the catch-all
  EXPECT_EQ(r.to_source.at("prefill/layers.3/other:blk.3.weird"), "blk.3.weird");
  EXPECT_EQ(r.to_source.at("already/canonical"), "already/canonical");  // kept
  EXPECT_EQ(r.to_source.size(), names.size());
  EXPECT_EQ(r.unmapped, std::vector<std::string>{"already/canonical"});
  ASSERT_EQ(r.unused.size(), 1u);
  EXPECT_NE(r.unused[0].find("never\\.matches"), std::string::npos) << r.unused[0];
  // A pattern matches the whole name only.
  const MappedNames partial = apply_name_map(m, {"xblk.0.attn_out", "norm.out"}, "d");
  EXPECT_EQ(partial.to_source.at("xblk.0.attn_out"), "xblk.0.attn_out");
  // Dropping unmapped names; strict refuses unused entries.
  const MappedNames dropped = apply_name_map(m, names, "d", {.keep_unmapped = false});
  EXPECT_EQ(dropped.to_source.count("already/canonical"), 0u);
  const std::string strict = error_of([&] { apply_name_map(m, names, "dump.h5", {.strict = true}); });
  EXPECT_NE(strict.find("m.json: 1 map entries match nothing in dump.h5, first: \"patterns\"[3]"), std::string::npos)
      << strict;
  // An empty map is the identity.
  const MappedNames id = apply_name_map(NameMap{}, names, "d");
  EXPECT_EQ(id.to_source.size(), names.size());
  EXPECT_TRUE(id.unused.empty());
}

TEST(NameMap, NothingMatchesAndDuplicatesAreErrors) {
  const NameMap m = parse_name_map(kMap, "m.json");
  const std::string nothing = error_of([&] { apply_name_map(m, {"a", "b"}, "dump.h5"); });
  EXPECT_NE(nothing.find("m.json: no entry of the map matches any of the 2 names in dump.h5"), std::string::npos);
  // two names onto one canonical name
  const NameMap d = parse_name_map(R"j({"patterns": [{"match": "(a|b)", "name": "same"}]})j", "d.json");
  const std::string dup = error_of([&] { apply_name_map(d, {"a", "b"}, "dump.h5"); });
  EXPECT_NE(dup.find("two names of dump.h5 map to the canonical name 'same': 'a' and 'b'"), std::string::npos) << dup;
  // a mapped name onto a kept one
  const NameMap k = parse_name_map(R"j({"rename": {"x": "y"}})j", "k.json");
  EXPECT_NE(error_of([&] {
              apply_name_map(k, {"x", "y"}, "dump.h5");
            }).find("the canonical name 'y'"),
            std::string::npos);
  // an empty replacement result
  const NameMap e = parse_name_map(R"j({"patterns": [{"match": "(.*)", "name": "$2"}]})j", "e.json");
  EXPECT_NE(error_of([&] { apply_name_map(e, {"x"}, "dump.h5"); }).find("to an empty name"), std::string::npos);
  // over-long names are not fed to std::regex
  const std::string longname(1025, 'a');
  EXPECT_NE(error_of([&] { apply_name_map(m, {longname}, "dump.h5"); }).find("over 1024 characters"),
            std::string::npos);
}

TEST(NameMap, PatternsOfRealMapsPassTheBacktrackingBounds) {
  // the documented and tested shapes, escapes, classes, a lazy repeat and a non-capturing group
  for (const std::string re :
       {R"(blk\\.(\\d+)\\.attn_out)", R"(blk\\.(\\d+)\\..*)", R"(blk\\.(\\d+)\\.(ffn)_(gate))", R"((a|b))", R"((.*))",
        R"(layers?\\.(\\d+)\\.(.*?))", R"((?:x|y)[0-9]{1,8}\\(\\))", R"([*+?{(]a)"}) {
    SCOPED_TRACE(re);
    const NameMap m = parse_name_map(R"({"patterns": [{"match": ")" + re + R"(", "name": "n"}]})", "m.json");
    EXPECT_EQ(m.patterns.size(), 1u);
  }
}

TEST(NameMap, MalformedMapsAreRefusedByName) {
  struct Bad {
    std::string text, rule;
  };
  const std::vector<Bad> bad = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"[]", "a map is a JSON object"},
      {R"({"renames": {}})", "unknown key 'renames'"},
      {R"({"rename": {"a": "x", "a": "y"}})", "duplicate key 'a' in 'rename'"},
      {R"({"rename": {}, "rename": {}})", "duplicate key 'rename'"},
      {R"({"rename": []})", "\"rename\" is not an object"},
      {R"({"rename": {"a": 1}})", "\"rename\" entry 'a' is not a string"},
      {R"({"rename": {"a": ""}})", "maps to an empty name"},
      {R"({"patterns": {}})", "\"patterns\" is not an array"},
      {R"({"patterns": ["a"]})", "\"patterns\"[0] is not an object"},
      {R"({"patterns": [{"match": "a"}]})", "\"patterns\"[0]: \"name\" is missing"},
      {R"({"patterns": [{"name": "a"}]})", "\"patterns\"[0]: \"match\" is missing"},
      {R"({"patterns": [{"match": "a", "name": "b", "flags": "i"}]})", "unknown key 'flags'"},
      {R"j({"patterns": [{"match": "(", "name": "b"}]})j", "\"patterns\"[0]: pattern '(' does not compile"},
      {R"({"patterns": [{"match": "a", "name": ""}]})", "\"name\" is empty"},
      {R"j({"patterns": [{"match": ")j" + std::string(1001, 'a') + R"j(", "name": "b"}]})j",
       "pattern over 1000 characters"},
      {R"({"patterns": [{"match": {"x": 1}, "name": "b"}]})", "nested deeper than a map allows"},
      {"{\"rename\": {\"a\\u0001\": 1}}", "entry 'a\\x01' is not a string"},
      // patterns std::regex could backtrack on for hours, or whose numbers overflow its compiler
      // (the fuzz_name_map campaign of 2026-12-08 found a 19-digit back-reference: UB in libstdc++)
      {R"j({"patterns": [{"match": "a\\8888888888888888888", "name": "b"}]})j", "a number over 9 digits"},
      {R"j({"patterns": [{"match": "(a|a)*b", "name": "b"}]})j", "a repeated group"},
      {R"j({"patterns": [{"match": "(ab)?c", "name": "b"}]})j", "a repeated group"},
      {R"j({"patterns": [{"match": "(ab){2}", "name": "b"}]})j", "a repeated group"},
      {R"j({"patterns": [{"match": ".*.*.*b", "name": "b"}]})j", "3 unbounded repeats"},
      {R"j({"patterns": [{"match": "a+b{2,}.*", "name": "b"}]})j", "3 unbounded repeats"},
      {R"j({"patterns": [{"match": "a?b?c?d?", "name": "b"}]})j", "4 repeats (at most 3)"},
      {R"j({"patterns": [{"match": "a{0,9}", "name": "b"}]})j", "a repeat count over 8"},
      // the campaign's second finding: chained '?' (libstdc++ accepts "a???"), 70 s on one name
      {R"j({"patterns": [{"match": "blk\\.(\\d.????????+???)\\.attn", "name": "b"}]})j",
       "a quantifier after a quantifier"},
      {R"j({"patterns": [{"match": "a*+", "name": "b"}]})j", "a quantifier after a quantifier"},
      {R"j({"patterns": [{"match": "a\\*?b?c?d?", "name": "b"}]})j", "4 repeats (at most 3)"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.text.substr(0, 80));
    const std::string m = error_of([&] { parse_name_map(b.text, "m.json"); });
    EXPECT_NE(m.find(b.rule), std::string::npos) << m;
    EXPECT_EQ(m.rfind("m.json: ", 0), 0u) << m;
  }
}

TEST(NameMap, LoadFromFile) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("dsv4_map_" + std::to_string(::getpid()) + ".json")).string();
  std::ofstream(path) << kMap;
  const NameMap m = load_name_map(path);
  EXPECT_EQ(m.where, path);
  EXPECT_EQ(m.patterns.size(), 4u);
  std::filesystem::remove(path);
  EXPECT_NE(error_of([&] { load_name_map(path); }).find("no such file"), std::string::npos);
  EXPECT_NE(
      error_of([&] { load_name_map(std::filesystem::temp_directory_path().string()); }).find("not a regular file"),
      std::string::npos);
}

}  // namespace
}  // namespace dsv4
