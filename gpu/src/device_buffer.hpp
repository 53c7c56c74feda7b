// RAII device allocation for the host wrappers in gpu/src (private header).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda_check.hpp"

namespace dsv4::gpu::detail {

template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    if (count_ > 0) DSV4_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), count_ * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);  // never throws from a destructor
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }

  void upload(const T* host) {
    if (count_ > 0) DSV4_CUDA_CHECK(cudaMemcpy(ptr_, host, count_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host) const {
    if (count_ > 0) DSV4_CUDA_CHECK(cudaMemcpy(host, ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

// The host half of the precision contract (gpu/README.md): downloads a kernel's undecided flags
// (one byte a row) and calls recompute(i), the CPU reference of row i, for every flagged row i in
// ascending order; returns how many rows it recomputed.
template <class Recompute>
std::int64_t recompute_undecided(const DeviceBuffer<std::uint8_t>& flags, Recompute recompute) {
  std::vector<std::uint8_t> undecided(flags.size());
  flags.download(undecided.data());
  std::int64_t count = 0;
  for (std::size_t i = 0; i < undecided.size(); ++i) {
    if (undecided[i] == 0) continue;
    recompute(i);
    ++count;
  }
  return count;
}

}  // namespace dsv4::gpu::detail
