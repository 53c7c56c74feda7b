// Host fallback of the sparse attention kernel: the official-mode reference for the tokens the
// device left undecided, all of them in one call (their rows never interact).
#include "sparse_attention_reference.hpp"

#include <cstddef>

#include "dsv4/model/sparse_attention.hpp"

namespace dsv4::gpu::detail {

void sparse_attention_reference_tokens(const float* q, std::int64_t heads, std::int64_t c, const std::int32_t* lists,
                                       std::int64_t width, const float* kv, std::int64_t n_kv, const float* sink,
                                       double scale, const std::vector<std::int64_t>& tokens, float* o) {
  if (tokens.empty()) return;
  const auto n = static_cast<std::int64_t>(tokens.size());
  const std::int64_t row = heads * c;
  Mat qs(n * heads, c), kvm(n_kv, c);
  IndexLists l(n, width);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t t = tokens[static_cast<std::size_t>(i)];
    for (std::int64_t e = 0; e < row; ++e) qs(i * heads + e / c, e % c) = q[t * row + e];
    for (std::int64_t j = 0; j < width; ++j) l.at(i, j) = lists[t * width + j];
  }
  for (std::int64_t i = 0; i < n_kv * c; ++i) kvm.data()[i] = kv[i];
  const std::vector<double> z(sink, sink + heads);
  const Mat out = sparse_attention(Precision(Mode::kOfficial), qs, heads, kvm, z, l, scale);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t t = tokens[static_cast<std::size_t>(i)];
    for (std::int64_t e = 0; e < row; ++e) o[t * row + e] = static_cast<float>(out(i * heads + e / c, e % c));
  }
}

}  // namespace dsv4::gpu::detail
