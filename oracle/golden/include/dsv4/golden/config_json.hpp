// A ModelConfig as config.json text in the official inference format (ModelArgs keys, spec 00
// §0.5.2) — what goldens and dumps store so the run can be repeated: parse_config_json of the text
// gives back the same configuration (tested field by field).
#pragma once

#include <string>

#include "dsv4/config/model_config.hpp"

namespace dsv4 {

// Compact JSON with the keys in a fixed order (so the same config always gives the same bytes);
// `name` is stored as "dsv4_name" (not a ModelArgs key, ignored when read back).
std::string config_to_json(const ModelConfig& c);

// True when every field that affects the forward is equal (the name is ignored).
bool same_model(const ModelConfig& a, const ModelConfig& b);

}  // namespace dsv4
