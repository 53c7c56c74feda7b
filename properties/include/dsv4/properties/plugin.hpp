// The host side of the foreign-kernel plugin ABI (plugin_abi.h): loading a plugin and fuzzing one
// of its components against the reference (`dsv4 fuzz --plugin lib.so --component NAME`). The
// comparison rules are stated in properties/README.md §Foreign kernels.
//
// Isolation (issue 14): a plugin never runs in dsv4's process. A Plugin is a child process (fork)
// that loads the library (dlopen, entry, table checks) and then serves the calls, one at a time,
// over a socket: the inputs go to the child, which runs the plugin's function on copies held in
// guarded memory (canary bands and inaccessible pages around every array; inputs compared after the
// call with the bytes sent) and
// sends the outputs back. The child has a memory limit (RLIMIT_AS) and every call (the load
// included) a wall-clock limit. A crash, a signal, an exit, a timeout or a write out of bounds
// ends the call with a PluginFault naming what happened; the next call starts a fresh child.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/properties/plugin_abi.h"
#include "dsv4/properties/registry.hpp"

namespace dsv4::props {

class Plugin;

// One component a plugin may provide: its one registration (properties/src/plugin_components.cpp)
// names it, says what is compared, which ABI table slot holds it and the property that fuzzes it.
struct PluginComponent {
  std::string name;         // the --component name, e.g. "act_quant" (the op registry's stem)
  std::string description;  // one line: what is compared and how
  bool (*provided_by)(const dsv4_plugin& table) = nullptr;  // the table's slot is non-null (run in the child)
  rc::detail::Property (*property)(Plugin& plugin) = nullptr;
};
// Every component of ABI version DSV4_PLUGIN_ABI_VERSION, in table order.
const std::vector<PluginComponent>& plugin_components();
// nullptr when unknown.
const PluginComponent* find_plugin_component(const std::string& name);

// A plugin that cannot be used: not a loadable shared library, no entry symbol, a null table, an
// ABI version or table size the host does not know (the message names which). Bad input.
class PluginLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The limits of the plugin's process.
struct PluginLimits {
  int timeout_ms = 10000;         // wall clock of one call (and of the load); > 0
  std::int64_t memory_mb = 4096;  // address space the process may add to what it holds at the start; 0 = no limit
};

// What ended a plugin call (or the load) without the protocol's reply, or damaged memory around it.
struct PluginFault {
  std::string stage;         // "load" or the component's name
  std::string kind;          // "signal", "exit", "timeout", "memory", "out_of_bounds", "protocol"
  std::string what;          // e.g. "killed by signal SIGSEGV (Segmentation fault): write past the end of output codes"
  std::string shape;         // the case's shape ("x [2, 64], block 32, scale ue8m0"); empty for the load
  std::string text() const;  // one line: stage, what happened, the case
};

// A fault as an exception (the load's, from Plugin's constructor; calls report theirs to the
// property as a failure of the case).
class PluginFaultError : public std::runtime_error {
 public:
  explicit PluginFaultError(PluginFault f) : std::runtime_error(f.text()), fault(std::move(f)) {}
  PluginFault fault;
};

// A plugin loaded in its own process.
class Plugin {
 public:
  // Starts the process and loads the plugin there. Throws PluginLoadError (bad input) or
  // PluginFaultError (the load crashed, exited, timed out, …).
  explicit Plugin(const std::string& path, PluginLimits limits = {});
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const std::string& path() const { return path_; }
  const PluginLimits& limits() const { return limits_; }
  std::string name() const;  // the table's name, or the file name when the table has none
  // Whether the table's function for `component` is non-null (false for unknown names).
  bool provides(const std::string& component) const;

  // The ABI's functions, each run in the plugin's process (arguments and sizes as in
  // plugin_abi.h). A fault throws PluginFaultError (after which the next call starts a fresh
  // process); otherwise the plugin's return code.
  int act_quant(const float* x, std::int64_t rows, std::int64_t cols, std::int32_t block, std::int32_t scale_format,
                std::uint8_t* codes, float* scales);
  int fp4_act_quant(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* packed, std::uint8_t* scales);
  int hc_split_sinkhorn(const float* mixes, std::int64_t tokens, std::int32_t n, const float* base, const float* scale,
                        std::int32_t iters, float eps, float* pre, float* post, float* comb);
  int sparse_attention(const float* q, std::int64_t m, std::int64_t h, std::int64_t c, const float* kv, std::int64_t n,
                       const float* sink, const std::int32_t* indices, std::int64_t k, float scale, float* out);
  int compressor_prefill(const float* x, std::int64_t s, std::int64_t d, std::int32_t ratio, std::int64_t head_dim,
                         std::int64_t rope_dim, std::int32_t rotate, float eps, const float* wkv, const float* wgate,
                         const float* ape, const float* norm, const float* cos, const float* sin, float* entries);

  // One call as the protocol carries it (the methods above build it).
  struct Call {
    int op = 0;  // index in plugin_components()
    std::vector<std::span<const std::byte>> in;
    std::vector<std::span<std::byte>> out;
    std::vector<std::int64_t> ints;
    std::vector<float> floats;
    std::string shape;
  };
  int call(const Call& c);

  // Counters: processes started (1 + restarts) and calls made.
  int processes_started() const { return started_; }
  std::int64_t calls() const { return calls_; }
  // Every fault so far, in order.
  const std::vector<PluginFault>& faults() const { return faults_; }
  // Inside a RapidCheck property (fuzz_plugin): once a call timed out, or once `restarts` fresh
  // processes were started after faults, later calls are discarded (RC_DISCARD) instead of made,
  // so that shrinking a fault never waits out the time limit twice and starts at most `restarts`
  // processes (a start is a fork + dlopen: milliseconds). restarts < 0: no limit.
  void limit_retries(bool on, int restarts = 32) {
    limit_retries_ = on;
    restart_budget_ = restarts;
    restarts_ = 0;
  }

 private:
  void start();                           // fork + load; throws PluginLoadError / PluginFaultError
  void stop();                            // kills and reaps the child, if any
  [[noreturn]] void fail(PluginFault f);  // stop(), throw PluginFaultError
  // Reaps the child after its end of the socket closed: what ended it (signal, exit status), then
  // `context` (the load's; empty for a call), then what its signal handler reported.
  PluginFault ended(const std::string& stage, const std::string& context);

  std::string path_;
  PluginLimits limits_;
  pid_t pid_ = -1;
  int fd_ = -1;  // the parent's end of the socket
  std::string name_;
  std::vector<bool> provided_;
  int started_ = 0;
  std::int64_t calls_ = 0;
  std::vector<PluginFault> faults_;
  bool timed_out_ = false;
  bool limit_retries_ = false;
  int restart_budget_ = -1;
  int restarts_ = 0;                               // processes started after a fault since limit_retries
  std::string current_key_;                        // the call being made (limit_retries only)
  std::map<std::string, PluginFault> fault_memo_;  // calls that faulted, by key
  std::string pending_detail_;                     // a fault record the child sent before dying: which array
  bool pending_enomem_ = false;                    // … and errno was ENOMEM then
};

// The result of fuzzing a plugin component: fault is set when the reported failure is a fault
// (crash, exit, timeout, memory, out of bounds) rather than wrong values.
struct PluginRunResult : RunResult {
  std::optional<PluginFault> fault;
};

// Fuzzes `component` of `plugin` against the reference with cfg's seed, runs and maximum size.
// Throws std::invalid_argument for an unknown component or one the plugin does not provide.
// A fault is a failure of its case (message: the component, what happened, the case's shape and
// the seed); a case that faults is shrunk like any failure (each retry in a fresh process),
// except after a timeout: from then on the plugin is not called again in this run.
PluginRunResult fuzz_plugin(Plugin& plugin, const std::string& component, const RunConfig& cfg);

}  // namespace dsv4::props
