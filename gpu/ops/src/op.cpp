// Flat arrays and calls of the op registry (dsv4/ops/op.hpp).
#include "dsv4/ops/op.hpp"

#include <atomic>
#include <stdexcept>
#include <utility>

namespace dsv4::ops {

namespace {
std::atomic<std::int64_t> g_bytes_copied{0};
}  // namespace

std::int64_t array_bytes_copied() { return g_bytes_copied.load(); }
void detail::count_copied(std::size_t bytes) { g_bytes_copied += static_cast<std::int64_t>(bytes); }

std::int64_t Array::bytes() const { return static_cast<std::int64_t>(f32.size() * sizeof(float) + u8.size()); }

const char* dtype_name(DType t) { return t == DType::kF32 ? "f32" : "u8"; }

namespace {

void require_size(const std::string& name, std::int64_t rows, std::int64_t cols, std::size_t size) {
  if (rows < 0 || cols < 0 || static_cast<std::size_t>(rows * cols) != size) {
    throw std::invalid_argument("op array " + name + ": [" + std::to_string(rows) + ", " + std::to_string(cols) +
                                "] does not hold " + std::to_string(size) + " elements");
  }
}

template <class T>
std::vector<T> rows_of(const Values<T>& v, std::int64_t cols, std::int64_t first, std::int64_t count) {
  return std::vector<T>(v.begin() + first * cols, v.begin() + (first + count) * cols);
}

}  // namespace

namespace {

template <class T>
Array make_array(std::string name, DType dtype, std::int64_t rows, std::int64_t cols, std::vector<T> data,
                 Values<T> Array::*storage) {
  require_size(name, rows, cols, data.size());
  Array a;
  a.name = std::move(name);
  a.dtype = dtype;
  a.rows = rows;
  a.cols = cols;
  a.*storage = std::move(data);
  return a;
}

}  // namespace

Array Array::floats(std::string name, std::int64_t rows, std::int64_t cols, std::vector<float> data) {
  return make_array(std::move(name), DType::kF32, rows, cols, std::move(data), &Array::f32);
}

Array Array::bytes(std::string name, std::int64_t rows, std::int64_t cols, std::vector<std::uint8_t> data) {
  return make_array(std::move(name), DType::kU8, rows, cols, std::move(data), &Array::u8);
}

Array Array::shared(std::string name, std::vector<float> data) {
  const auto n = static_cast<std::int64_t>(data.size());
  Array a = floats(std::move(name), 1, n, std::move(data));
  a.per_row = false;
  return a;
}

Array Array::slice(std::int64_t first, std::int64_t count) const {
  if (first < 0 || count < 0 || first + count > rows) {
    throw std::invalid_argument("op array " + name + ": rows [" + std::to_string(first) + ", " +
                                std::to_string(first + count) + ") outside [0, " + std::to_string(rows) + ")");
  }
  Array a = dtype == DType::kF32 ? make_array(name, dtype, count, cols, rows_of(f32, cols, first, count), &Array::f32)
                                 : make_array(name, dtype, count, cols, rows_of(u8, cols, first, count), &Array::u8);
  a.per_row = per_row;
  return a;
}

void Array::append_rows(const Array& other) {
  if (other.dtype != dtype || other.cols != cols) {
    throw std::invalid_argument("op array " + name + ": cannot append rows of " + other.name + " (" +
                                dtype_name(other.dtype) + " × " + std::to_string(other.cols) + " vs " +
                                dtype_name(dtype) + " × " + std::to_string(cols) + ")");
  }
  f32.insert(f32.end(), other.f32.begin(), other.f32.end());
  u8.insert(u8.end(), other.u8.begin(), other.u8.end());
  rows += other.rows;
}

std::int64_t Call::rows() const {
  std::int64_t r = -1;
  for (const Array& a : inputs) {
    if (!a.per_row) continue;
    if (r >= 0 && a.rows != r) {
      throw std::invalid_argument("op call: per-row input " + a.name + " has " + std::to_string(a.rows) +
                                  " rows, another has " + std::to_string(r));
    }
    r = a.rows;
  }
  if (r < 0) throw std::invalid_argument("op call: no per-row input");
  return r;
}

Call Call::slice(std::int64_t first, std::int64_t count) const {
  Call c;
  c.ints = ints;
  c.reals = reals;
  for (const Array& a : inputs) c.inputs.push_back(a.per_row ? a.slice(first, count) : a);
  return c;
}

void Call::append_row(const Call& from, std::int64_t row) {
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].per_row) inputs[i].append_rows(from.inputs.at(i).slice(row, 1));
  }
}

}  // namespace dsv4::ops
