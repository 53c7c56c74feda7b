// The expert chain of expert.cu for the kernels built on it (private header of gpu/src): the MoE
// combine runs every (token, slot) pair's routed expert and the shared expert through it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "device_buffer.hpp"
#include "dsv4/gpu/linear.hpp"

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

// The intermediates of `rows` rows of the chain fed by `x_rows` rows of x: g, u, h [rows, de] and
// their undecided flags, the flags of y [rows, d]; the activation quantiser's codes and scales of
// the fp8 / fp4 weights' inputs (x: [x_rows, d], [x_rows, ⌈d/128⌉]; h: [rows, de], [rows, ⌈de/128⌉]),
// carved whatever the weights' kinds (so that a workspace's size depends on the shapes alone).
struct ExpertChainBuffers {
  float *g = nullptr, *u = nullptr, *h = nullptr;
  std::uint8_t *fg = nullptr, *fu = nullptr, *fh = nullptr, *fy = nullptr;
  std::uint8_t *x_codes = nullptr, *h_codes = nullptr;
  float *x_scales = nullptr, *h_scales = nullptr;
  ExpertChainBuffers(Carve& c, std::int64_t rows, std::int64_t x_rows, std::int64_t d, std::int64_t de);
};

// Throws std::invalid_argument (naming who and which) unless w is a [n, k] expert weight: kBF16, kFP8
// or kFP4 (an expert weight is never fp32, spec 03 §3.2; ref expert.cpp check_weight), its storage
// pointers given, k a multiple of 128 for fp8 / fp4 (the activation quantiser's block).
void check_expert_weight(const LinearWeightView& w, std::int64_t n, std::int64_t k, const char* who, const char* which);

// A weight's storage, `blocks` blocks stacked (stacked_block), copied to the device (the host forms).
class DeviceWeight {
 public:
  DeviceWeight(const LinearWeightView& host, std::int64_t blocks);
  const LinearWeightView& view() const { return view_; }

 private:
  DeviceBuffer<float> values_;
  DeviceBuffer<std::uint8_t> codes_, scales_;
  LinearWeightView view_;
};

// y [rows, d] = the expert on every row m: g = W1 x, u = W3 x (x row ⌊m / x_repeat⌋; weight block
// w_block[m] of the stacked w1, w3 ([de, d] blocks), w2 ([d, de] blocks), or block 0 when w_block is
// null), h = swiglu(g, u; λ = limit, route_weight[m] when given), y = W2 h — each linear by its
// weight's kind (linear_launch: the dense code, or act_quant + fp8_gemm / fp4_gemm with act_fmt), the
// swiglu kernel between them; asynchronous on `stream`. rows > 0; b carved for (rows, ⌈rows /
// x_repeat⌉, d, de).
void expert_chain(const float* x, std::int64_t rows, std::int64_t x_repeat, const std::int64_t* w_block,
                  std::int64_t de, const LinearWeightView& w1, const LinearWeightView& w3, const LinearWeightView& w2,
                  ScaleFormat act_fmt, const float* route_weight, float limit, float* y, const ExpertChainBuffers& b,
                  cudaStream_t stream);

// out[t] = OR of the flags of unit t (t < units) in the chain's buffers b: fg, fu, fh hold
// units × per rows of de flags, fy units × per rows of d flags (unit t: rows t·per..(t+1)·per − 1);
// accumulate: OR'd into out[t] instead of overwriting it. An integer OR: order-free.
void or_chain_flags(const ExpertChainBuffers& b, std::int64_t units, std::int64_t per, std::int64_t d, std::int64_t de,
                    std::uint8_t* out, bool accumulate, cudaStream_t stream);

}  // namespace dsv4::gpu::detail
