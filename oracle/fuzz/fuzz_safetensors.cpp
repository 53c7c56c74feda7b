// libFuzzer harness: any bytes as a safetensors file. The reader may only throw InputError; every
// tensor it accepts is read (also as packed fp4 where that applies); the tensors read, written
// again by the writer, read back to the same bits.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/io/safetensors.hpp"

namespace {
bool same(const dsv4::Tensor& a, const dsv4::Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  std::vector<std::pair<std::string, dsv4::Tensor>> got;
  std::map<std::string, std::string> metadata;
  try {
    const auto f = dsv4::SafetensorsFile::from_bytes(std::move(bytes), "fuzz");
    metadata = f.metadata();
    for (const auto& e : f.entries()) {
      try {
        got.emplace_back(e.name, f.read(e.name));
      } catch (const dsv4::InputError&) {
      }
      if (e.dtype == "I8" || e.dtype == "U8") {
        try {
          f.read(e.name, {.bytes_as_packed_fp4 = true});
        } catch (const dsv4::InputError&) {
        }
      }
    }
  } catch (const dsv4::InputError&) {
    return 0;
  }
  dsv4::NamedTensors named;
  for (const auto& [n, t] : got) named.emplace_back(n, &t);
  std::vector<std::byte> again;
  try {
    again = dsv4::encode_safetensors(named, {.metadata = metadata});
  } catch (const dsv4::InputError&) {
    return 0;  // a name the reader accepts but the writer refuses (empty)
  }
  const auto g = dsv4::SafetensorsFile::from_bytes(std::move(again), "re-encoded");  // must not throw
  if (g.metadata() != metadata) __builtin_trap();
  for (const auto& [n, t] : got) {
    if (!same(t, g.read(n))) __builtin_trap();
  }
  return 0;
}
