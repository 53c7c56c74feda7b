// spec 05 §5.1 (embedding, stream expansion) and §5.3 (head).
#include "dsv4/model/head.hpp"

#include <stdexcept>
#include <string>

#include "dsv4/model/rmsnorm.hpp"

namespace dsv4 {

// spec 05 §5.1.
Mat embed_tokens(const Mat& embed, const std::vector<std::int64_t>& token_ids) {
  Mat h(static_cast<std::int64_t>(token_ids.size()), embed.cols());
  for (std::size_t t = 0; t < token_ids.size(); ++t) {
    const std::int64_t id = token_ids[t];
    if (id < 0 || id >= embed.rows()) {
      throw std::invalid_argument("token_ids: id " + std::to_string(id) + " at position " + std::to_string(t) +
                                  " outside the vocabulary [0, " + std::to_string(embed.rows()) + ")");
    }
    h.row(static_cast<std::int64_t>(t)) = embed.row(id);
  }
  return h;
}

// spec 05 §5.1: the embedding copied into all n streams.
Mat expand_streams(const Mat& h, std::int64_t n) {
  const std::int64_t d = h.cols();
  Mat x(h.rows(), n * d);
  for (std::int64_t k = 0; k < n; ++k) x.middleCols(k * d, d) = h;
  return x;
}

// spec 05 §5.3.
HeadOutput head_forward(const Precision& p, const ModelConfig& c, const Mat& x, const HcHeadWeights& hc_head,
                        const Vec& norm, const LinearWeight& head) {
  if (x.rows() < 1) throw std::invalid_argument("head: empty sequence");
  HeadOutput out;
  out.hc_head = dsv4::hc_head(p, c, x, hc_head);
  out.norm = rmsnorm(p, out.hc_head, norm, c.norm_eps);
  out.logits = linear(p, out.norm.bottomRows(1), head);
  return out;
}

}  // namespace dsv4
