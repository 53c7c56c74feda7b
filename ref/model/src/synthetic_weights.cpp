// ref/model/include/dsv4/model/synthetic_weights.hpp
#include "dsv4/model/synthetic_weights.hpp"

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4 {

Vec synthetic_norm_weight(std::uint64_t seed, const char* name, std::int64_t n) {
  const CounterRng rng(seed, stream_id(name));
  Vec v(n);
  for (std::int64_t i = 0; i < n; ++i) v(i) = round_bf16(1.0 + 0.1 * rng.normal(static_cast<std::uint64_t>(i)));
  return v;
}

Mat synthetic_bf16_matrix(std::uint64_t seed, const char* name, std::int64_t n, std::int64_t k, double std) {
  const CounterRng rng(seed, stream_id(name));
  Mat m(n, k);
  for (std::int64_t i = 0; i < n * k; ++i) m.data()[i] = round_bf16(std * rng.normal(static_cast<std::uint64_t>(i)));
  return m;
}

}  // namespace dsv4
