// `dsv4 fuzz`: run one registered property (properties/, issue 6) or fuzz one component of a
// foreign-kernel plugin (properties/include/dsv4/properties/plugin_abi.h) against the reference.
// Exit 0 passed, 1 a counterexample was found, 2 bad input (one line on stderr).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "dsv4/properties/plugin.hpp"
#include "dsv4/properties/registry.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kFooter = R"(
Examples:
  dsv4 fuzz --list
  dsv4 fuzz --property quant.act_quant_idempotent --runs 100000
  dsv4 fuzz --property formats.monotone --seed 42 --runs 500 --max-size 50
  dsv4 fuzz --plugin ./libmykernels.so --component sparse_attention --runs 2000

A property draws random inputs (RapidCheck) and checks a stated law on each; on a failure the
input is shrunk to a small counterexample, which is printed with the exact command that
reproduces it: the same --seed, --runs and --max-size give the same cases. Without --seed a fresh
seed is drawn and printed. --runs defaults to the property's CI run count (shown by --list).

--plugin loads a shared library through the dsv4 plugin C ABI (properties/README.md, header
dsv4/properties/plugin_abi.h), draws inputs for --component, runs the plugin and the reference
(exact and official mode) and compares: bit for bit for the quantisers, and for float outputs
|plugin - exact| <= 2 max|official - exact| + a noise floor (README §Foreign kernels).
The plugin runs in its own process (loaded there; one process serves the cases, a fresh one
after a failure), under a wall-clock limit per call (--timeout-ms, default 10000, the load
included) and a memory limit (--memory-mb: address space beyond what the process starts with,
default 4096; 0 = none, e.g. for a CUDA plugin, which reserves large address ranges). Its arrays
are guarded: canary bands and inaccessible pages around every array, inputs checked unchanged.
A crash or signal, an exit, a timeout, a failed allocation over the limit or a write outside an
output is a FAIL of that case naming the component, what happened and the case (shape and seed).

Progress goes to stderr every --progress seconds (default 5) while a run lasts.
--json prints one JSON object on stdout instead of the text report.

Exit status: 0 every case ran and passed; 1 a counterexample was found, the plugin returned an
error, crashed, exited, timed out or wrote out of bounds (in its load too); 2 bad input — one line
on stderr starting "dsv4 fuzz: error:" (unknown property or component, a plugin that cannot be
loaded, its ABI version or a missing symbol).)";

struct FuzzArgs {
  bool list = false;
  bool json = false;
  std::string property, plugin, component;
  int runs = 0;
  std::uint64_t seed = 0;
  int max_size = 100;
  double progress = 5.0;
  int timeout_ms = 10000;
  std::int64_t memory_mb = 4096;
  CLI::Option* runs_opt = nullptr;
  CLI::Option* seed_opt = nullptr;
  CLI::Option* max_size_opt = nullptr;
};

class BadInput : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A word for the shell: quoted when it holds anything but [A-Za-z0-9_./=+-].
std::string shell_word(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/' || c == '=' || c == '+' ||
           c == '-';
  });
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

props::PluginLimits limits_of(const FuzzArgs& a) {
  if (a.timeout_ms < 1) throw BadInput("--timeout-ms must be at least 1, got " + std::to_string(a.timeout_ms));
  if (a.memory_mb < 0)
    throw BadInput("--memory-mb must be at least 0 (0: no limit), got " + std::to_string(a.memory_mb));
  return {a.timeout_ms, a.memory_mb};
}

// The plugin in its process; a library that cannot be used is bad input (a load that crashes,
// exits or hangs throws PluginFaultError: a failure).
std::unique_ptr<props::Plugin> load_plugin(const FuzzArgs& a) {
  try {
    return std::make_unique<props::Plugin>(a.plugin, limits_of(a));
  } catch (const props::PluginLoadError& e) {
    throw BadInput(e.what());
  }
}

nlohmann::ordered_json fault_json(const props::PluginFault& f) {
  return {{"stage", f.stage}, {"kind", f.kind}, {"what", f.what}, {"shape", f.shape}};
}

void print_list(const FuzzArgs& a) {
  const auto& props = props::registry().all();
  const auto& comps = props::plugin_components();
  std::unique_ptr<props::Plugin> plugin;
  if (!a.plugin.empty()) plugin = load_plugin(a);
  if (a.json) {
    nlohmann::ordered_json j;
    j["properties"] = nlohmann::ordered_json::array();
    for (const auto& p : props) {
      j["properties"].push_back({{"name", p.name},
                                 {"component", p.component},
                                 {"description", p.description},
                                 {"default_runs", p.default_runs},
                                 {"source", "properties/" + p.source + "_props.cpp"}});
    }
    j["plugin_abi_version"] = DSV4_PLUGIN_ABI_VERSION;
    j["plugin_components"] = nlohmann::ordered_json::array();
    for (const auto& c : comps) {
      nlohmann::ordered_json e = {{"name", c.name}, {"description", c.description}};
      if (plugin) e["provided"] = plugin->provides(c.name);
      j["plugin_components"].push_back(e);
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::size_t w = 8;
  for (const auto& p : props) w = std::max(w, p.name.size());
  std::printf("%-*s  %6s  %s\n", static_cast<int>(w), "property", "runs", "description");
  for (const auto& p : props) {
    std::printf("%-*s  %6d  %s\n", static_cast<int>(w), p.name.c_str(), p.default_runs, p.description.c_str());
  }
  std::printf("\nplugin components (ABI version %u; dsv4 fuzz --plugin LIB --component NAME):\n",
              DSV4_PLUGIN_ABI_VERSION);
  std::size_t cw = 9;
  for (const auto& c : comps) cw = std::max(cw, c.name.size());
  for (const auto& c : comps) {
    const char* mark = !plugin ? "" : (plugin->provides(c.name) ? "[provided] " : "[missing]  ");
    std::printf("%-*s  %s%s\n", static_cast<int>(cw), c.name.c_str(), mark, c.description.c_str());
  }
}

// Progress lines on stderr, at most one per `interval` seconds, starting after the first interval.
struct Progress {
  std::string label;
  int total = 0;
  double interval = 5.0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double next = 0;
  void operator()(int done) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (next == 0) next = interval;
    if (t < next) return;
    next = t + interval;
    const double rate = t > 0 ? done / t : 0.0;
    const double left = rate > 0 ? (total - done) / rate : 0.0;
    std::fprintf(stderr, "dsv4 fuzz: %s: %d/%d runs, %.1f s, %.0f runs/s, ~%.0f s left\n", label.c_str(), done, total,
                 t, rate, left);
  }
};

int run_fuzz(const FuzzArgs& a) {
  const bool have_property = !a.property.empty();
  const bool have_plugin = !a.plugin.empty();
  if (a.list) {
    if (have_property || !a.component.empty()) throw BadInput("--list takes no --property or --component");
    try {
      print_list(a);
    } catch (const props::PluginFaultError& e) {  // the plugin's load crashed, exited or hung
      if (a.json) {
        nlohmann::ordered_json j = {{"plugin", a.plugin}, {"passed", false}, {"message", e.what()}};
        j["fault"] = fault_json(e.fault);
        std::printf("%s\n", j.dump(2).c_str());
      } else {
        std::printf("FAIL %s: %s\n", a.plugin.c_str(), e.what());
      }
      return 1;
    }
    return 0;
  }
  if (have_property && (have_plugin || !a.component.empty())) {
    throw BadInput("--property and --plugin/--component are exclusive");
  }
  if (!have_property && !have_plugin) {
    if (!a.component.empty()) throw BadInput("--component needs --plugin LIB");
    throw BadInput("give --property NAME or --plugin LIB --component NAME (dsv4 fuzz --list names them)");
  }
  if (a.runs_opt->count() > 0 && a.runs < 1) throw BadInput("--runs must be at least 1, got " + std::to_string(a.runs));
  if (a.max_size < 0) throw BadInput("--max-size must be at least 0, got " + std::to_string(a.max_size));
  if (!(a.progress > 0)) throw BadInput("--progress must be positive");

  props::RunConfig cfg;
  cfg.seed = a.seed_opt->count() > 0 ? a.seed : static_cast<std::uint64_t>(std::random_device{}());
  cfg.max_size = a.max_size;
  std::string label, reproduce;
  const props::Property* prop = nullptr;
  std::unique_ptr<props::Plugin> plugin;
  std::optional<props::PluginFault> load_fault;  // the plugin's load crashed, exited or hung
  if (have_property) {
    prop = props::registry().find(a.property);
    if (prop == nullptr) throw BadInput("unknown property '" + a.property + "' (dsv4 fuzz --list names them)");
    cfg.runs = a.runs_opt->count() > 0 ? a.runs : prop->default_runs;
    label = prop->name;
    reproduce = "dsv4 fuzz --property " + prop->name;
  } else {
    if (a.component.empty()) throw BadInput("--plugin needs --component NAME (dsv4 fuzz --list names them)");
    if (props::find_plugin_component(a.component) == nullptr) {
      throw BadInput("unknown component '" + a.component + "' (dsv4 fuzz --list names them)");
    }
    try {
      plugin = load_plugin(a);
    } catch (const props::PluginFaultError& e) {
      load_fault = e.fault;
    }
    if (plugin && !plugin->provides(a.component)) {
      throw BadInput("plugin " + a.plugin + " does not provide component '" + a.component + "'");
    }
    cfg.runs = a.runs_opt->count() > 0 ? a.runs : 100;
    label = (plugin ? plugin->name() : std::filesystem::path(a.plugin).filename().string()) + ":" + a.component;
    reproduce = "dsv4 fuzz --plugin " + shell_word(a.plugin) + " --component " + a.component;
  }
  reproduce += " --runs " + std::to_string(cfg.runs) + " --seed " + std::to_string(cfg.seed) + " --max-size " +
               std::to_string(cfg.max_size);
  if (have_plugin && a.timeout_ms != FuzzArgs{}.timeout_ms)
    reproduce += " --timeout-ms " + std::to_string(a.timeout_ms);
  if (have_plugin && a.memory_mb != FuzzArgs{}.memory_mb) reproduce += " --memory-mb " + std::to_string(a.memory_mb);

  Progress progress{label, cfg.runs, a.progress};
  cfg.progress = [&progress](int done) { progress(done); };
  if (!a.json) {
    std::printf("%s: seed %llu, %d runs, max size %d\n", label.c_str(), static_cast<unsigned long long>(cfg.seed),
                cfg.runs, cfg.max_size);
    std::fflush(stdout);
  }
  const auto t0 = std::chrono::steady_clock::now();
  props::PluginRunResult r;
  try {
    if (load_fault) {
      r.fault = load_fault;
      r.message = load_fault->text();
    } else if (prop != nullptr) {
      static_cast<props::RunResult&>(r) = prop->run(cfg);
    } else {
      r = props::fuzz_plugin(*plugin, a.component, cfg);
    }
  } catch (const std::exception& e) {  // a property or the reference refused its own input: a bug here
    r.passed = false;
    r.message = std::string("exception: ") + e.what();
  }
  if (r.passed && r.runs_done < cfg.runs) {  // never PASS unless every case ran
    r.passed = false;
    r.message = "only " + std::to_string(r.runs_done) + " of " + std::to_string(cfg.runs) + " cases ran";
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double rate = secs > 0 ? r.runs_done / secs : 0.0;

  if (a.json) {
    nlohmann::ordered_json j = {{"name", label},
                                {"kind", prop != nullptr ? "property" : "plugin"},
                                {"seed", cfg.seed},
                                {"runs", cfg.runs},
                                {"max_size", cfg.max_size},
                                {"passed", r.passed},
                                {"runs_done", r.runs_done},
                                {"discarded", r.discarded},
                                {"seconds", secs},
                                {"runs_per_second", rate},
                                {"message", r.message},
                                {"counterexample", r.counterexample},
                                {"reproduce", reproduce}};
    if (have_plugin) {
      j["plugin"] = a.plugin;
      j["component"] = a.component;
      j["timeout_ms"] = a.timeout_ms;
      j["memory_mb"] = a.memory_mb;
      j["fault"] = r.fault ? fault_json(*r.fault) : nlohmann::ordered_json();
      if (plugin) j["processes_started"] = plugin->processes_started();
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else if (r.passed) {
    std::printf("PASS %s: %d runs in %.2f s (%.0f runs/s)\n", label.c_str(), r.runs_done, secs, rate);
  } else {
    std::printf("FAIL %s after %d passing runs (%.2f s)\n", label.c_str(), r.runs_done, secs);
    std::printf("%s\n", r.message.c_str());
    if (!r.counterexample.empty()) {
      std::printf("counterexample (shrunk):\n");
      std::string line;
      for (char c : r.counterexample) {
        if (c == '\n') {
          std::printf("  %s\n", line.c_str());
          line.clear();
        } else {
          line += c;
        }
      }
      if (!line.empty()) std::printf("  %s\n", line.c_str());
    }
    std::printf("reproduce: %s\n", reproduce.c_str());
  }
  return r.passed ? 0 : 1;
}

}  // namespace

void register_fuzz(CLI::App& app) {
  auto args = std::make_shared<FuzzArgs>();
  auto* cmd = app.add_subcommand(
      "fuzz", "Run a property of the reference, or fuzz a foreign kernel (plugin) against the reference");
  cmd->add_flag("--list", args->list, "Name every property and every plugin component");
  cmd->add_option("--property", args->property, "The property to run (see --list)");
  cmd->add_option("--plugin", args->plugin, "A shared library implementing the dsv4 plugin C ABI");
  cmd->add_option("--component", args->component, "The plugin component to fuzz (see --list)");
  args->runs_opt = cmd->add_option("--runs", args->runs, "Cases to run (default: the property's CI count; 100)");
  args->seed_opt = cmd->add_option("--seed", args->seed, "RapidCheck seed (default: a fresh one, printed)");
  args->max_size_opt = cmd->add_option("--max-size", args->max_size, "Largest RapidCheck size (default 100)");
  cmd->add_option("--progress", args->progress, "Seconds between progress lines on stderr (default 5)");
  cmd->add_option("--timeout-ms", args->timeout_ms,
                  "Plugin: wall-clock limit of each call, the load included (default 10000)");
  cmd->add_option("--memory-mb", args->memory_mb,
                  "Plugin: address space its process may add, in MiB (default 4096; 0 = no limit)");
  cmd->add_flag("--json", args->json, "Print the result as one JSON object");
  cmd->footer(kFooter);
  cmd->callback([args]() {
    try {
      set_exit_code(run_fuzz(*args));
    } catch (const std::exception& e) {
      std::string msg = e.what();
      std::replace(msg.begin(), msg.end(), '\n', ' ');  // always one line
      std::fprintf(stderr, "dsv4 fuzz: error: %s\n", msg.c_str());
      set_exit_code(2);
    }
  });
}

}  // namespace dsv4::cli
