// spec 05 §5.5 (official code `MTPBlock.forward`).
#include "dsv4/model/mtp.hpp"

#include <stdexcept>
#include <string>
#include <utility>

#include "dsv4/model/indexer.hpp"
#include "dsv4/model/rmsnorm.hpp"
#include "dsv4/model/synthetic_weights.hpp"

namespace dsv4 {

namespace {

LinearWeight synthetic_projection(const ModelConfig& c, std::uint64_t seed, const char* name) {
  const double std = 1.0 / std::sqrt(static_cast<double>(c.dim));
  return c.dtype == "bf16" ? synthetic_bf16_weight(seed, name, c.dim, c.dim, std)
                           : synthetic_fp8_weight(seed, name, c.dim, c.dim, std);
}

void check_square(const char* field, const LinearWeight& w, std::int64_t d) {
  if (w.out_features() != d || w.in_features() != d)
    throw std::invalid_argument(std::string("mtp: ") + field + ": expected [dim, dim]");
}

void check_norm(const char* field, const Vec& w, std::int64_t d) {
  if (w.size() != d) throw std::invalid_argument(std::string("mtp: ") + field + ": expected dim entries");
}

}  // namespace

MtpWeights MtpWeights::synthetic(const ModelConfig& c, std::int64_t index, std::uint64_t seed) {
  const std::int64_t layer = c.n_layers + index;
  const std::uint64_t s = seed * 0x94D049BB133111EBULL + static_cast<std::uint64_t>(index) + 7;
  MtpWeights w;
  w.e_proj = synthetic_projection(c, s, "mtp.e_proj");
  w.h_proj = synthetic_projection(c, s, "mtp.h_proj");
  w.enorm = synthetic_norm_weight(s, "mtp.enorm", c.dim);
  w.hnorm = synthetic_norm_weight(s, "mtp.hnorm", c.dim);
  w.norm = synthetic_norm_weight(s, "mtp.norm", c.dim);
  w.hc_head = HcHeadWeights::synthetic(c, s ^ 0x4EADULL);
  w.block = BlockWeights::synthetic(c, layer, seed);
  return w;
}

MtpBlock::MtpBlock(Precision prec, const ModelConfig& cfg, std::int64_t index, MtpWeights weights)
    : prec_(prec),
      cfg_(cfg),
      e_proj_(std::move(weights.e_proj)),
      h_proj_(std::move(weights.h_proj)),
      enorm_(std::move(weights.enorm)),
      hnorm_(std::move(weights.hnorm)),
      norm_(std::move(weights.norm)),
      hc_head_(std::move(weights.hc_head)),
      block_(prec, cfg, cfg.n_layers + index, std::move(weights.block)) {
  check_square("e_proj", e_proj_, cfg.dim);
  check_square("h_proj", h_proj_, cfg.dim);
  check_norm("enorm", enorm_, cfg.dim);
  check_norm("hnorm", hnorm_, cfg.dim);
  check_norm("norm", norm_, cfg.dim);
}

// spec 05 §5.5.
Mat MtpBlock::input_state(const Mat& h, const std::vector<std::int64_t>& token_ids, const Mat& embed) const {
  const std::int64_t s = h.rows(), n = cfg_.hc_mult, d = cfg_.dim;
  if (h.cols() != n * d) throw std::invalid_argument("mtp: h must have hc_mult·dim columns");
  // Step 1: e = enorm(embed[ids]).
  const Mat e = rmsnorm(prec_, embed_tokens(embed, token_ids), enorm_, cfg_.norm_eps);
  // Step 2: hnorm over d for every stream separately (rows of the [s·n, d] view).
  const Mat streams = Eigen::Map<const Mat>(h.data(), s * n, d);
  const Mat h_norm = rmsnorm(prec_, streams, hnorm_, cfg_.norm_eps);
  // Step 3: X = bf16(e_proj(e) broadcast over the streams + h_proj(Ĥ)) — a bf16 element-wise add (C6).
  const Mat pe = linear(prec_, e, e_proj_);
  const Mat ph = linear(prec_, h_norm, h_proj_);
  Mat x(s, n * d);
  for (std::int64_t t = 0; t < s; ++t) {
    for (std::int64_t k = 0; k < n; ++k) {
      for (std::int64_t j = 0; j < d; ++j) x(t, k * d + j) = prec_.bf16(prec_.fp32(pe(t, j) + ph(t * n + k, j)));
    }
  }
  return x;
}

MtpOutput MtpBlock::forward(const Mat& h, const std::vector<std::int64_t>& token_ids, std::int64_t start_pos,
                            AttentionState& st, const Mat& embed, const LinearWeight& head) const {
  MtpOutput out;
  out.x_in = input_state(h, token_ids, embed);  // steps 1–3
  // Steps 4–5.
  out.block = block_.forward(out.x_in, token_ids, start_pos, st);
  out.head = head_forward(prec_, cfg_, out.block.x_out, hc_head_, norm_, head);
  return out;
}

}  // namespace dsv4
