// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11), constants from the paper.
#include "dsv4/numerics/philox.hpp"

#include <cmath>
#include <numbers>

namespace dsv4 {

namespace {
constexpr std::uint32_t kMul0 = 0xD2511F53u;
constexpr std::uint32_t kMul1 = 0xCD9E8D57u;
constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;
constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;

PhiloxCounter philox_round(const PhiloxCounter& c, const PhiloxKey& k) {
  const std::uint64_t p0 = static_cast<std::uint64_t>(kMul0) * c[0];
  const std::uint64_t p1 = static_cast<std::uint64_t>(kMul1) * c[2];
  const auto hi0 = static_cast<std::uint32_t>(p0 >> 32);
  const auto lo0 = static_cast<std::uint32_t>(p0);
  const auto hi1 = static_cast<std::uint32_t>(p1 >> 32);
  const auto lo1 = static_cast<std::uint32_t>(p1);
  return {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
}
}  // namespace

PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    counter = philox_round(counter, key);
  }
  return counter;
}

PhiloxCounter CounterRng::words(std::uint64_t index) const {
  const PhiloxCounter ctr{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                          static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)};
  const PhiloxKey key{static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)};
  return philox4x32_10(ctr, key);
}

namespace {
double unit_from_words(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t bits53 = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return static_cast<double>(bits53) * 0x1.0p-53;
}
}  // namespace

double CounterRng::uniform(std::uint64_t index) const {
  const PhiloxCounter w = words(index);
  return unit_from_words(w[0], w[1]);
}

double CounterRng::normal(std::uint64_t index) const {
  const PhiloxCounter w = words(index);
  const double u1 = 1.0 - unit_from_words(w[0], w[1]);  // (0, 1]: log is finite
  const double u2 = unit_from_words(w[2], w[3]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::uint64_t stream_id(const char* name) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (const char* p = name; *p != '\0'; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 0x100000001B3ull;
  }
  return h;
}

}  // namespace dsv4
