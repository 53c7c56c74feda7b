// GPU act_quant / fp4_act_quant (gpu/src/quant.cu) against the CPU reference (ref/numerics), bit for
// bit: fp8 codes, scales, packed fp4 codes, e8m0 scales and the in-place quant-dequant outputs.
// Plus batch invariance: a row's bits are the same alone, in a batch of 1000 rows, at another row
// offset, and through the device-pointer API at an offset pointer.
//
// Without a CUDA device every GPU test skips (CI has none); the argument checks run anyway (they
// never reach CUDA).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/quant.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/numerics/quant.hpp"

namespace {

using dsv4::CounterRng;

// ---- test inputs: bf16 values, a mix of block kinds (see make_input) ----

double e4m3_value(std::uint8_t code) { return dsv4::e4m3_to_float(code); }

// Rows × cols bf16 values (stored as float). Each 128-element segment of the flat array has a kind;
// each 32-element sub-segment draws its own magnitude, so fp4 blocks (32) and fp8 blocks (64, 128)
// both see every kind and wide dynamic ranges inside one block:
//  0 all zero (signed zeros)           1 around the 1e-4 amax floor     2 bf16 subnormals (+ tiny normals)
//  3 one huge outlier in small values  4 e4m3 ties at scale 2^k         5 e2m1 ties at scale 2^k
//  6.. random normals × 2^e, e per 32-element sub-segment in [-60, 60] (kinds 6-11) or [-120, 120] (12-15)
std::vector<float> make_input(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  const CounterRng rng(seed, dsv4::stream_id("gpu_quant_test.values"));
  const CounterRng meta(seed, dsv4::stream_id("gpu_quant_test.kinds"));
  std::vector<float> x(n);
  for (std::size_t g = 0; g < n / 32; ++g) {
    const auto seg = meta.words(g / 4);                         // per 128-element segment
    const auto sub = meta.words((std::uint64_t{1} << 40) + g);  // per 32-element sub-segment
    const int kind = static_cast<int>(seg[0] % 16);
    const int k = static_cast<int>(seg[1] % 121) - 20;  // tie scale exponent: 448·2^k stays above the 1e-4 floor
    for (std::size_t j = 0; j < 32; ++j) {
      const std::size_t i = g * 32 + j;
      const auto w = rng.words(i);
      const double sign = (w[3] & 1u) != 0 ? -1.0 : 1.0;
      double v = 0;
      switch (kind) {
        case 0:
          v = sign * 0.0;
          break;
        case 1:
          v = rng.normal(i) * 1e-4 * std::ldexp(1.0, static_cast<int>(sub[0] % 5) - 3);
          break;
        case 2:
          v = (sub[0] % 3 == 0) ? sign * std::ldexp(1.0 + (w[0] % 128) / 128.0, -126 + static_cast<int>(w[1] % 7))
                                : sign * std::ldexp(static_cast<double>(1 + w[0] % 127), -133);
          break;
        case 3: {
          v = rng.normal(i) * std::ldexp(1.0, static_cast<int>(sub[0] % 21) - 10);
          const std::uint32_t at = seg[2] % 128;  // the outlier's position in the segment
          if (g % 4 == at / 32 && j == at % 32)
            v = sign * std::ldexp(1.0 + (w[0] % 256) / 256.0, 60 + static_cast<int>(seg[3] % 67));
          break;
        }
        case 4: {  // anchor ±448·2^k makes s = 2^k for every fp8 block; the rest are e4m3 midpoints
          if (j == 0) {
            v = sign * 448.0 * std::ldexp(1.0, k);
          } else if (w[1] % 8 == 0) {  // the subnormal boundary cases of spec 01 §1.2
            static constexpr double kEdge[] = {0x1p-10, 0x1p-11, 0.9375 * 0x1p-6, 0x1.8p-10, 0x1p-9};
            v = sign * kEdge[w[2] % 5] * std::ldexp(1.0, k);
          } else {
            const std::uint8_t c = static_cast<std::uint8_t>(w[0] % 0x7E);  // 0 .. 0x7D: next code exists
            const double mid = 0.5 * (e4m3_value(c) + e4m3_value(static_cast<std::uint8_t>(c + 1)));
            v = sign * ((w[2] & 1u) != 0 ? mid : e4m3_value(c)) * std::ldexp(1.0, k);
          }
          break;
        }
        case 5: {  // anchor ±6·2^k makes s = 2^k for every fp4 block; the rest are e2m1 points and midpoints
          static constexpr double kFp4Points[] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.5,
                                                  1.0,  1.5,  2.0,  3.0,  4.0, 6.0, 0.0, 0.125};
          v = sign * (j == 0 ? 6.0 : kFp4Points[w[0] % 16]) * std::ldexp(1.0, k);
          break;
        }
        default: {
          const int range = kind < 12 ? 60 : 120;
          const int e = static_cast<int>(sub[0] % (2 * range + 1)) - range;
          v = rng.normal(i) * std::ldexp(1.0, e + static_cast<int>(w[1] % 9) - 4);
          break;
        }
      }
      x[i] = dsv4::round_bf16(v);
    }
  }
  return x;
}

// ---- bitwise comparison with a readable first mismatch ----

std::string hex_float(float f) {
  std::ostringstream os;
  os << std::hexfloat << f << " (0x" << std::hex << dsv4::float_bits(f) << ")";
  return os.str();
}

::testing::AssertionResult same_floats(const std::vector<float>& gpu, const std::vector<float>& ref,
                                       const std::vector<float>& input, std::int64_t group) {
  if (gpu.size() != ref.size()) return ::testing::AssertionFailure() << "size " << gpu.size() << " vs " << ref.size();
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    if (dsv4::float_bits(gpu[i]) != dsv4::float_bits(ref[i])) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  auto r = ::testing::AssertionFailure();
  r << bad << " of " << gpu.size() << " differ; first at " << first << ": gpu " << hex_float(gpu[first]) << ", ref "
    << hex_float(ref[first]);
  if (!input.empty()) {
    const std::size_t in_at = group > 0 ? first * static_cast<std::size_t>(group) : first;
    r << ", input[" << in_at << "] " << hex_float(input[in_at]);
  }
  return r;
}

::testing::AssertionResult same_bytes(const std::vector<std::uint8_t>& gpu, const std::vector<std::uint8_t>& ref,
                                      const std::vector<float>& input, std::size_t elems_per_byte) {
  if (gpu.size() != ref.size()) return ::testing::AssertionFailure() << "size " << gpu.size() << " vs " << ref.size();
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    if (gpu[i] != ref[i]) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  auto r = ::testing::AssertionFailure();
  char buf[64];
  std::snprintf(buf, sizeof buf, "gpu 0x%02x, ref 0x%02x", gpu[first], ref[first]);
  r << bad << " of " << gpu.size() << " bytes differ; first at " << first << ": " << buf;
  const std::size_t in_at = first * elems_per_byte;
  if (in_at < input.size()) r << ", input[" << in_at << "] " << hex_float(input[in_at]);
  return r;
}

const char* format_name(dsv4::gpu::ScaleFormat f) { return f == dsv4::gpu::ScaleFormat::kUE8M0 ? "ue8m0" : "fp32"; }

struct Shape {
  std::int64_t rows, cols;
};
// Row lengths of the model (7168 = hidden, 448 = KV nope dims, 512 = KV dims, 128 = indexer head)
// and odd ones; row counts from 1 to 1000.
const std::vector<Shape> kShapes = {{1, 32},   {1, 128},   {3, 448},    {5, 64},   {7, 512},
                                    {2, 1536}, {64, 7168}, {1000, 256}, {33, 480}, {17, 4096}};

class GpuQuant : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!dsv4::gpu::gpu_available()) GTEST_SKIP() << "no CUDA device (dsv4::gpu::gpu_available() is false)";
    static bool printed = false;
    if (!printed) {
      std::printf("GPU: %s\n", dsv4::gpu::device_description().c_str());
      printed = true;
    }
  }
};

// ---- spec 01 §1.4 ----

TEST_F(GpuQuant, ActQuantMatchesReferenceBitForBit) {
  std::uint64_t seed = 1000;
  for (const int block : {128, 64}) {
    for (const auto fmt : {dsv4::gpu::ScaleFormat::kUE8M0, dsv4::gpu::ScaleFormat::kFP32}) {
      for (const Shape& sh : kShapes) {
        if (sh.cols % block != 0) continue;
        SCOPED_TRACE(::testing::Message()
                     << "block " << block << ", " << format_name(fmt) << ", " << sh.rows << "x" << sh.cols);
        const std::vector<float> x = make_input(sh.rows, sh.cols, ++seed);
        const dsv4::Fp8Blocks ref = dsv4::act_quant(x, sh.cols, block, fmt);
        const dsv4::gpu::Fp8Blocks got = dsv4::gpu::act_quant(x, sh.cols, block, fmt);
        EXPECT_EQ(got.rows, ref.rows);
        EXPECT_EQ(got.cols, ref.cols);
        EXPECT_EQ(got.block, ref.block);
        EXPECT_TRUE(same_bytes(got.values, ref.values, x, 1)) << "fp8 codes";
        EXPECT_TRUE(same_floats(got.scales, ref.scales, {}, 0)) << "scales";

        std::vector<float> ref_inplace = x;
        dsv4::act_quant_inplace(std::span<float>(ref_inplace), sh.cols, block, fmt);
        std::vector<float> got_inplace = x;
        dsv4::gpu::act_quant_inplace(got_inplace, sh.cols, block, fmt);
        EXPECT_TRUE(same_floats(got_inplace, ref_inplace, x, 1)) << "in-place outputs";
      }
    }
  }
}

// The e8m0 scale output of the device API: byte = biased exponent of the power-of-two scale.
TEST_F(GpuQuant, ActQuantDeviceE8m0ScalesMatchReference) {
  const std::int64_t rows = 37, cols = 7168;
  const std::vector<float> x = make_input(rows, cols, 77);
  const dsv4::Fp8Blocks ref = dsv4::act_quant(x, cols, 128, dsv4::ScaleFormat::kUE8M0);
  const std::size_t n = x.size(), nb = n / 128;
  float* dx = nullptr;
  std::uint8_t* dq = nullptr;
  std::uint8_t* ds = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dq, n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, nb), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  dsv4::gpu::act_quant_device(dx, rows, cols, 128, dsv4::gpu::ScaleFormat::kUE8M0, dq, nullptr, ds);
  std::vector<std::uint8_t> q(n), s(nb);
  ASSERT_EQ(cudaMemcpy(q.data(), dq, n, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(s.data(), ds, nb, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dx);
  cudaFree(dq);
  cudaFree(ds);
  std::vector<std::uint8_t> ref_e8m0(nb);
  for (std::size_t b = 0; b < nb; ++b) ref_e8m0[b] = static_cast<std::uint8_t>(dsv4::float_bits(ref.scales[b]) >> 23);
  EXPECT_TRUE(same_bytes(q, ref.values, x, 1));
  EXPECT_TRUE(same_bytes(s, ref_e8m0, x, 128));
}

// ---- spec 01 §1.5 ----

TEST_F(GpuQuant, Fp4ActQuantMatchesReferenceBitForBit) {
  std::uint64_t seed = 2000;
  for (const Shape& sh : kShapes) {
    SCOPED_TRACE(::testing::Message() << sh.rows << "x" << sh.cols);
    const std::vector<float> x = make_input(sh.rows, sh.cols, ++seed);
    const dsv4::Fp4Blocks ref = dsv4::fp4_act_quant(x, sh.cols);
    const dsv4::gpu::Fp4Blocks got = dsv4::gpu::fp4_act_quant(x, sh.cols);
    EXPECT_EQ(got.rows, ref.rows);
    EXPECT_EQ(got.cols, ref.cols);
    EXPECT_TRUE(same_bytes(got.packed, ref.packed, x, 2)) << "packed fp4 codes";
    EXPECT_TRUE(same_bytes(got.scales, ref.scales, x, 32)) << "e8m0 scales";

    std::vector<float> ref_inplace = x;
    dsv4::fp4_act_quant_inplace(std::span<float>(ref_inplace), sh.cols);
    std::vector<float> got_inplace = x;
    dsv4::gpu::fp4_act_quant_inplace(got_inplace, sh.cols);
    EXPECT_TRUE(same_floats(got_inplace, ref_inplace, x, 1)) << "in-place outputs";
  }
}

// The inputs really cover the cases they are meant to (guards the generator, not the kernels).
TEST(GpuQuantInputs, CoverFlushClampAndSubnormals) {
  const std::int64_t rows = 1000, cols = 512;
  const std::vector<float> x = make_input(rows, cols, 5);
  const dsv4::Fp8Blocks ref = dsv4::act_quant(x, cols, 128, dsv4::ScaleFormat::kUE8M0);
  std::size_t floor_blocks = 0, zero_codes_of_nonzero = 0, subnormal_inputs = 0;
  for (const float s : ref.scales) floor_blocks += s == 0x1p-22f ? 1 : 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    zero_codes_of_nonzero += (x[i] != 0 && (ref.values[i] & 0x7F) == 0) ? 1 : 0;
    subnormal_inputs += std::fpclassify(x[i]) == FP_SUBNORMAL ? 1 : 0;
  }
  EXPECT_GT(floor_blocks, 100u);
  EXPECT_GT(zero_codes_of_nonzero, 1000u);
  EXPECT_GT(subnormal_inputs, 1000u);
}

// ---- batch invariance ----

// One quantiser form: runs on rows × cols inputs, returns each row's output bytes.
struct Form {
  std::string name;
  int block;
  std::function<std::vector<std::string>(const std::vector<float>&, std::int64_t)> run;
};

template <class T>
std::string row_bytes(const std::vector<T>& v, std::int64_t row, std::int64_t per_row) {
  std::string s(static_cast<std::size_t>(per_row) * sizeof(T), '\0');
  std::memcpy(s.data(), v.data() + row * per_row, s.size());
  return s;
}

std::vector<Form> all_forms() {
  std::vector<Form> forms;
  for (const int block : {128, 64}) {
    for (const auto fmt : {dsv4::gpu::ScaleFormat::kUE8M0, dsv4::gpu::ScaleFormat::kFP32}) {
      const std::string tag = "act_quant B=" + std::to_string(block) + " " + format_name(fmt);
      forms.push_back({tag, block, [block, fmt](const std::vector<float>& x, std::int64_t cols) {
                         const auto r = dsv4::gpu::act_quant(x, cols, block, fmt);
                         std::vector<std::string> rows(static_cast<std::size_t>(r.rows));
                         for (std::int64_t i = 0; i < r.rows; ++i)
                           rows[i] = row_bytes(r.values, i, cols) + row_bytes(r.scales, i, cols / block);
                         return rows;
                       }});
      forms.push_back({tag + " inplace", block, [block, fmt](const std::vector<float>& x, std::int64_t cols) {
                         std::vector<float> y = x;
                         dsv4::gpu::act_quant_inplace(y, cols, block, fmt);
                         std::vector<std::string> rows(y.size() / static_cast<std::size_t>(cols));
                         for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = row_bytes(y, i, cols);
                         return rows;
                       }});
    }
  }
  forms.push_back({"fp4_act_quant", 32, [](const std::vector<float>& x, std::int64_t cols) {
                     const auto r = dsv4::gpu::fp4_act_quant(x, cols);
                     std::vector<std::string> rows(static_cast<std::size_t>(r.rows));
                     for (std::int64_t i = 0; i < r.rows; ++i)
                       rows[i] = row_bytes(r.packed, i, cols / 2) + row_bytes(r.scales, i, cols / 32);
                     return rows;
                   }});
  forms.push_back({"fp4_act_quant inplace", 32, [](const std::vector<float>& x, std::int64_t cols) {
                     std::vector<float> y = x;
                     dsv4::gpu::fp4_act_quant_inplace(y, cols);
                     std::vector<std::string> rows(y.size() / static_cast<std::size_t>(cols));
                     for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = row_bytes(y, i, cols);
                     return rows;
                   }});
  return forms;
}

std::vector<float> rows_of(const std::vector<float>& x, std::int64_t cols, std::int64_t first, std::int64_t count) {
  return std::vector<float>(x.begin() + first * cols, x.begin() + (first + count) * cols);
}

TEST_F(GpuQuant, RowBitsIndependentOfBatchAndOffset) {
  const std::int64_t rows = 1000, cols = 512, pad = 537;
  const std::vector<float> batch_in = make_input(rows, cols, 31);
  const std::vector<float> other = make_input(pad, cols, 32);
  // The same 1000 rows behind 537 unrelated rows: batch of 1537, every row at another offset.
  std::vector<float> shifted_in = other;
  shifted_in.insert(shifted_in.end(), batch_in.begin(), batch_in.end());
  for (const Form& form : all_forms()) {
    SCOPED_TRACE(form.name);
    const std::vector<std::string> batch = form.run(batch_in, cols);
    const std::vector<std::string> shifted = form.run(shifted_in, cols);
    ASSERT_EQ(batch.size(), static_cast<std::size_t>(rows));
    ASSERT_EQ(shifted.size(), static_cast<std::size_t>(rows + pad));
    std::size_t differ = 0;
    for (std::int64_t r = 0; r < rows; ++r) differ += batch[r] != shifted[pad + r] ? 1 : 0;
    EXPECT_EQ(differ, 0u) << "rows whose bits change at row offset +" << pad << " in a batch of " << rows + pad;
    for (const std::int64_t r :
         {std::int64_t{0}, std::int64_t{1}, std::int64_t{499}, std::int64_t{998}, std::int64_t{999}}) {
      const std::vector<std::string> alone = form.run(rows_of(batch_in, cols, r, 1), cols);
      ASSERT_EQ(alone.size(), 1u);
      EXPECT_EQ(alone[0], batch[r]) << "row " << r << " alone vs in the batch of " << rows;
    }
  }
}

// Device API at an offset pointer (row r of a resident batch, processed as a batch of one).
TEST_F(GpuQuant, DeviceApiAtRowOffsetMatchesBatch) {
  const std::int64_t rows = 1000, cols = 512;
  const std::vector<float> x = make_input(rows, cols, 41);
  const std::size_t n = x.size();
  float* dx = nullptr;
  std::uint8_t* dq = nullptr;
  std::uint8_t* ds = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, n * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dq, n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&ds, n / 32), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  const auto fp8 = dsv4::gpu::act_quant(x, cols, 128, dsv4::gpu::ScaleFormat::kUE8M0);
  const auto fp4 = dsv4::gpu::fp4_act_quant(x, cols);
  for (const std::int64_t r : {std::int64_t{0}, std::int64_t{123}, std::int64_t{999}}) {
    const float* xr = dx + r * cols;
    std::vector<std::uint8_t> q(static_cast<std::size_t>(cols)), s(static_cast<std::size_t>(cols / 128));
    dsv4::gpu::act_quant_device(xr, 1, cols, 128, dsv4::gpu::ScaleFormat::kUE8M0, dq, nullptr, ds);
    ASSERT_EQ(cudaMemcpy(q.data(), dq, q.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(s.data(), ds, s.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(std::memcmp(q.data(), fp8.values.data() + r * cols, q.size()), 0) << "fp8 row " << r;
    for (std::size_t b = 0; b < s.size(); ++b)
      EXPECT_EQ(s[b], dsv4::float_bits(fp8.scales[r * (cols / 128) + b]) >> 23) << "row " << r << " block " << b;

    std::vector<std::uint8_t> p(static_cast<std::size_t>(cols / 2)), s4(static_cast<std::size_t>(cols / 32));
    dsv4::gpu::fp4_act_quant_device(xr, 1, cols, dq, ds);
    ASSERT_EQ(cudaMemcpy(p.data(), dq, p.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(s4.data(), ds, s4.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(std::memcmp(p.data(), fp4.packed.data() + r * cols / 2, p.size()), 0) << "fp4 row " << r;
    EXPECT_EQ(std::memcmp(s4.data(), fp4.scales.data() + r * cols / 32, s4.size()), 0) << "fp4 scales row " << r;
  }
  cudaFree(dx);
  cudaFree(dq);
  cudaFree(ds);
}

// ---- argument checks (no CUDA call is reached: these run without a GPU too) ----

TEST(GpuQuantArgs, BadShapesThrowInvalidArgument) {
  std::vector<float> x(256, 1.0f);
  EXPECT_THROW(dsv4::gpu::act_quant(x, 96, 64, dsv4::gpu::ScaleFormat::kUE8M0), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::act_quant(x, 0, 128, dsv4::gpu::ScaleFormat::kUE8M0), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::act_quant(x, 128, 48, dsv4::gpu::ScaleFormat::kUE8M0), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::act_quant_inplace(x, 384, 128, dsv4::gpu::ScaleFormat::kFP32), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::fp4_act_quant(x, 48), std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::fp4_act_quant_inplace(x, 96), std::invalid_argument);
  EXPECT_THROW(
      dsv4::gpu::act_quant_device(nullptr, 1, 128, 128, dsv4::gpu::ScaleFormat::kUE8M0, nullptr, nullptr, nullptr),
      std::invalid_argument);
  EXPECT_THROW(dsv4::gpu::act_quant_device(nullptr, 1, 128, 128, dsv4::gpu::ScaleFormat::kFP32, nullptr, nullptr,
                                           reinterpret_cast<std::uint8_t*>(16)),
               std::invalid_argument);
}

TEST(GpuQuantArgs, EmptyInputNeedsNoDevice) {
  const std::vector<float> none;
  const auto r = dsv4::gpu::act_quant(none, 128, 128, dsv4::gpu::ScaleFormat::kUE8M0);
  EXPECT_EQ(r.rows, 0);
  EXPECT_TRUE(r.values.empty());
  EXPECT_TRUE(r.scales.empty());
  const auto r4 = dsv4::gpu::fp4_act_quant(none, 64);
  EXPECT_EQ(r4.rows, 0);
  std::vector<float> y;
  dsv4::gpu::act_quant_inplace(y, 64, 64, dsv4::gpu::ScaleFormat::kFP32);
  dsv4::gpu::fp4_act_quant_inplace(y, 32);
}

}  // namespace
