// What the whole-model certification suites (catalogue_verdicts_test, certify_variants_test) set up
// once per suite: a temporary directory of their own and goldens of the synthetic weights in it.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/golden.hpp"

namespace dsv4::testing_support {

// dsv4_<tag>_<pid> in the system's temporary directory, created.
inline std::filesystem::path suite_temp_dir(const std::string& tag) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dsv4_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

// The golden of `c` on the synthetic weights of `seed` for `tokens` (per sequence the prompt, then
// the token of each of the `decode_steps` decode steps), written uncompressed to `path`.
inline void generate_synthetic_golden(const ModelConfig& c, std::uint64_t seed,
                                      const std::vector<std::vector<std::int64_t>>& tokens, std::int64_t decode_steps,
                                      const std::string& path) {
  GoldenGenerateOptions o;
  o.config = c;
  o.weights = WeightsSpec{seed, ""};
  o.tokens = tokens;
  o.decode_steps = decode_steps;
  o.deflate = 0;
  generate_golden(o, path);
}

}  // namespace dsv4::testing_support
