// Counter-based RNG: Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy as
// 1, 2, 3"). Element i of a synthetic tensor is a pure function of (seed, stream, i), so a tensor
// is reproducible whatever the thread count or the order in which elements are filled.
#pragma once

#include <array>
#include <cstdint>

namespace dsv4 {

using PhiloxCounter = std::array<std::uint32_t, 4>;
using PhiloxKey = std::array<std::uint32_t, 2>;

// The bijection itself: 10 rounds of Philox4x32 on a 128-bit counter under a 64-bit key.
PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key);

// Random numbers addressed by (seed, stream, index).
// - seed: the user's --seed; stream: a per-tensor id (e.g. a hash of the tensor's name);
// - index: the element's flat index. Counter = (index lo, index hi, stream lo, stream hi).
class CounterRng {
 public:
  CounterRng(std::uint64_t seed, std::uint64_t stream) : seed_(seed), stream_(stream) {}

  // Four independent 32-bit words for element `index`.
  PhiloxCounter words(std::uint64_t index) const;
  // Uniform on [0, 1) with 53 random bits (words 0 and 1).
  double uniform(std::uint64_t index) const;
  // Standard normal by Box–Muller on words 0..3 (std::log/cos are only used to *generate* data;
  // the generated values are then rounded to the tensor's dtype).
  double normal(std::uint64_t index) const;

 private:
  std::uint64_t seed_;
  std::uint64_t stream_;
};

// A stable 64-bit stream id for a name (FNV-1a), e.g. "layers.0.attn.wq_a.weight".
std::uint64_t stream_id(const char* name);

}  // namespace dsv4
