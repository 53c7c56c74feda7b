// The op registry's vocabulary (gpu/README.md §The op registry): every kernel and every backward
// pass of dsv4 enters through one registration (an Op) and is checked by one harness
// (dsv4/ops/harness.hpp), as ggml's test-backend-ops does for its backends.
//
// An op is called on flat, dense, row-major host arrays — the layout of the plugin ABI
// (properties/include/dsv4/properties/plugin_abi.h). Inputs are either per-row (their first
// dimension is the batch: one row per token or per quantisation row) or shared (weights, scales);
// every output is per-row. That row structure is what the harness uses to prove batch invariance:
// an output row depends only on its own input rows and the shared inputs.
//
// Plain C++20, no CUDA types: the device functions are host functions of dsv4_gpu that copy in,
// run the kernel and copy out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace dsv4::ops {

enum class DType : std::uint8_t {
  kF32,  // float (bf16 values are floats whose value is a bf16 number, as in the plugin ABI)
  kU8,   // bytes: fp8 / packed fp4 codes, e8m0 scales
};
const char* dtype_name(DType t);

// A dense row-major [rows, cols] host array. Exactly one of f32 / u8 holds the data (by dtype).
struct Array {
  std::string name;
  DType dtype = DType::kF32;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  bool per_row = true;  // inputs only: false = shared by every row (weights), never sliced
  std::vector<float> f32;
  std::vector<std::uint8_t> u8;

  static Array floats(std::string name, std::int64_t rows, std::int64_t cols, std::vector<float> data);
  static Array bytes(std::string name, std::int64_t rows, std::int64_t cols, std::vector<std::uint8_t> data);
  static Array shared(std::string name, std::vector<float> data);  // a [1, n] shared input

  std::int64_t elements() const { return rows * cols; }
  // Rows [first, first + count) as a new array (same name, dtype and columns).
  Array slice(std::int64_t first, std::int64_t count) const;
  // Appends the rows of `other` (same dtype and columns).
  void append_rows(const Array& other);
};

// One call of an op: its scalar parameters (what each means is the op's documentation, printed
// through Op::int_params / Op::real_params) and its inputs.
struct Call {
  std::vector<std::int64_t> ints;
  std::vector<double> reals;
  std::vector<Array> inputs;
  // The batch: rows of the per-row inputs (all per-row inputs have the same row count).
  std::int64_t rows() const;
  // The same call on rows [first, first + count) of every per-row input (shared inputs kept).
  Call slice(std::int64_t first, std::int64_t count) const;
  // Appends row `row` of every per-row input of `from` (a call of the same op and shapes).
  void append_row(const Call& from, std::int64_t row);
};

using Outputs = std::vector<Array>;
// The backward half of a registration (dsv4/ops/gradient.hpp): the exact-mode backward of the
// training reference and the forms of its forward that the gradient check needs.
struct GradientForms;
// A reference, device or plugin implementation of an op. Throws std::invalid_argument for a call
// outside the op's domain.
using Fn = std::function<Outputs(const Call&)>;

// A named input of the harness. Labels, shapes and parameters depend on the op alone; the seed
// changes the values only (the harness uses the cases of another seed as "other rows' contents").
struct Case {
  std::string label;  // e.g. "64x7168 block 128 ue8m0"
  Call call;
};

// How an implementation's outputs must match the reference's. Every op registered today is
// bit-exact (the GPU tier's contract: GPU == CPU official mode, bit for bit).
enum class Match : std::uint8_t { kBits };

struct Op {
  std::string stem;     // the component's file stem in ref/, gpu/, properties/, tests/ (e.g. "act_quant")
  std::string spec;     // the section of ref/spec that defines it (e.g. "spec 01 §1.4")
  std::string summary;  // one line: what it computes
  std::vector<std::string> int_params, real_params;  // the names of Call::ints / Call::reals
  Fn reference;                                      // the CPU reference, official mode, on flat arrays
  Fn device;  // the CUDA kernel; empty when none exists yet or the build has no CUDA
  // The backward (spec 06 §6.12, dsv4/ops/gradient.hpp): inputs = the forward's inputs followed by
  // one upstream gradient per forward output ("d" + its name, its shape); outputs = one gradient per
  // differentiable input ("d" + its name, its shape): exact mode's double gradients rounded once to
  // fp32. Empty when the op has no backward yet; set together with `gradient` (set_backward).
  Fn backward_reference;
  Fn backward_device;
  std::shared_ptr<const GradientForms> gradient;  // the double backward and its forwards (gradient check)
  std::function<std::vector<Case>(std::uint64_t seed)> cases;
  Match match = Match::kBits;
};

}  // namespace dsv4::ops
