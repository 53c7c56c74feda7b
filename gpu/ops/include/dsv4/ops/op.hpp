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
// run the kernel and copy out — except the shared inputs marked resident (Array::make_resident),
// which the device functions of the ops with Op::resident_inputs take from the device copy made
// once (dsv4/ops/resident.hpp; gpu/README.md §GpuModel).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace dsv4::ops {

enum class DType : std::uint8_t {
  kF32,  // float (bf16 values are floats whose value is a bf16 number, as in the plugin ABI)
  kU8,   // bytes: fp8 / packed fp4 codes, e8m0 scales
};
const char* dtype_name(DType t);

// The number of bytes of array values copied so far in this process because a copy of an array
// was written to (Values' copy on write, below): an Array copy shares its values, so building a
// Call from a model's weights copies nothing (tests/gpu_model_test asserts it).
std::int64_t array_bytes_copied();
namespace detail {
void count_copied(std::size_t bytes);
}

// The values of an Array: a std::vector<T> shared by every copy of the array and copied on the
// first write through a copy that shares it (copy on write). So a weight put into many Calls is
// one host buffer, and it can carry a device copy made once (`resident`, dsv4/ops/resident.hpp):
// a device copy belongs to the buffer, so a write (which makes a new buffer) never sees a stale
// one. Reads go through the const members and conversions; every non-const member writes.
template <class T>
class Values {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using const_iterator = typename std::vector<T>::const_iterator;
  using iterator = typename std::vector<T>::iterator;

  Values() = default;
  Values(std::vector<T> v) : s_(std::make_shared<Storage>(std::move(v))) {}  // NOLINT: implicit, as a vector
  Values(std::initializer_list<T> v) : Values(std::vector<T>(v)) {}
  Values& operator=(std::vector<T> v) {
    s_ = std::make_shared<Storage>(std::move(v));
    return *this;
  }

  const std::vector<T>& vec() const { return s_ ? s_->host : no_values(); }
  operator const std::vector<T>&() const& { return vec(); }  // NOLINT: reads as a vector
  operator std::vector<T>&() & { return mut(); }             // NOLINT: writes as a vector

  std::size_t size() const { return vec().size(); }
  bool empty() const { return vec().empty(); }
  const T* data() const { return vec().data(); }
  const T& operator[](std::size_t i) const { return vec()[i]; }
  const T& at(std::size_t i) const { return vec().at(i); }
  const T& back() const { return vec().back(); }
  const_iterator begin() const { return vec().begin(); }
  const_iterator end() const { return vec().end(); }

  T* data() { return mut().data(); }
  T& operator[](std::size_t i) { return mut()[i]; }
  T& at(std::size_t i) { return mut().at(i); }
  T& back() { return mut().back(); }
  iterator begin() { return mut().begin(); }
  iterator end() { return mut().end(); }
  template <class... A>
  auto insert(A&&... a) {
    return mut().insert(std::forward<A>(a)...);
  }
  void resize(std::size_t n) { mut().resize(n); }
  void assign(std::size_t n, const T& v) { mut().assign(n, v); }
  void push_back(const T& v) { mut().push_back(v); }
  void clear() { *this = std::vector<T>(); }

  friend bool operator==(const Values& a, const Values& b) { return a.vec() == b.vec(); }
  friend bool operator==(const Values& a, const std::vector<T>& b) { return a.vec() == b; }

  // Whether two arrays' values are one buffer (no copy between them).
  bool shares(const Values& o) const { return s_ != nullptr && s_ == o.s_; }
  // Marks the buffer resident: its device copies (dsv4/ops/resident.hpp) are kept with it and
  // made once. Every array sharing the buffer is resident; a write makes a new, non-resident one.
  void make_resident() const {
    if (s_) s_->resident = true;
  }
  bool resident() const { return s_ != nullptr && s_->resident; }
  // The buffer's device copy of form `form` (an opaque owner made by `make` once per buffer and
  // form, under a lock); nullptr without values. For resident.hpp.
  template <class Make>
  std::shared_ptr<const void> device_copy(const std::string& form, Make make) const {
    if (!s_) return nullptr;
    const std::lock_guard<std::mutex> lock(s_->mutex);
    for (const auto& [f, copy] : s_->device)
      if (f == form) return copy;
    s_->device.emplace_back(form, make(s_->host));
    return s_->device.back().second;
  }

 private:
  struct Storage {
    explicit Storage(std::vector<T> v) : host(std::move(v)) {}
    std::vector<T> host;
    bool resident = false;
    std::mutex mutex;
    std::vector<std::pair<std::string, std::shared_ptr<const void>>> device;
  };
  static const std::vector<T>& no_values() {
    static const std::vector<T> e;
    return e;
  }
  // The values to write: this array's own buffer (copied first when another array shares it).
  std::vector<T>& mut() {
    if (!s_) {
      s_ = std::make_shared<Storage>(std::vector<T>());
    } else if (s_.use_count() > 1) {
      detail::count_copied(s_->host.size() * sizeof(T));
      s_ = std::make_shared<Storage>(s_->host);
    }
    return s_->host;
  }
  std::shared_ptr<Storage> s_;
};

// A dense row-major [rows, cols] host array. Exactly one of f32 / u8 holds the data (by dtype).
// Copies share their values (Values: copy on write).
struct Array {
  std::string name;
  DType dtype = DType::kF32;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  bool per_row = true;  // inputs only: false = shared by every row (weights), never sliced
  Values<float> f32;
  Values<std::uint8_t> u8;

  static Array floats(std::string name, std::int64_t rows, std::int64_t cols, std::vector<float> data);
  static Array bytes(std::string name, std::int64_t rows, std::int64_t cols, std::vector<std::uint8_t> data);
  static Array shared(std::string name, std::vector<float> data);  // a [1, n] shared input

  std::int64_t elements() const { return rows * cols; }
  // The bytes of its values.
  std::int64_t bytes() const;
  // Marks its values resident (Values::make_resident): a model's weight, whose device copy the
  // device functions that take resident inputs (Op::resident_inputs) make once and keep.
  void make_resident() const {
    f32.make_resident();
    u8.make_resident();
  }
  bool resident() const { return f32.resident() || u8.resident(); }
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
  // Whether `device` takes the shared inputs marked resident (Array::make_resident) from their
  // device copy, made once (dsv4/ops/resident.hpp), instead of copying them in on every call.
  bool resident_inputs = false;
};

}  // namespace dsv4::ops
