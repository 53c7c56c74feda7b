// The expert chain of expert.cu for the kernels built on it (private header of gpu/src): the MoE
// combine runs every (token, slot) pair's routed expert and the shared expert through it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace dsv4::gpu::detail {

// A bump allocator over one workspace: take<T>(n) returns the next n elements, 256-byte aligned;
// with a null base it only counts (used() is then the workspace's size).
class Carve {
 public:
  explicit Carve(void* base) : base_(static_cast<unsigned char*>(base)) {}
  template <class T>
  T* take(std::size_t n) {
    T* p = base_ != nullptr ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += (n * sizeof(T) + 255) / 256 * 256;
    return p;
  }
  std::size_t used() const { return used_; }

 private:
  unsigned char* base_;
  std::size_t used_ = 0;
};

// The intermediates of `rows` rows of the chain: g, u, h [rows, de] and their undecided flags, the
// flags of y [rows, d].
struct ExpertChainBuffers {
  float *g = nullptr, *u = nullptr, *h = nullptr;
  std::uint8_t *fg = nullptr, *fu = nullptr, *fh = nullptr, *fy = nullptr;
  ExpertChainBuffers(Carve& c, std::int64_t rows, std::int64_t d, std::int64_t de);
};

// y [rows, d] = the expert on every row m: g = W1 x, u = W3 x (x row ⌊m / x_repeat⌋; weight block
// w_block[m] of the stacked w1, w3 [blocks·de, d], w2 [blocks·d, de], or block 0 when w_block is
// null), h = swiglu(g, u; λ = limit, route_weight[m] when given), y = W2 h — the linear kernel's
// dense code and the swiglu kernel, asynchronous on `stream`. rows > 0.
void expert_chain(const float* x, std::int64_t rows, std::int64_t x_repeat, const std::int64_t* w_block, std::int64_t d,
                  std::int64_t de, const float* w1, const float* w3, const float* w2, const float* route_weight,
                  float limit, float* y, const ExpertChainBuffers& b, cudaStream_t stream);

// out[t] = OR of the flags of unit t (t < units) in the chain's buffers b: fg, fu, fh hold
// units × per rows of de flags, fy units × per rows of d flags (unit t: rows t·per..(t+1)·per − 1);
// accumulate: OR'd into out[t] instead of overwriting it. An integer OR: order-free.
void or_chain_flags(const ExpertChainBuffers& b, std::int64_t units, std::int64_t per, std::int64_t d, std::int64_t de,
                    std::uint8_t* out, bool accumulate, cudaStream_t stream);

}  // namespace dsv4::gpu::detail
