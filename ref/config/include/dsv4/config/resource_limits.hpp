// Resource limits of a whole-model run (issue 14 item 3, spec 00 §0.5.4): an estimate of the peak
// memory of `dsv4 run` / `dsv4 golden generate` from the config and the run's size, checked against
// the machine's available memory before any work, so that a config or a length too large for the
// machine is refused with a message naming the estimate and what to lower — not a bad_alloc or the
// kernel's OOM killer minutes later.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "dsv4/config/model_config.hpp"

namespace dsv4 {

// A run too large for the machine: bad input (exit 2), the message names the estimate and what to lower.
class ResourceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MemoryEstimate {
  double weights = 0;  // bytes: every parameter as the model holds it, and its published copy while hashed
  double caches = 0;   // KV caches and compressor/indexer state of every layer and sequence
  double outputs = 0;  // recorded module outputs of every step
  double working = 0;  // the largest transient of one module call
  double total() const { return weights + caches + outputs + working; }
  // "what to lower": the largest term's knobs, in words.
  std::string largest_term() const;
};

// Peak bytes of a run of `batch` sequences of `tokens` tokens each (prompt + decode steps), in
// `modes` precision modes one after the other (golden generate: 2, holding two copies of the
// weights while the first runs).
MemoryEstimate estimate_run_memory(const ModelConfig& c, std::int64_t batch, std::int64_t tokens, int modes);

// MemAvailable of /proc/meminfo in bytes (nullopt where it cannot be read). The environment
// variable DSV4_MEMORY_LIMIT (bytes) replaces it when set — for tests and for sharing a machine.
std::optional<double> available_memory_bytes();

// "1.5 GB", "730 MB", "12 kB" (decimal units).
std::string human_bytes(double bytes);

// Throws ResourceError naming the estimate, the available memory and what to lower
// when the estimate exceeds the available memory. `what` names the run ("dsv4 run of 2 × 300 tokens").
void check_memory(const MemoryEstimate& e, const std::string& what);

}  // namespace dsv4
