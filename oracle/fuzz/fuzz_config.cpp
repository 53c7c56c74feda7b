// libFuzzer harness: any bytes as a config.json (ref/config parse_config_json: the official
// ModelArgs keys, strict). Only ConfigError may escape (a refused config); a config it accepts must
// pass its own validation again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "dsv4/config/model_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const dsv4::ModelConfig c = dsv4::parse_config_json(text, "fuzz.json");
    dsv4::validate_config(c);  // accepted once, accepted again
  } catch (const dsv4::ConfigError&) {
  }
  return 0;
}
