// Result types of the block quantisers (spec 01 §1.4, §1.5), shared by the CPU reference
// (dsv4/numerics/quant.hpp) and the CUDA kernels (dsv4/gpu/quant.hpp). Plain C++17 on purpose:
// nvcc compiles the kernels as C++17.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4 {

// Storage of act_quant's scales: kFP32 = s = fl32(a × fl32(1/448)) unrounded; kUE8M0 = s rounded
// up to a power of two (round_scale, production).
enum class ScaleFormat { kFP32, kUE8M0 };

// act_quant's (values, scales) form.
struct Fp8Blocks {
  std::int64_t rows = 0, cols = 0;
  int block = 0;
  std::vector<std::uint8_t> values;  // e4m3fn codes, rows × cols
  std::vector<float> scales;         // rows × (cols / block), fp32 value of each scale
};

// fp4_act_quant's (packed values, scales) form.
struct Fp4Blocks {
  std::int64_t rows = 0, cols = 0;
  std::vector<std::uint8_t> packed;  // rows × cols/2, element 2j in the low nibble
  std::vector<std::uint8_t> scales;  // e8m0, rows × cols/32
};

}  // namespace dsv4
