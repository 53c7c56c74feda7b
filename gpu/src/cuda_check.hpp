// Error checking for CUDA runtime calls inside gpu/src (private header). Every failing call throws
// dsv4::gpu::CudaError naming the call, the error and the source location.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "dsv4/gpu/device.hpp"

namespace dsv4::gpu::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  throw CudaError(std::string(what) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") at " +
                  file + ":" + std::to_string(line));
}

}  // namespace dsv4::gpu::detail

// DSV4_CUDA_CHECK(cudaMalloc(&p, n)); throws CudaError when the call does not return cudaSuccess.
#define DSV4_CUDA_CHECK(call)                                                           \
  do {                                                                                  \
    const cudaError_t dsv4_cuda_err_ = (call);                                          \
    if (dsv4_cuda_err_ != cudaSuccess)                                                  \
      ::dsv4::gpu::detail::throw_cuda_error(dsv4_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: DSV4_CUDA_CHECK_LAUNCH("act_quant_kernel").
#define DSV4_CUDA_CHECK_LAUNCH(name)                                                                \
  do {                                                                                              \
    const cudaError_t dsv4_cuda_err_ = cudaGetLastError();                                          \
    if (dsv4_cuda_err_ != cudaSuccess)                                                              \
      ::dsv4::gpu::detail::throw_cuda_error(dsv4_cuda_err_, "launch of " name, __FILE__, __LINE__); \
  } while (0)
