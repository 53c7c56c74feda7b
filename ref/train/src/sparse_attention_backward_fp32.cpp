// The official-style KV gradient of sparse attention (spec 06 §6.14):
// sparse_attention_backward_fp32.hpp.
#include "dsv4/train/sparse_attention_backward_fp32.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace dsv4 {

std::vector<float> sparse_attention_dkv_fp32(std::span<const float> q, std::int64_t n_heads, std::int64_t n_kv,
                                             std::int64_t c, const IndexLists& lists, std::span<const float> dout,
                                             std::span<const float> prob, std::span<const float> dlogit,
                                             const PartitionRule& rule) {
  const auto fail = [](const std::string& what) { throw std::invalid_argument("sparse_attention_dkv_fp32: " + what); };
  if (n_heads < 1 || n_kv < 0 || c < 0 || lists.rows < 0 || lists.width < 0) fail("negative or empty shape");
  const auto qh = static_cast<std::size_t>(lists.rows * n_heads);
  if (q.size() != qh * static_cast<std::size_t>(c) || dout.size() != q.size()) fail("q or dout is not [M·H, c]");
  if (prob.size() != qh * static_cast<std::size_t>(lists.width) || dlogit.size() != prob.size())
    fail("prob or dlogit is not [M·H, width]");
  if (lists.data.size() != static_cast<std::size_t>(lists.rows * lists.width)) fail("lists: data size mismatch");
  for (const std::int32_t e : lists.data) {
    if (e < -1 || e >= n_kv) fail("list entry " + std::to_string(e) + " outside [-1, " + std::to_string(n_kv) + ")");
  }
  const auto uc = static_cast<std::size_t>(c), uw = static_cast<std::size_t>(lists.width);
  return fp32_partitioned_sum(lists.rows, n_kv * c, rule,
                              [&](std::int64_t r0, std::int64_t r1, std::span<float> partial) {
                                for (std::int64_t r = r0; r < r1; ++r) {        // query rows ascending
                                  for (std::int64_t h = 0; h < n_heads; ++h) {  // then heads
                                    const auto qr = static_cast<std::size_t>(r * n_heads + h);
                                    const float* qv = q.data() + qr * uc;
                                    const float* ov = dout.data() + qr * uc;
                                    for (std::size_t j = 0; j < uw; ++j) {  // then list positions
                                      const std::int32_t e = lists.at(r, static_cast<std::int64_t>(j));
                                      if (e == -1) continue;
                                      const float p = prob[qr * uw + j], g = dlogit[qr * uw + j];
                                      float* row = partial.data() + static_cast<std::size_t>(e) * uc;
                                      for (std::size_t d = 0; d < uc; ++d)
                                        row[d] = std::fma(g, qv[d], std::fma(p, ov[d], row[d]));
                                    }
                                  }
                                }
                              });
}

std::vector<float> sparse_attention_dsink_fp32(std::span<const float> dz, std::int64_t rows, std::int64_t n_heads,
                                               const PartitionRule& rule) {
  if (rows < 0 || n_heads < 1 || dz.size() != static_cast<std::size_t>(rows * n_heads)) {
    throw std::invalid_argument("sparse_attention_dsink_fp32: " + std::to_string(dz.size()) + " values for " +
                                std::to_string(rows) + " rows of " + std::to_string(n_heads) + " heads");
  }
  return fp32_partitioned_sum(rows, n_heads, rule, [&](std::int64_t r0, std::int64_t r1, std::span<float> partial) {
    for (std::int64_t r = r0; r < r1; ++r) {  // query rows ascending
      for (std::int64_t h = 0; h < n_heads; ++h)
        partial[static_cast<std::size_t>(h)] += dz[static_cast<std::size_t>(r * n_heads + h)];
    }
  });
}

}  // namespace dsv4
