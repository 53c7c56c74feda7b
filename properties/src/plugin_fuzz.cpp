// fuzz_plugin (plugin.hpp): one component of a loaded plugin against the reference.
#include <stdexcept>

#include "dsv4/properties/plugin.hpp"

namespace dsv4::props {

RunResult fuzz_plugin(const Plugin& plugin, const std::string& component, const RunConfig& cfg) {
  if (find_plugin_component(component) == nullptr) {
    throw std::invalid_argument("unknown component '" + component + "' (dsv4 fuzz --list names them)");
  }
  if (!plugin.provides(component)) {
    throw std::invalid_argument("plugin " + plugin.path() + " does not provide component '" + component + "'");
  }
  const rc::detail::Property prop = find_plugin_component(component)->property(plugin.table());
  RunResult r = run_rapidcheck(prop, "plugin." + component, cfg);
  // RC_FAIL's description starts with "<file>:<line>:\nRC_FAIL(<source text>)\n\n" before the
  // message: the plugin author needs the message only.
  const auto cut = r.message.find("RC_FAIL(");
  const auto body = r.message.find("\n\n", cut == std::string::npos ? 0 : cut);
  if (cut != std::string::npos && body != std::string::npos) r.message = r.message.substr(body + 2);
  return r;
}

}  // namespace dsv4::props
