#include "dsv4/numerics/tensor.hpp"

#include <array>
#include <limits>
#include <utility>

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

Tensor::Tensor(DType dtype, std::vector<std::int64_t> shape) : dtype_(dtype), shape_(std::move(shape)) {
  std::int64_t n = 1;
  for (std::int64_t d : shape_) {
    if (d < 0) throw TensorError("negative dimension in shape " + shape_string());
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d) {
      throw TensorError("shape " + shape_string() + " overflows 64-bit element count");
    }
    n *= d;
  }
  std::size_t units = static_cast<std::size_t>(n);
  if (dtype_ == DType::kE2M1x2) {
    if (!shape_.empty() && shape_.back() % 2 != 0) {
      throw TensorError("packed fp4 tensor needs an even last dimension, got " + shape_string());
    }
    units /= 2;
  }
  if (units > std::numeric_limits<std::size_t>::max() / dtype_size(dtype_)) {
    throw TensorError("shape " + shape_string() + " of " + std::string(dtype_name(dtype_)) +
                      " overflows the byte count");
  }
  storage_.assign(units * dtype_size(dtype_), std::byte{0});
}

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
  Tensor t(dtype_, std::move(shape));
  if (t.numel() != numel()) {
    throw TensorError("cannot reshape " + shape_string() + " to " + t.shape_string());
  }
  t.storage_ = storage_;
  return t;
}

}  // namespace dsv4
