// dsv4 — the DeepSeek-V4 reference oracle command-line tool.
// main.cpp only wires subcommands; each lives in cmd_<name>.cpp and registers itself here.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <string>

#include "commands.hpp"
#include "dsv4/golden/cli_guard.hpp"

namespace {

// Numbers on the command line are read strictly (issue 14 item 5): CLI11 itself wraps "-1" into an
// unsigned option (2^64 - 1), saturates "18446744073709551616", reads "010" as octal and "0x10" as
// hex. Every integer option takes plain decimal digits (a leading '-' only where the type is
// signed) within its type's range; every float option a finite number. Applied to every option of
// every subcommand, so commands added later get it too.
std::string strict_number(const std::string& text, const std::string& type) {
  const bool is_unsigned = type == "UINT", is_signed = type == "INT";
  if (is_unsigned || is_signed) {
    const char* b = text.data();
    const char* e = b + text.size();
    const char* digits = (is_signed && b != e && *b == '-') ? b + 1 : b;
    if (digits == e) return "'" + text + "' is not a decimal integer";
    for (const char* p = digits; p != e; ++p)
      if (*p < '0' || *p > '9') return "'" + text + "' is not a decimal integer";
    if (*digits == '0' && e - digits > 1) return "'" + text + "': no leading zeros (octal is not read)";
    std::from_chars_result r{};
    if (is_unsigned) {
      std::uint64_t v = 0;
      r = std::from_chars(b, e, v);
    } else {
      std::int64_t v = 0;
      r = std::from_chars(b, e, v);
    }
    if (r.ec == std::errc::result_out_of_range || r.ptr != e)
      return "'" + text + "' is outside the range of a " + (is_unsigned ? "64-bit unsigned" : "64-bit signed") +
             " integer";
    return "";
  }
  if (type == "FLOAT") {
    double v = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec != std::errc() || r.ptr != text.data() + text.size() || !std::isfinite(v))
      return "'" + text + "' is not a finite number";
  }
  return "";
}

void strict_numbers(CLI::App& app) {
  for (CLI::Option* o : app.get_options()) {
    const std::string type = o->get_type_name();
    if (type != "UINT" && type != "INT" && type != "FLOAT") continue;
    o->check(CLI::Validator([type](std::string& text) { return strict_number(text, type); }, ""));
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) strict_numbers(*sub);
}

}  // namespace
#include "dsv4/config/version.hpp"

int main(int argc, char** argv) {
  // Keep freed blocks up to 32 MiB (glibc's maximum) in the heap and never trim it: certify and
  // run allocate and free a tensor-sized buffer per module, and fresh mmap'd pages cost a page
  // fault each (certify of a 260 MB candidate: 2.3 -> 0.7 CPU-seconds; BENCHMARKS.md). Memory
  // policy only: no result depends on it.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  CLI::App app{
      "dsv4 — deterministic reference simulator and test oracle for the DeepSeek-V4 architecture.\n"
      "Run `dsv4 <command> --help` for a command's usage. Exit codes: 0 success, 1 a check failed,\n"
      "2 bad input (a message on stderr names the problem), 3 internal error (a bug in dsv4: please report it)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dsv4 ") + dsv4::kDsv4Version);
  dsv4::cli::register_all(app);
  strict_numbers(app);
  dsv4::set_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (...) {  // a command body that is not guarded itself: same contract (2 bad input, 3 internal)
    return dsv4::report_current_exception(argc > 1 ? argv[1] : "");
  }
  return dsv4::cli::exit_code();
}
