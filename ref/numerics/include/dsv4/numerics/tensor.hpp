// A small tensor type shared by ref/, oracle/ and gpu/: a dtype, a shape, contiguous row-major
// storage, and Eigen views. Deliberately plain: no strides, no broadcasting, no autograd.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv4 {

enum class DType : std::uint8_t {
  kF64,
  kF32,
  kBF16,    // raw uint16 patterns
  kF16,     // raw uint16 patterns
  kE4M3,    // raw bytes, fp8 e4m3fn
  kE5M2,    // raw bytes, fp8 e5m2
  kE8M0,    // raw bytes, ue8m0 scales
  kE2M1x2,  // fp4 e2m1 packed two per byte: element 2j in the low nibble (spec 01 §1.1)
  kI8,
  kI32,
  kI64,
  kU8,
  kU16,
};

// Bytes per stored unit (a packed fp4 byte holds two elements).
std::size_t dtype_size(DType d);
std::string_view dtype_name(DType d);
// Throws std::invalid_argument naming the string when it is not a dtype name.
DType dtype_from_name(std::string_view name);

// Thrown for a shape/dtype misuse; the message names what was wrong.
class TensorError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A shape as text, "[2, 3]" ("[]" for a scalar): the one spelling of shapes in messages.
std::string shape_string(const std::vector<std::int64_t>& shape);

// Tensor storage memory. Large blocks (≥ 1 MiB) are rounded up to whole 2 MiB pages, aligned and,
// on Linux, advised to be backed by transparent huge pages: a first touch then costs one page fault per 2 MiB instead
// of one per 4 KiB (measured 8× faster on a 64 MiB read buffer; it is most of the time of reading a golden into fresh
// memory). Contents are not affected.
void* allocate_storage(std::size_t bytes);
void free_storage(void* p) noexcept;

// Storage bytes: an allocator whose value-initialisation leaves the bytes as they are, so that
// Tensor::uninitialized can skip the zero-fill (the constructor still zero-fills).
template <class T>
struct UninitializedAllocator {
  using value_type = T;
  UninitializedAllocator() = default;
  template <class U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(allocate_storage(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { free_storage(p); }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  friend bool operator==(const UninitializedAllocator&, const UninitializedAllocator&) { return true; }
};

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled. For kE2M1x2 the last dimension counts *elements* (must be even).
  Tensor(DType dtype, std::vector<std::int64_t> shape);
  // The same shape checks, contents unspecified: for readers that overwrite every byte (a file
  // read of hundreds of MB does not pay for a zero-fill first).
  static Tensor uninitialized(DType dtype, std::vector<std::int64_t> shape);
  // Becomes Tensor::uninitialized(dtype, shape), keeping its storage when that is large enough:
  // readers that fill tensor after tensor reuse one buffer (no allocation, no page faults).
  void reuse_as(DType dtype, std::vector<std::int64_t> shape);
  // Makes room for `bytes` of storage without changing the tensor (so that later reuse_as calls
  // up to that size allocate nothing).
  void reserve(std::size_t bytes);

  DType dtype() const { return dtype_; }
  const std::vector<std::int64_t>& shape() const { return shape_; }
  std::int64_t dim(std::size_t i) const { return shape_.at(i); }
  std::size_t rank() const { return shape_.size(); }
  std::int64_t numel() const;
  std::size_t nbytes() const { return storage_.size(); }
  std::string shape_string() const;  // "[2, 3]"

  std::byte* bytes() { return storage_.data(); }
  const std::byte* bytes() const { return storage_.data(); }

  // Typed access; T must match the dtype's storage type (checked).
  template <class T>
  std::span<T> values();
  template <class T>
  std::span<const T> values() const;

  // Row-major matrix view [rows, cols] where cols = last dim and rows = product of the others.
  template <class T>
  Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> matrix();
  template <class T>
  Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> matrix() const;

  // Same storage, new shape with the same element count.
  Tensor reshaped(std::vector<std::int64_t> shape) const;

 private:
  template <class T>
  void check_type() const;

  struct NoFill {};
  Tensor(DType dtype, std::vector<std::int64_t> shape, NoFill);

  DType dtype_ = DType::kF32;
  std::vector<std::int64_t> shape_;
  std::vector<std::byte, UninitializedAllocator<std::byte>> storage_;
};

// The storage type of a dtype, for check_type.
template <class T>
constexpr bool dtype_holds(DType d) {
  switch (d) {
    case DType::kF64:
      return std::is_same_v<T, double>;
    case DType::kF32:
      return std::is_same_v<T, float>;
    case DType::kBF16:
    case DType::kF16:
    case DType::kU16:
      return std::is_same_v<T, std::uint16_t>;
    case DType::kE4M3:
    case DType::kE5M2:
    case DType::kE8M0:
    case DType::kE2M1x2:
    case DType::kU8:
      return std::is_same_v<T, std::uint8_t>;
    case DType::kI8:
      return std::is_same_v<T, std::int8_t>;
    case DType::kI32:
      return std::is_same_v<T, std::int32_t>;
    case DType::kI64:
      return std::is_same_v<T, std::int64_t>;
  }
  return false;
}

template <class T>
void Tensor::check_type() const {
  if (!dtype_holds<T>(dtype_)) {
    throw TensorError("tensor of dtype " + std::string(dtype_name(dtype_)) + " accessed with the wrong element type");
  }
}

template <class T>
std::span<T> Tensor::values() {
  check_type<T>();
  return {reinterpret_cast<T*>(storage_.data()), storage_.size() / sizeof(T)};
}

template <class T>
std::span<const T> Tensor::values() const {
  check_type<T>();
  return {reinterpret_cast<const T*>(storage_.data()), storage_.size() / sizeof(T)};
}

template <class T>
Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Tensor::matrix() {
  check_type<T>();
  const std::int64_t cols = shape_.empty() ? 1 : shape_.back();
  const std::int64_t rows = cols == 0 ? 0 : static_cast<std::int64_t>(storage_.size() / sizeof(T)) / cols;
  return {reinterpret_cast<T*>(storage_.data()), rows, cols};
}

template <class T>
Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Tensor::matrix() const {
  check_type<T>();
  const std::int64_t cols = shape_.empty() ? 1 : shape_.back();
  const std::int64_t rows = cols == 0 ? 0 : static_cast<std::int64_t>(storage_.size() / sizeof(T)) / cols;
  return {reinterpret_cast<const T*>(storage_.data()), rows, cols};
}

}  // namespace dsv4
