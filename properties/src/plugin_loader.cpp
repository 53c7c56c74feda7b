// Loading a foreign-kernel plugin (plugin.hpp); the components are listed in plugin_components.cpp.
#include <dlfcn.h>

#include <filesystem>

#include "dsv4/properties/plugin.hpp"

namespace dsv4::props {

const PluginComponent* find_plugin_component(const std::string& name) {
  for (const auto& c : plugin_components()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Plugin::Plugin(const std::string& path) : path_(path) {
  if (!std::filesystem::exists(path)) throw PluginLoadError(path + ": no such file");
  // A path without a slash would make dlopen search the library path instead of this file.
  const std::string open_path = path.find('/') == std::string::npos ? "./" + path : path;
  handle_ = ::dlopen(open_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* err = ::dlerror();
    throw PluginLoadError(path + ": not a loadable shared library (" + (err ? err : "dlopen failed") + ")");
  }
  void* sym = ::dlsym(handle_, DSV4_PLUGIN_ENTRY_SYMBOL);
  if (sym == nullptr) {
    ::dlclose(handle_);
    throw PluginLoadError(path + ": no symbol " DSV4_PLUGIN_ENTRY_SYMBOL " (not a dsv4 plugin?)");
  }
  auto entry = reinterpret_cast<dsv4_plugin_entry_fn>(sym);
  table_ = entry();
  if (table_ == nullptr) {
    ::dlclose(handle_);
    throw PluginLoadError(path + ": " DSV4_PLUGIN_ENTRY_SYMBOL "() returned a null table");
  }
  if (table_->abi_version != DSV4_PLUGIN_ABI_VERSION) {
    const unsigned v = table_->abi_version;
    ::dlclose(handle_);
    throw PluginLoadError(path + ": plugin ABI version " + std::to_string(v) + ", this dsv4 supports version " +
                          std::to_string(DSV4_PLUGIN_ABI_VERSION));
  }
  if (table_->struct_size < sizeof(dsv4_plugin)) {
    const unsigned sz = table_->struct_size;
    ::dlclose(handle_);
    throw PluginLoadError(path + ": plugin table has " + std::to_string(sz) + " bytes, ABI version " +
                          std::to_string(DSV4_PLUGIN_ABI_VERSION) + " needs " + std::to_string(sizeof(dsv4_plugin)));
  }
}

Plugin::~Plugin() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

std::string Plugin::name() const {
  if (table_->name != nullptr && table_->name[0] != '\0') return table_->name;
  return std::filesystem::path(path_).filename().string();
}

bool Plugin::provides(const std::string& component) const {
  const PluginComponent* c = find_plugin_component(component);
  return c != nullptr && c->provided_by(*table_);
}

}  // namespace dsv4::props
