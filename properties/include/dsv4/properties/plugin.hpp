// The host side of the foreign-kernel plugin ABI (plugin_abi.h): loading a plugin and fuzzing one
// of its components against the reference (`dsv4 fuzz --plugin lib.so --component NAME`). The
// comparison rules are stated in properties/README.md §Foreign kernels.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/properties/plugin_abi.h"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {

// One component a plugin may provide: its one registration (properties/src/plugin_components.cpp)
// names it, says what is compared, which ABI table slot holds it and the property that fuzzes it.
struct PluginComponent {
  std::string name;         // the --component name, e.g. "act_quant" (the op registry's stem)
  std::string description;  // one line: what is compared and how
  bool (*provided_by)(const dsv4_plugin& table) = nullptr;  // the table's slot is non-null
  rc::detail::Property (*property)(const dsv4_plugin& table) = nullptr;
};
// Every component of ABI version DSV4_PLUGIN_ABI_VERSION, in table order.
const std::vector<PluginComponent>& plugin_components();
// nullptr when unknown.
const PluginComponent* find_plugin_component(const std::string& name);

// A plugin that cannot be used: not a loadable shared library, no entry symbol, a null table, an
// ABI version or table size the host does not know (the message names which).
class PluginLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A loaded plugin (dlopen with RTLD_NOW | RTLD_LOCAL; dlclose on destruction).
class Plugin {
 public:
  explicit Plugin(const std::string& path);  // throws PluginLoadError
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const std::string& path() const { return path_; }
  std::string name() const;  // the table's name, or the file name when the table has none
  const dsv4_plugin& table() const { return *table_; }
  // Whether the table's function for `component` is non-null (false for unknown names).
  bool provides(const std::string& component) const;

 private:
  std::string path_;
  void* handle_ = nullptr;
  const dsv4_plugin* table_ = nullptr;
};

// Fuzzes `component` of `plugin` against the reference with cfg's seed, runs and maximum size.
// Throws std::invalid_argument for an unknown component or one the plugin does not provide.
RunResult fuzz_plugin(const Plugin& plugin, const std::string& component, const RunConfig& cfg);

}  // namespace dsv4::props
