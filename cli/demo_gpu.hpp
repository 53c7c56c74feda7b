// `dsv4 demo` section 4: the GPU kernels against the CPU reference (cli/demo_gpu.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/selfcheck/formats_selfcheck.hpp"

namespace dsv4::cli {

// Each kernel's outputs on synthetic inputs against the reference, bit for bit. Empty, with
// `skipped_because` set, when the build has no CUDA kernels or no GPU is visible.
std::vector<SelfCheckLine> run_gpu_selfcheck(std::uint64_t seed, std::string& skipped_because);

// "NVIDIA H100 80GB HBM3 (sm_90)", "none", or "none (built without CUDA)".
std::string gpu_device_text();

}  // namespace dsv4::cli
