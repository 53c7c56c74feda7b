// The one glob of the oracle's name patterns (certify --require, golden verify --recompute-only).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv4 {

// Whether `text` matches `pattern`, where '*' matches any run of characters ('/' and '.' included)
// and every other character itself.
bool glob_match(std::string_view pattern, std::string_view text);

// The items of a comma-separated list, each trimmed of spaces ("a, b" → {"a", "b"}; an empty item
// stays: "a,,b" → {"a", "", "b"}, for the caller to refuse).
std::vector<std::string> split_pattern_list(const std::string& text);

// A selection of modules by comma-separated selectors [STEP/]MODULE, each a glob ('*': any run of
// characters) — golden verify --recompute-only and golden generate --exact-layers. A canonical
// output <step>/<module path>/<output> is selected when its step matches STEP (every step when
// absent) and its module path matches MODULE or lies inside a module that does: "layers.3" selects
// every module of layer 3 (layers.3.hc_attn, layers.3.attn.indexer, …, layers.3 itself),
// "prefill/layers.*.ffn" the gates and MoE combines of every layer in the prefill, "layers.1,head"
// those modules in every step.
struct ModuleSelection {
  struct Selector {
    std::string step;  // glob; empty: every step
    std::string module;
    std::string text;  // as given
  };
  std::vector<Selector> selectors;
  std::string text;  // as given
};
// InputError naming `option` for an empty selector or one with more than one '/'.
ModuleSelection parse_module_selection(const std::string& text, const std::string& option);
bool module_selects(const ModuleSelection::Selector& s, const std::string& canonical);
// Whether any selector of `sel` selects the canonical output name.
bool module_selection_selects(const ModuleSelection& sel, const std::string& canonical);

}  // namespace dsv4
