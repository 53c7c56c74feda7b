// Device copies of resident weights (dsv4/gpu/resident.hpp).
#include <cuda_runtime.h>

#include <memory>

#include "cuda_check.hpp"
#include "dsv4/gpu/resident.hpp"

namespace dsv4::gpu {

std::shared_ptr<const void> device_copy(const void* host, std::size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&p, bytes));
  std::shared_ptr<const void> owner(p, [](const void* q) { (void)cudaFree(const_cast<void*>(q)); });
  DSV4_CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  return owner;
}

}  // namespace dsv4::gpu
