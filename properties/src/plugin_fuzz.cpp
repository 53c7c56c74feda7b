// fuzz_plugin (plugin.hpp): one component of a plugin (in its own process) against the reference.
#include <stdexcept>

#include "dsv4/properties/plugin.hpp"

namespace dsv4::props {

PluginRunResult fuzz_plugin(Plugin& plugin, const std::string& component, const RunConfig& cfg) {
  if (find_plugin_component(component) == nullptr) {
    throw std::invalid_argument("unknown component '" + component + "' (dsv4 fuzz --list names them)");
  }
  if (!plugin.provides(component)) {
    throw std::invalid_argument("plugin " + plugin.path() + " does not provide component '" + component + "'");
  }
  const rc::detail::Property prop = find_plugin_component(component)->property(plugin);
  const std::size_t faults_before = plugin.faults().size();
  plugin.limit_retries(true);
  PluginRunResult r;
  static_cast<RunResult&>(r) = run_rapidcheck(prop, "plugin." + component, cfg);
  plugin.limit_retries(false);
  // RC_FAIL's description starts with "<file>:<line>:\nRC_FAIL(<source text>)\n\n" before the
  // message: the plugin author needs the message only.
  const auto cut = r.message.find("RC_FAIL(");
  const auto body = r.message.find("\n\n", cut == std::string::npos ? 0 : cut);
  if (cut != std::string::npos && body != std::string::npos) r.message = r.message.substr(body + 2);
  // A fault reaches RapidCheck as an exception (PluginFaultError): the reported failure is the
  // fault whose text it carries (the last case shrunk to, which may also be a plain wrong answer).
  const std::string thrown = "Exception thrown with message:\n";
  if (!r.passed && r.message.rfind(thrown, 0) == 0) {
    const std::string text = r.message.substr(thrown.size());
    for (std::size_t i = plugin.faults().size(); i > faults_before; --i) {
      if (plugin.faults()[i - 1].text() != text) continue;
      r.fault = plugin.faults()[i - 1];
      r.message = text + " (seed " + std::to_string(cfg.seed) + ")";
      break;
    }
  }
  return r;
}

}  // namespace dsv4::props
