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

HeadRows head_rows(const Precision& p, const float* x, std::int64_t tokens, std::int64_t n, std::int64_t d,
                   const float* hc_fn, const float* hc_base, float hc_scale, const float* norm, const float* head,
                   std::int64_t vocab, double hc_eps, double norm_eps) {
  if (tokens < 0 || n < 1 || d < 1 || vocab < 1) {
    throw std::invalid_argument("head: tokens must be non-negative and hc_mult, dim, vocab positive");
  }
  ModelConfig c;
  c.hc_mult = n;
  c.dim = d;
  c.vocab_size = vocab;
  c.hc_eps = hc_eps;
  c.norm_eps = norm_eps;
  HcHeadWeights hw;
  hw.fn.resize(n, n * d);
  for (std::int64_t i = 0; i < n * n * d; ++i) hw.fn.data()[i] = hc_fn[i];
  hw.base.resize(n);
  for (std::int64_t k = 0; k < n; ++k) hw.base(k) = hc_base[k];
  hw.scale = hc_scale;
  Vec nw(d);
  for (std::int64_t i = 0; i < d; ++i) nw(i) = norm[i];
  Mat hm(vocab, d);
  for (std::int64_t i = 0; i < vocab * d; ++i) hm.data()[i] = head[i];
  const LinearWeight hl = LinearWeight::fp32_from(hm);
  HeadRows r;
  const auto append = [](std::vector<float>& out, const Mat& m) {
    for (Eigen::Index i = 0; i < m.size(); ++i) out.push_back(static_cast<float>(m.data()[i]));
  };
  for (std::int64_t t = 0; t < tokens; ++t) {
    Mat row(1, n * d);
    for (std::int64_t i = 0; i < n * d; ++i) row(0, i) = x[t * n * d + i];
    const HeadOutput o = head_forward(p, c, row, hw, nw, hl);
    append(r.hc_head, o.hc_head);
    append(r.norm, o.norm);
    append(r.logits, o.logits);
  }
  return r;
}

}  // namespace dsv4
