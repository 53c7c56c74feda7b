// spec 02 §2.8 (official code get_window_topk_idxs, get_compress_topk_idxs).
#include "dsv4/model/index_builders.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace dsv4 {

namespace {

void require(bool ok, const char* field, const std::string& why) {
  if (!ok) throw std::invalid_argument(std::string(field) + ": " + why);
}

std::int32_t to_i32(std::int64_t v) {
  require(v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max(), "index",
          std::to_string(v) + " does not fit int32");
  return static_cast<std::int32_t>(v);
}

}  // namespace

IndexLists::IndexLists(std::int64_t r, std::int64_t w, std::int32_t fill) : rows(r), width(w) {
  require(r >= 0 && w >= 0, "IndexLists", "negative shape");
  data.assign(static_cast<std::size_t>(r * w), fill);
}

// spec 02 §2.11.2 step 4: torch.cat([window, compressed], dim=-1).
IndexLists concat_lists(const IndexLists& a, const IndexLists& b) {
  require(a.rows == b.rows, "index lists",
          "row counts differ (" + std::to_string(a.rows) + " vs " + std::to_string(b.rows) + ")");
  IndexLists c(a.rows, a.width + b.width);
  for (std::int64_t r = 0; r < a.rows; ++r) {
    std::copy(a.row(r).begin(), a.row(r).end(), c.data.begin() + r * c.width);
    std::copy(b.row(r).begin(), b.row(r).end(), c.data.begin() + r * c.width + a.width);
  }
  return c;
}

// spec 02 §2.8.1 prefill case.
IndexLists window_lists_prefill(std::int64_t seqlen, std::int64_t window) {
  require(seqlen >= 1, "seqlen", "must be ≥ 1, got " + std::to_string(seqlen));
  require(window >= 1, "window_size", "must be ≥ 1, got " + std::to_string(window));
  const std::int64_t w = std::min(seqlen, window);
  IndexLists l(seqlen, w);
  for (std::int64_t t = 0; t < seqlen; ++t) {
    const std::int64_t a = std::max<std::int64_t>(0, t - window + 1);
    for (std::int64_t j = 0; j < w; ++j) l.at(t, j) = a + j > t ? -1 : to_i32(a + j);
  }
  return l;
}

// spec 02 §2.8.1 decode cases.
IndexLists window_lists_decode(std::int64_t start_pos, std::int64_t window) {
  require(start_pos >= 1, "start_pos", "decode needs start_pos ≥ 1, got " + std::to_string(start_pos));
  require(window >= 1, "window_size", "must be ≥ 1, got " + std::to_string(window));
  IndexLists l(1, window);
  if (start_pos >= window - 1) {
    const std::int64_t rho = start_pos % window;
    std::int64_t j = 0;
    for (std::int64_t s = rho + 1; s < window; ++s) l.at(0, j++) = to_i32(s);
    for (std::int64_t s = 0; s <= rho; ++s) l.at(0, j++) = to_i32(s);
  } else {
    for (std::int64_t s = 0; s <= start_pos; ++s) l.at(0, s) = to_i32(s);
  }
  return l;
}

// spec 02 §2.8.2 prefill.
IndexLists hca_lists_prefill(std::int64_t seqlen, std::int64_t ratio, std::int64_t offset) {
  require(seqlen >= 1, "seqlen", "must be ≥ 1, got " + std::to_string(seqlen));
  require(ratio >= 1, "compress_ratio", "must be ≥ 1, got " + std::to_string(ratio));
  require(offset >= 0, "offset", "must be ≥ 0, got " + std::to_string(offset));
  const std::int64_t w = seqlen / ratio;
  IndexLists l(seqlen, w);
  for (std::int64_t t = 0; t < seqlen; ++t) {
    const std::int64_t vis = visible_compressed_entries(t, ratio);
    for (std::int64_t i = 0; i < w; ++i) l.at(t, i) = i >= vis ? -1 : to_i32(i + offset);
  }
  return l;
}

// spec 02 §2.8.2 decode.
IndexLists hca_lists_decode(std::int64_t start_pos, std::int64_t ratio, std::int64_t offset) {
  require(start_pos >= 1, "start_pos", "decode needs start_pos ≥ 1, got " + std::to_string(start_pos));
  require(ratio >= 1, "compress_ratio", "must be ≥ 1, got " + std::to_string(ratio));
  require(offset >= 0, "offset", "must be ≥ 0, got " + std::to_string(offset));
  const std::int64_t w = visible_compressed_entries(start_pos, ratio);
  IndexLists l(1, w);
  for (std::int64_t i = 0; i < w; ++i) l.at(0, i) = to_i32(i + offset);
  return l;
}

// spec 02 §2.8.4.
bool compressed_entry_visible(std::int64_t entry, std::int64_t position, std::int64_t ratio) {
  return entry >= 0 && entry < visible_compressed_entries(position, ratio);
}

std::int64_t visible_compressed_entries(std::int64_t position, std::int64_t ratio) {
  require(ratio >= 1, "compress_ratio", "must be ≥ 1, got " + std::to_string(ratio));
  return position < 0 ? 0 : (position + 1) / ratio;
}

}  // namespace dsv4
