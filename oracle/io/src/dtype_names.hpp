// Internal: a file format's own names for dtypes (the .npy descr codes, the names an HDF5 "dtype"
// attribute may carry), one table entry per name, and the lookups both ways.
#pragma once

#include <optional>
#include <span>
#include <string_view>

#include "dsv4/numerics/tensor.hpp"

namespace dsv4::io_detail {

struct DTypeName {
  std::string_view name;
  DType dtype;
};

// The dtype `name` stands for in `table`.
inline std::optional<DType> dtype_named(std::span<const DTypeName> table, std::string_view name) {
  for (const DTypeName& e : table) {
    if (e.name == name) return e.dtype;
  }
  return std::nullopt;
}

// The first name `table` gives `d` (what a writer emits).
inline std::optional<std::string_view> name_of_dtype(std::span<const DTypeName> table, DType d) {
  for (const DTypeName& e : table) {
    if (e.dtype == d) return e.name;
  }
  return std::nullopt;
}

}  // namespace dsv4::io_detail
