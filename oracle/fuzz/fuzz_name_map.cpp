// libFuzzer harness: any bytes as a name-map file (`--map M.json`, oracle/io name_map.hpp), then
// the map applied to a few names (canonical, foreign, long). Only InputError may escape.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/io/name_map.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static const std::vector<std::string> names = {
      "prefill/layers.0.attn/out", "model.layers.0.self_attn.o_proj", "blk.3.attn_out", "decode1/head/out",
      std::string(5000, 'a'),  // over the pattern-matching limit
  };
  try {
    const dsv4::NameMap m = dsv4::parse_name_map(text, "fuzz.json");
    for (const bool keep : {true, false}) {
      try {
        (void)dsv4::apply_name_map(m, names, "fuzz", {.keep_unmapped = keep, .strict = !keep});
      } catch (const dsv4::InputError&) {
      }
    }
  } catch (const dsv4::InputError&) {
  }
  return 0;
}
