#include "dsv4/numerics/tensor.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <limits>
#include <new>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dsv4 {

namespace {
struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
};
constexpr std::array<DTypeInfo, 13> kDTypes{{
    {DType::kF64, "float64", 8},
    {DType::kF32, "float32", 4},
    {DType::kBF16, "bfloat16", 2},
    {DType::kF16, "float16", 2},
    {DType::kE4M3, "float8_e4m3fn", 1},
    {DType::kE5M2, "float8_e5m2", 1},
    {DType::kE8M0, "float8_e8m0fnu", 1},
    {DType::kE2M1x2, "float4_e2m1fn_x2", 1},
    {DType::kI8, "int8", 1},
    {DType::kI32, "int32", 4},
    {DType::kI64, "int64", 8},
    {DType::kU8, "uint8", 1},
    {DType::kU16, "uint16", 2},
}};

const DTypeInfo& info(DType d) {
  for (const auto& i : kDTypes) {
    if (i.dtype == d) return i;
  }
  throw TensorError("unknown dtype");
}
}  // namespace

std::size_t dtype_size(DType d) { return info(d).size; }
std::string_view dtype_name(DType d) { return info(d).name; }

DType dtype_from_name(std::string_view name) {
  for (const auto& i : kDTypes) {
    if (i.name == name) return i.dtype;
  }
  throw std::invalid_argument("unknown dtype '" + std::string(name) + "'");
}

namespace {
constexpr std::size_t kHugePage = std::size_t{2} << 20;
// Blocks from here on are rounded up to whole huge pages (at most 2× the bytes asked for).
constexpr std::size_t kHugeFrom = kHugePage / 2;
}  // namespace

void* allocate_storage(std::size_t bytes) {
  if (bytes < kHugeFrom) {
    void* p = std::malloc(std::max<std::size_t>(bytes, 1));
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  if (bytes > std::numeric_limits<std::size_t>::max() - kHugePage) throw std::bad_alloc();
  const std::size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__)
  (void)madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without huge pages nothing changes
#endif
  return p;
}

void free_storage(void* p) noexcept { std::free(p); }

Tensor::Tensor(DType dtype, std::vector<std::int64_t> shape) : Tensor(dtype, std::move(shape), NoFill{}) {
  std::fill(storage_.begin(), storage_.end(), std::byte{0});
}

Tensor Tensor::uninitialized(DType dtype, std::vector<std::int64_t> shape) {
  return Tensor(dtype, std::move(shape), NoFill{});
}

namespace {
// The byte count of a shape, every product checked; TensorError naming the shape otherwise.
std::size_t checked_nbytes(DType dtype, const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw TensorError("negative dimension in shape " + shape_string(shape));
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d) {
      throw TensorError("shape " + shape_string(shape) + " overflows 64-bit element count");
    }
    n *= d;
  }
  std::size_t units = static_cast<std::size_t>(n);
  if (dtype == DType::kE2M1x2) {
    if (!shape.empty() && shape.back() % 2 != 0) {
      throw TensorError("packed fp4 tensor needs an even last dimension, got " + shape_string(shape));
    }
    units /= 2;
  }
  if (units > std::numeric_limits<std::size_t>::max() / dtype_size(dtype)) {
    throw TensorError("shape " + shape_string(shape) + " of " + std::string(dtype_name(dtype)) +
                      " overflows the byte count");
  }
  return units * dtype_size(dtype);
}
}  // namespace

Tensor::Tensor(DType dtype, std::vector<std::int64_t> shape, NoFill) : dtype_(dtype), shape_(std::move(shape)) {
  storage_.resize(checked_nbytes(dtype_, shape_));  // bytes left as allocated (UninitializedAllocator)
}

void Tensor::reuse_as(DType dtype, std::vector<std::int64_t> shape) {
  const std::size_t bytes = checked_nbytes(dtype, shape);
  if (bytes > storage_.capacity()) storage_ = {};  // grow without copying the old bytes
  storage_.resize(bytes);
  dtype_ = dtype;
  shape_ = std::move(shape);
}

void Tensor::reserve(std::size_t bytes) { storage_.reserve(bytes); }

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape_) n *= d;
  return n;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string Tensor::shape_string() const { return dsv4::shape_string(shape_); }

Tensor Tensor::reshaped(std::vector<std::int64_t> shape) const {
  Tensor t(dtype_, std::move(shape), NoFill{});
  if (t.numel() != numel()) {
    throw TensorError("cannot reshape " + shape_string() + " to " + t.shape_string());
  }
  t.storage_ = storage_;
  return t;
}

}  // namespace dsv4
