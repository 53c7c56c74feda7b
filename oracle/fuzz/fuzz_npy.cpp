// libFuzzer harness: any bytes as a .npy file, under each reading of '<u2'. The reader may only
// throw InputError; an accepted array, written again, reads back to the same bits.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "dsv4/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  for (dsv4::U2As u : {dsv4::U2As::kUInt16, dsv4::U2As::kBF16}) {
    dsv4::Tensor t;
    try {
      t = dsv4::decode_npy(bytes, {u}, "fuzz");
    } catch (const dsv4::InputError&) {
      continue;
    }
    const auto again = dsv4::encode_npy(t);
    const dsv4::Tensor b = dsv4::decode_npy(again, {u}, "re-encoded");  // must not throw
    if (b.dtype() != t.dtype() || b.shape() != t.shape() || b.nbytes() != t.nbytes() ||
        (t.nbytes() && std::memcmp(b.bytes(), t.bytes(), t.nbytes()) != 0)) {
      __builtin_trap();
    }
  }
  return 0;
}
