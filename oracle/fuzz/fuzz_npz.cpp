// libFuzzer harness: any bytes as a .npz archive. The reader may only throw InputError; every
// member is read (with a 64 MiB limit, so that a legal 1032:1 deflate ratio cannot exhaust the
// fuzzer's memory limit).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dsv4/io/npz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  try {
    const auto f = dsv4::NpzFile::from_bytes(std::move(bytes), "fuzz");
    for (const auto& k : f.keys()) {
      try {
        f.read(k, {}, std::uint64_t{64} << 20);
      } catch (const dsv4::InputError&) {
      }
    }
  } catch (const dsv4::InputError&) {
  }
  return 0;
}
