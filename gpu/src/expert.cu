// MoE expert (spec 03 §3.2), bit-exact with the official-mode reference (ref/model/src/expert.cpp
// expert_forward) — see dsv4/gpu/expert.hpp. No arithmetic of its own: the linear kernel (linear.cu,
// by weight kind: the dense code, or act_quant then fp8_gemm / fp4_gemm) for W1, W3 and W2 and the
// swiglu kernel (swiglu.cu) between them, launched in order on one stream (each launch reads what
// the previous one wrote: stream order is the only synchronisation needed; W3's act_quant rewrites
// W1's identical codes of x after W1's GEMM has read them); then an integer OR of each row's
// undecided flags.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "device_buffer.hpp"
#include "dsv4/gpu/expert.hpp"
#include "dsv4/gpu/swiglu.hpp"
#include "expert_chain.hpp"
#include "linear_dense.hpp"
#include "moe_reference.hpp"

namespace dsv4::gpu {
namespace detail {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;

// One block per unit t (grid-stride over units; the loop is block-uniform, so every thread reaches
// the barrier of __syncthreads_or): the OR of the unit's de-wide flags (fg, fu, fh: n_de bytes from
// t·n_de) and d-wide flags (fy: n_d bytes from t·n_d); thread 0 writes out[t] after the barrier.
__global__ void __launch_bounds__(kThreads)
    or_flags_kernel(const std::uint8_t* __restrict__ fg, const std::uint8_t* __restrict__ fu,
                    const std::uint8_t* __restrict__ fh, const std::uint8_t* __restrict__ fy, std::int64_t units,
                    std::int64_t n_de, std::int64_t n_d, std::uint8_t* out, bool accumulate) {
  for (std::int64_t t = blockIdx.x; t < units; t += gridDim.x) {
    int any = 0;
    for (std::int64_t i = threadIdx.x; i < n_de; i += kThreads) {
      const std::int64_t at = t * n_de + i;
      any |= fg[at] | fu[at] | fh[at];
    }
    for (std::int64_t i = threadIdx.x; i < n_d; i += kThreads) any |= fy[t * n_d + i];
    const int all = __syncthreads_or(any);
    if (threadIdx.x == 0) out[t] = (all != 0 || (accumulate && out[t] != 0)) ? 1 : 0;
  }
}

}  // namespace

ExpertChainBuffers::ExpertChainBuffers(Carve& c, std::int64_t rows, std::int64_t x_rows, std::int64_t d,
                                       std::int64_t de) {
  const std::size_t n = static_cast<std::size_t>(rows * de);
  g = c.take<float>(n);
  u = c.take<float>(n);
  h = c.take<float>(n);
  fg = c.take<std::uint8_t>(n);
  fu = c.take<std::uint8_t>(n);
  fh = c.take<std::uint8_t>(n);
  fy = c.take<std::uint8_t>(static_cast<std::size_t>(rows * d));
  x_codes = c.take<std::uint8_t>(static_cast<std::size_t>(x_rows * d));
  x_scales = c.take<float>(static_cast<std::size_t>(x_rows * ((d + 127) / 128)));
  h_codes = c.take<std::uint8_t>(n);
  h_scales = c.take<float>(static_cast<std::size_t>(rows * ((de + 127) / 128)));
}

void check_expert_weight(const LinearWeightView& w, std::int64_t n, std::int64_t k, const char* who,
                         const char* which) {
  const std::string f = std::string(who) + ": " + which;
  const int kind = static_cast<int>(w.kind);
  if (kind < 0 || kind > 3 || w.kind == LinearKind::kFP32) {
    throw std::invalid_argument(f + ": an expert weight is bf16, fp8 or fp4 (kind " + std::to_string(kind) + ")");
  }
  if (w.out_features != n || w.in_features != k) {
    throw std::invalid_argument(f + ": shape [" + std::to_string(w.out_features) + ", " +
                                std::to_string(w.in_features) + "], expected [" + std::to_string(n) + ", " +
                                std::to_string(k) + "]");
  }
  const bool quantised = w.kind != LinearKind::kBF16;
  if (quantised && k % 128 != 0) {
    throw std::invalid_argument(f + ": in_features " + std::to_string(k) +
                                " is not a multiple of the activation quantisation block 128");
  }
  if (quantised ? (w.codes == nullptr || w.scales == nullptr) : w.values == nullptr) {
    throw std::invalid_argument(f + ": its storage is null");
  }
}

DeviceWeight::DeviceWeight(const LinearWeightView& host, std::int64_t blocks)
    : values_(linear_weight_sizes(host).values * static_cast<std::size_t>(blocks)),
      codes_(linear_weight_sizes(host).codes * static_cast<std::size_t>(blocks)),
      scales_(linear_weight_sizes(host).scales * static_cast<std::size_t>(blocks)),
      view_(host) {
  if (values_.size() > 0) values_.upload(host.values);
  if (codes_.size() > 0) codes_.upload(host.codes);
  if (scales_.size() > 0) scales_.upload(host.scales);
  view_.values = values_.get();
  view_.codes = codes_.get();
  view_.scales = scales_.get();
}

void expert_chain(const float* x, std::int64_t rows, std::int64_t x_repeat, const std::int64_t* w_block,
                  std::int64_t de, const LinearWeightView& w1, const LinearWeightView& w3, const LinearWeightView& w2,
                  ScaleFormat act_fmt, const float* route_weight, float limit, float* y, const ExpertChainBuffers& b,
                  cudaStream_t stream) {
  linear_launch(x, rows, x_repeat, w1, w_block, act_fmt, b.g, b.fg, b.x_codes, b.x_scales, stream);
  linear_launch(x, rows, x_repeat, w3, w_block, act_fmt, b.u, b.fu, b.x_codes, b.x_scales, stream);
  clamped_swiglu_device(b.g, b.u, rows, de, limit, route_weight, b.h, b.fh, stream);
  linear_launch(b.h, rows, 1, w2, w_block, act_fmt, y, b.fy, b.h_codes, b.h_scales, stream);
}

void or_chain_flags(const ExpertChainBuffers& b, std::int64_t units, std::int64_t per, std::int64_t d, std::int64_t de,
                    std::uint8_t* out, bool accumulate, cudaStream_t stream) {
  if (units == 0) return;
  const unsigned grid = static_cast<unsigned>(std::min(units, kMaxGrid));
  or_flags_kernel<<<grid, kThreads, 0, stream>>>(b.fg, b.fu, b.fh, b.fy, units, per * de, per * d, out, accumulate);
  DSV4_CUDA_CHECK_LAUNCH("or_flags_kernel");
}

}  // namespace detail

namespace {

constexpr std::int64_t kMaxDim = std::int64_t{1} << 24;

void check_args(const float* x, std::int64_t tokens, const ExpertWeightsView& w, const char* who) {
  const std::string f(who);
  if (tokens < 0) throw std::invalid_argument(f + ": tokens = " + std::to_string(tokens) + " < 0");
  if (w.dim < 1 || w.dim > kMaxDim || w.inter < 1 || w.inter > kMaxDim) {
    throw std::invalid_argument(f + ": dim and inter must be in [1, 2^24]");
  }
  if (w.act_fmt != ScaleFormat::kUE8M0 && w.act_fmt != ScaleFormat::kFP32) {
    throw std::invalid_argument(f + ": unknown activation scale format");
  }
  detail::check_expert_weight(w.w1, w.inter, w.dim, who, "w1");
  detail::check_expert_weight(w.w3, w.inter, w.dim, who, "w3");
  detail::check_expert_weight(w.w2, w.dim, w.inter, who, "w2");
  if (tokens > 0 && x == nullptr) throw std::invalid_argument(f + ": x is null");
}

}  // namespace

std::size_t expert_workspace_bytes(std::int64_t tokens, std::int64_t dim, std::int64_t inter) {
  detail::Carve c(nullptr);
  detail::ExpertChainBuffers b(c, tokens, tokens, dim, inter);
  return c.used();
}

void expert_device(const float* x, std::int64_t tokens, const ExpertWeightsView& w, float limit,
                   const float* route_weight, float* y, std::uint8_t* undecided, void* workspace, void* stream) {
  check_args(x, tokens, w, "expert_device");
  if (tokens > 0 && (y == nullptr || undecided == nullptr || workspace == nullptr)) {
    throw std::invalid_argument("expert_device: y, undecided and the workspace must be given");
  }
  if (tokens == 0) return;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  detail::Carve c(workspace);
  const detail::ExpertChainBuffers b(c, tokens, tokens, w.dim, w.inter);
  detail::expert_chain(x, tokens, 1, nullptr, w.inter, w.w1, w.w3, w.w2, w.act_fmt, route_weight, limit, y, b, s);
  detail::or_chain_flags(b, tokens, 1, w.dim, w.inter, undecided, false, s);
}

ExpertBatch expert(const float* x, std::int64_t tokens, const ExpertWeightsView& w, double limit,
                   const float* route_weight) {
  check_args(x, tokens, w, "expert");
  const std::size_t T = static_cast<std::size_t>(tokens), D = static_cast<std::size_t>(w.dim);
  ExpertBatch out;
  out.y.resize(T * D);
  if (tokens == 0) return out;
  detail::DeviceBuffer<float> d_x(T * D), d_rw(route_weight != nullptr ? T : 0), d_y(T * D);
  detail::DeviceBuffer<std::uint8_t> d_undecided(T), d_ws(expert_workspace_bytes(tokens, w.dim, w.inter));
  const detail::DeviceWeight d_w1(w.w1, 1), d_w3(w.w3, 1), d_w2(w.w2, 1);
  d_x.upload(x);
  if (route_weight != nullptr) d_rw.upload(route_weight);
  ExpertWeightsView dw = w;
  dw.w1 = d_w1.view();
  dw.w3 = d_w3.view();
  dw.w2 = d_w2.view();
  expert_device(d_x.get(), tokens, dw, static_cast<float>(limit), route_weight != nullptr ? d_rw.get() : nullptr,
                d_y.get(), d_undecided.get(), d_ws.get(), nullptr);
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  d_y.download(out.y.data());
  std::vector<std::int64_t> rows;
  out.recomputed =
      detail::recompute_undecided(d_undecided, [&](std::size_t t) { rows.push_back(static_cast<std::int64_t>(t)); });
  detail::expert_reference_rows(x, rows, w, limit, route_weight, out.y.data());
  return out;
}

}  // namespace dsv4::gpu
