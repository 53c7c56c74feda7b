// Every citation of the specification in the tree resolves in the project's own copy, ref/spec/
// (ref/spec/README.md): the cited file `ref/spec/NN-*.md` exists, every cited section number is a
// heading of that file, and every cited canonical-arithmetic item C1–C8 is an item of spec 01 §1.11.
//
// Scanned: README.md, BENCHMARKS.md and every .cpp .hpp .h .c .cu .cuh .md file under ref/, gpu/,
// oracle/, properties/, tests/ and cli/ (not ref/spec/ itself, not fuzz corpora). Comment markers at
// the start of a line are dropped and lines are joined, so a citation may wrap to the next line.
//
// A citation is the word `spec` or `Spec`, a two-digit spec number, then a list of items:
//   §2.6  §2.6.5           a section (a heading of the cited file)
//   §1.3–§1.5  §1.3–1.5    a range: both ends are checked
//   C8  C1–C3              canonical-arithmetic items of spec 01 §1.11 (a range: every item)
//   step 3  steps 1–7      skipped, as is `item 6` (numbered steps are not headings)
//   02 §2.6                another spec file inside the same list (`spec 01 §1.4, 02 §2.6`)
//   2.10                   a bare section number: only after a list separator, and only when its
//                          first component is the current spec's number (`§2.4–2.5, 2.10–2.11`)
// separated by `,` `/` `(` `and` `or` `also` `including` `rule` `with`. One or two label words may
// follow a section when another section follows (`§1.6 dispatch, §1.7 fp8_gemm`). Anything else
// ends the list; a citation without items (`spec 05`, `Spec 08's`) cites the whole file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

// The spec files, their section headings and the C-items of spec 01.
struct SpecIndex {
  std::map<int, std::string> file_names;          // 2 → "02-attention.md"
  std::map<int, std::set<std::string>> sections;  // 2 → {"02", "2.1", …, "2.6.5", …}
  std::set<int> c_items;                          // {1, …, 8}, from spec 01
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

// The section number at the start of a heading line ("## 2.6 Compressor" → "2.6"), or "".
std::string heading_number(std::string_view line) {
  std::size_t i = 0;
  while (i < line.size() && line[i] == '#') ++i;
  if (i == 0 || i >= line.size() || line[i] != ' ') return "";
  ++i;
  std::size_t j = i;
  while (j < line.size() && (is_digit(line[j]) || line[j] == '.')) ++j;
  std::string number(line.substr(i, j - i));
  while (!number.empty() && number.back() == '.') number.pop_back();
  if (number.empty() || !is_digit(number.front())) return "";
  return number;
}

// Adds one spec file's text to the index (number = its two-digit prefix).
void index_spec_text(SpecIndex& index, int number, const std::string& file_name, const std::string& text) {
  index.file_names[number] = file_name;
  std::set<std::string>& headings = index.sections[number];
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const std::string h = heading_number(line);
    if (!h.empty()) headings.insert(h);
  }
  if (number != 1) return;
  // The items of spec 01 §1.11 are bullets "- **C1 Dot products …**" or "- **C5** IEEE …".
  for (std::size_t at = text.find("**C"); at != std::string::npos; at = text.find("**C", at + 1)) {
    std::size_t j = at + 3;
    int item = 0;
    while (j < text.size() && is_digit(text[j])) item = item * 10 + (text[j++] - '0');
    if (j > at + 3 && j < text.size() && (text[j] == ' ' || text[j] == '*')) index.c_items.insert(item);
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

SpecIndex load_spec(const fs::path& dir) {
  SpecIndex index;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() < 6 || !is_digit(name[0]) || !is_digit(name[1]) || name[2] != '-' || !name.ends_with(".md"))
      continue;
    index_spec_text(index, (name[0] - '0') * 10 + (name[1] - '0'), name, read_file(entry.path()));
  }
  return index;
}

// One text as a single stream: the comment markers at the start of every line are dropped and
// the lines are joined by one space; line_of maps a stream offset back to its line number.
struct Stream {
  std::string text;
  std::vector<std::size_t> line_starts;  // stream offset where each line (1-based: index + 1) begins

  int line_of(std::size_t offset) const {
    const auto it = std::upper_bound(line_starts.begin(), line_starts.end(), offset);
    return static_cast<int>(it - line_starts.begin());
  }
};

Stream make_stream(std::string_view text) {
  Stream s;
  std::size_t begin = 0;
  while (begin <= text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(begin, end - begin);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
    std::size_t i = 0;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    while (i < line.size() && (line[i] == '/' || line[i] == '*' || line[i] == '#' || line[i] == '>')) ++i;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    s.line_starts.push_back(s.text.size());
    s.text.append(line.substr(i));
    s.text.push_back(' ');
    if (end == text.size()) break;
    begin = end + 1;
  }
  return s;
}

// One problem: "file:line: `citation`: why".
struct Problem {
  std::string where;
  std::string citation;
  std::string why;
};

std::string to_string(const Problem& p) { return p.where + ": `" + p.citation + "`: " + p.why; }

// The result of checking one text.
struct CheckResult {
  int citations = 0;  // citations found
  int items = 0;      // sections and C-items checked (files not counted)
  std::vector<Problem> problems;
};

constexpr std::string_view kEnDash = "\xE2\x80\x93";  // "–"
constexpr std::string_view kSection = "\xC2\xA7";     // "§"

// A cursor over the stream of one text.
class Cursor {
 public:
  Cursor(std::string_view text, std::size_t pos) : t_(text), pos_(pos) {}

  std::size_t pos() const { return pos_; }
  void set(std::size_t p) { pos_ = p; }

  bool at(char c, std::size_t ahead = 0) const { return pos_ + ahead < t_.size() && t_[pos_ + ahead] == c; }
  bool at_digit(std::size_t ahead = 0) const { return pos_ + ahead < t_.size() && is_digit(t_[pos_ + ahead]); }
  bool at_word_char() const { return pos_ < t_.size() && is_word_char(t_[pos_]); }
  bool starts(std::string_view s, std::size_t ahead = 0) const {
    return pos_ + ahead <= t_.size() && t_.substr(pos_ + ahead).starts_with(s);
  }

  // s, consumed when present.
  bool take(std::string_view s) {
    if (!starts(s)) return false;
    pos_ += s.size();
    return true;
  }

  // The whole word w (not a prefix of a longer word), consumed when present.
  bool word(std::string_view w) {
    if (!starts(w) || (pos_ + w.size() < t_.size() && is_word_char(t_[pos_ + w.size()]))) return false;
    pos_ += w.size();
    return true;
  }

  // A range dash ("–" or "-"), consumed when present.
  bool dash() { return take(kEnDash) || take("-"); }

  // One or two label words after a section when a further section follows ("§1.6 dispatch, §1.7
  // fp8_gemm"), consumed with the comma; otherwise nothing is consumed.
  void skip_label() {
    const std::size_t b = pos_;
    for (int words = 0; words < 2 && at(' '); ++words) {
      const std::size_t w = ++pos_;
      while (at_word_char() || at('-')) ++pos_;
      if (pos_ == w) break;
      if (starts(std::string(", ") + std::string(kSection))) {
        ++pos_;
        return;
      }
    }
    pos_ = b;
  }

  void skip_spaces() {
    while (at(' ')) ++pos_;
  }

  // The separators before the next item; true when a list separator (, / and or) was among them.
  bool skip_separators() {
    bool list = false;
    for (;;) {
      if (take(" ") || take("(")) continue;
      if (take(",") || take("/") || word("and") || word("or")) {
        list = true;
        continue;
      }
      if (!(word("also") || word("including") || word("rule") || word("with"))) return list;
    }
  }

  // A section number "2.6.5" (digits and dots; a trailing dot is punctuation), or "".
  std::string number() {
    const std::size_t b = pos_;
    while (at_digit() || (at('.') && at_digit(1))) ++pos_;
    return std::string(t_.substr(b, pos_ - b));
  }

  // A non-negative integer (at most 4 digits), or -1.
  int integer() {
    if (!at_digit()) return -1;
    int v = 0;
    for (int n = 0; n < 4 && at_digit(); ++n) v = v * 10 + (t_[pos_++] - '0');
    return v;
  }

 private:
  std::string_view t_;
  std::size_t pos_;
};

// The leading integer of a section number ("2.10" → 2).
int first_component(const std::string& number) {
  int v = 0;
  for (std::size_t i = 0; i < number.size() && i < 4 && is_digit(number[i]); ++i) v = v * 10 + (number[i] - '0');
  return v;
}

// Checks every citation in one text. `where` names the text in messages (a path relative to the
// repository root).
CheckResult check_text(const SpecIndex& index, const std::string& where, std::string_view text) {
  CheckResult result;
  const Stream s = make_stream(text);
  const std::string_view t = s.text;
  for (std::size_t at = t.find("pec"); at != std::string_view::npos; at = t.find("pec", at + 1)) {
    // the anchor: "spec" or "Spec" as a word, spaces, a two-digit number not followed by a digit or ".digit"
    if (at == 0 || (t[at - 1] != 's' && t[at - 1] != 'S')) continue;
    const std::size_t start = at - 1;
    if (start > 0 && is_word_char(t[start - 1])) continue;
    Cursor c(t, at + 3);
    if (!c.at(' ')) continue;
    c.skip_spaces();
    if (!(c.at_digit() && c.at_digit(1)) || c.at_digit(2) || (c.at('.', 2) && c.at_digit(3))) continue;
    int spec = c.integer();
    ++result.citations;

    const std::string line = where + ":" + std::to_string(s.line_of(start));
    std::vector<std::string> why;
    auto file_exists = [&](int n) {
      if (index.file_names.count(n) != 0) return true;
      why.push_back("no file ref/spec/" + std::string(n < 10 ? "0" : "") + std::to_string(n) + "-*.md");
      return false;
    };
    auto section = [&](const std::string& number) {
      ++result.items;
      if (index.file_names.count(spec) == 0) return;  // reported once, where the number was read
      if (index.sections.at(spec).count(number) == 0)
        why.push_back("§" + number + " is not a heading of ref/spec/" + index.file_names.at(spec));
    };
    auto c_items = [&](int first, int last) {
      for (int item = first; item <= last; ++item) {
        ++result.items;
        if (index.c_items.count(item) == 0)
          why.push_back("C" + std::to_string(item) + " is not an item of spec 01 §1.11");
      }
    };
    // The far end of a section range after its first section: "–§1.5" or "–1.5".
    auto range_end = [&]() {
      const std::size_t after = c.pos();
      if (!c.dash()) return;
      c.take(kSection);
      const std::string last = c.number();
      if (last.empty()) return c.set(after);
      section(last);
    };

    file_exists(spec);
    for (;;) {
      const std::size_t before = c.pos();
      const bool list = c.skip_separators();
      if (c.take(kSection)) {  // §2.6, §1.3–§1.5, §1.3–1.5
        const std::string first = c.number();
        if (first.empty()) {
          c.set(before);
          break;
        }
        section(first);
        range_end();
        c.skip_label();
      } else if (c.at_digit() && c.at_digit(1) && c.starts(std::string(" ") + std::string(kSection), 2)) {
        spec = c.integer();  // "02 §2.6" inside the list: another spec file
        file_exists(spec);
      } else if (c.at('C') && c.at_digit(1)) {  // C8, C1–C3
        c.take("C");
        const int first = c.integer();
        int last = first;
        const std::size_t after = c.pos();
        if (c.dash()) {
          c.take("C");
          last = c.integer();
          if (last < first) {
            c.set(after);
            last = first;
          }
        }
        c_items(first, last);
      } else if (list && c.at_digit()) {  // a bare section number of this spec after a list separator
        const std::string first = c.number();
        if (first.find('.') == std::string::npos || first_component(first) != spec || c.at_word_char()) {
          c.set(before);
          break;
        }
        section(first);
        range_end();
      } else if (c.word("step") || c.word("steps") || c.word("item")) {  // not headings: skipped
        c.skip_spaces();
        if (c.integer() < 0) {
          c.set(before);
          break;
        }
        const std::size_t after = c.pos();
        if (c.dash() && c.integer() < 0) c.set(after);
        if (c.starts("'s")) break;
      } else {
        c.set(before);
        break;
      }
    }
    const std::string citation(t.substr(start, c.pos() - start));
    for (const std::string& w : why) result.problems.push_back({line, citation, w});
  }
  return result;
}

bool scanned_extension(const fs::path& p) {
  static const std::set<std::string> kExtensions = {".cpp", ".hpp", ".h", ".c", ".cu", ".cuh", ".md"};
  return kExtensions.count(p.extension().string()) != 0;
}

// The files the test scans, relative to the repository root, sorted.
std::vector<fs::path> scanned_files(const fs::path& root) {
  std::vector<fs::path> files = {"README.md", "BENCHMARKS.md"};
  for (const char* top : {"ref", "gpu", "oracle", "properties", "tests", "cli"}) {
    for (auto it = fs::recursive_directory_iterator(root / top); it != fs::recursive_directory_iterator(); ++it) {
      const fs::path rel = fs::relative(it->path(), root);
      if (it->is_directory()) {
        if (rel == fs::path("ref/spec") || it->path().filename() == "corpus") it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file() && scanned_extension(rel)) files.push_back(rel);
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

const fs::path kRoot = DSV4_SOURCE_DIR;

// The spec copy is complete: nine files, and the headings and items the code relies on.
TEST(SpecCitations, SpecFolderHasEveryFile) {
  const SpecIndex index = load_spec(kRoot / "ref/spec");
  for (int n = 0; n <= 8; ++n) EXPECT_EQ(index.file_names.count(n), 1u) << "spec " << n;
  EXPECT_TRUE(fs::exists(kRoot / "ref/spec/README.md"));
  EXPECT_EQ(index.c_items, (std::set<int>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(index.sections.at(2).count("2.6.5"), 1u);
  EXPECT_EQ(index.sections.at(1).count("1.11"), 1u);
}

// Every citation in the tree resolves.
TEST(SpecCitations, EveryCitationInTheTreeResolves) {
  const SpecIndex index = load_spec(kRoot / "ref/spec");
  int files = 0;
  int citations = 0;
  int items = 0;
  std::vector<Problem> problems;
  for (const fs::path& rel : scanned_files(kRoot)) {
    const CheckResult r = check_text(index, rel.generic_string(), read_file(kRoot / rel));
    ++files;
    citations += r.citations;
    items += r.items;
    problems.insert(problems.end(), r.problems.begin(), r.problems.end());
  }
  std::printf("spec citations: %d files scanned, %d citations, %d sections and C-items checked\n", files, citations,
              items);
  for (const Problem& p : problems) ADD_FAILURE() << to_string(p);
  // A scanner that finds nothing would pass vacuously; the tree has hundreds of citations.
  EXPECT_GE(citations, 300);
  EXPECT_GE(items, 300);
}

// Made-up texts. "SPEC" stands for the citation word, replaced at run time, so that this file's
// own source holds no citation that the tree scan would check.
std::string made_up(std::string text) {
  for (std::size_t at = text.find("SPEC"); at != std::string::npos; at = text.find("SPEC", at))
    text.replace(at, 4, "spec");
  return text;
}

std::vector<std::string> descriptions(const CheckResult& r) {
  std::vector<std::string> out;
  for (const Problem& p : r.problems) out.push_back(to_string(p));
  return out;
}

// Every form in use is understood: all of these resolve, and each item is counted.
TEST(SpecCitations, FormsInUseResolve) {
  const SpecIndex index = load_spec(kRoot / "ref/spec");
  struct Case {
    std::string text;
    int items;
  };
  const std::vector<Case> cases = {
      {"// SPEC 02 §2.6", 1},
      {"// SPEC 02 §2.6.5 (official Compressor.forward)", 1},
      {"// SPEC 01 §1.3–§1.5: the quantisers", 2},
      {"// SPEC 01 §1.1–1.2", 2},
      {"// SPEC 01 §1.11 C8 (official code)", 2},
      {"// SPEC 05 alone", 0},
      {"// Spec 08's Flash slope", 0},
      {"// SPEC 01 C1–C3", 3},
      {"// SPEC 01 §1.11 (C1, C2, C5, C6)", 5},
      {"// SPEC 01 §1.11, including C3: the", 2},
      {"// SPEC 01 §1.11 rule C1.", 2},
      {"// SPEC 02 §2.4, §2.5, §2.10, §2.11 (official code)", 4},
      {"// SPEC 02 §2.4–2.5, 2.10–2.11", 4},
      {"// SPEC 01 §1.4–§1.5, 02 §2.6 and §2.9, 04 §4.3", 5},
      {"// SPEC 02 §2.5 step 4 and §2.7 step 1", 2},
      {"// SPEC 04 §4.2 step 2 (also §4.5): r", 2},
      {"// SPEC 02 §2.6.4/§2.6.5: a prefill", 2},
      {"// SPEC 01 §1.4 / §1.5", 2},
      {"// SPEC 02 §2.11.2, steps 1–7.", 1},
      {"// SPEC 07 §7.4 item 6: applying", 1},
      {"// SPEC 03 §3.1 step 1 / SPEC 05 §5.4", 2},
      {"// the official format (keys, SPEC 00\n// §0.5.2) wraps", 1},
      {"// SPEC 08 §8.2: 7.88x Pro", 1},
      {"// Linear layers (SPEC 01 §1.6 dispatch, §1.7 fp8_gemm, §1.8 fp4_gemm).", 3},
      {"// (SPEC 02 §2.2 tables, §2.3 application)", 2},
      {"// SPEC 04 §4.3 with C1–C3) ----", 4},
      {"// SPEC 02 §2.6 compressor of every layer", 1},
  };
  for (const Case& c : cases) {
    const CheckResult r = check_text(index, "made_up.cpp", made_up(c.text));
    EXPECT_TRUE(r.problems.empty()) << c.text << "\n" << ::testing::PrintToString(descriptions(r));
    EXPECT_EQ(r.items, c.items) << c.text;
  }
}

// The check can fail: bad citations in a made-up text are reported with file:line and the citation.
TEST(SpecCitations, BadCitationsAreReported) {
  const SpecIndex index = load_spec(kRoot / "ref/spec");
  const std::string text = made_up(
      "// fine: SPEC 02 §2.6\n"
      "// SPEC 02 §2.99 does not exist\n"
      "// SPEC 09 §9.1 has no file\n"
      "// SPEC 01 C9 is no canonical item\n"
      "// SPEC 01 §1.4–§1.55, 02 §2.77\n"
      "// SPEC 03 §2.6: a section of another file\n");
  const CheckResult r = check_text(index, "made_up.cpp", text);
  EXPECT_EQ(r.citations, 6);
  std::vector<std::string> want = {
      "made_up.cpp:2: `SPEC 02 §2.99`: §2.99 is not a heading of ref/spec/02-attention.md",
      "made_up.cpp:3: `SPEC 09 §9.1`: no file ref/spec/09-*.md",
      "made_up.cpp:4: `SPEC 01 C9`: C9 is not an item of SPEC 01 §1.11",
      "made_up.cpp:5: `SPEC 01 §1.4–§1.55, 02 §2.77`: §1.55 is not a heading of ref/spec/01-numerics.md",
      "made_up.cpp:5: `SPEC 01 §1.4–§1.55, 02 §2.77`: §2.77 is not a heading of ref/spec/02-attention.md",
      "made_up.cpp:6: `SPEC 03 §2.6`: §2.6 is not a heading of ref/spec/03-moe.md",
  };
  for (std::string& w : want) w = made_up(w);
  EXPECT_EQ(descriptions(r), want);

  // A heading that goes missing from a spec file is reported at every citation of it.
  SpecIndex damaged = index;
  damaged.sections.at(2).erase("2.6.5");
  const CheckResult d = check_text(damaged, "x.hpp", made_up("/* SPEC 02 §2.6.5 */"));
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(to_string(d.problems[0]),
            made_up("x.hpp:1: `SPEC 02 §2.6.5`: §2.6.5 is not a heading of ref/spec/02-attention.md"));
}

}  // namespace
}  // namespace dsv4
