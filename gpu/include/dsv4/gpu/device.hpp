// GPU presence and error handling. Tests call gpu_available() and skip cleanly when it is false.
#pragma once

#include <stdexcept>
#include <string>

namespace dsv4::gpu {

// Number of CUDA devices usable by this process (0 when no driver or no GPU).
int device_count();
inline bool gpu_available() { return device_count() > 0; }
// "NVIDIA H100 80GB HBM3 (sm_90)" or "none".
std::string device_description();

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace dsv4::gpu
