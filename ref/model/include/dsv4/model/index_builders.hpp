// Index lists of sparse attention (spec 02 §2.8): per query one int32 list = window part ‖
// compressed part, −1 meaning "no entry". Indices address the KV tensor handed to sparse attention:
// in prefill [window KV of the s tokens ‖ compressed entries of the call], in decode the whole cache
// [ring of n_win slots ‖ compressed rows].
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace dsv4 {

// rows × width int32 entries, row-major (one row per query token).
struct IndexLists {
  std::int64_t rows = 0;
  std::int64_t width = 0;
  std::vector<std::int32_t> data;

  IndexLists() = default;
  IndexLists(std::int64_t r, std::int64_t w, std::int32_t fill = -1);
  std::int32_t& at(std::int64_t r, std::int64_t j) { return data[static_cast<std::size_t>(r * width + j)]; }
  std::int32_t at(std::int64_t r, std::int64_t j) const { return data[static_cast<std::size_t>(r * width + j)]; }
  std::span<const std::int32_t> row(std::int64_t r) const {
    return {data.data() + r * width, static_cast<std::size_t>(width)};
  }
  bool operator==(const IndexLists&) const = default;
};

// spec 02 §2.11.2 step 4 / §2.11.3: the concatenation (a ‖ b) row by row. Throws
// std::invalid_argument when the row counts differ.
IndexLists concat_lists(const IndexLists& a, const IndexLists& b);

// spec 02 §2.8.1, prefill case (official code get_window_topk_idxs, start_pos = 0): width
// W = min(s, n_win); query t: entry j = a_t + j with a_t = max(0, t − n_win + 1), −1 where a_t + j > t.
// Throws std::invalid_argument naming the field for seqlen < 1 or window < 1.
IndexLists window_lists_prefill(std::int64_t seqlen, std::int64_t window);

// spec 02 §2.8.1, decode cases (start_pos = p > 0, one token): width n_win;
//   p < n_win − 1: [0, 1, …, p, −1, …, −1];
//   p ≥ n_win − 1: with ρ = p mod n_win, [ρ+1, …, n_win−1, 0, …, ρ] (ring slots oldest → newest).
// Throws std::invalid_argument naming the field for p < 1 or window < 1.
IndexLists window_lists_decode(std::int64_t start_pos, std::int64_t window);

// spec 02 §2.8.2, prefill (official code get_compress_topk_idxs, start_pos = 0): width ⌊s/m⌋; query
// t: [0, …, ⌊s/m⌋ − 1] with entries i ≥ ⌊(t+1)/m⌋ replaced by −1, the others + offset (offset = s).
IndexLists hca_lists_prefill(std::int64_t seqlen, std::int64_t ratio, std::int64_t offset);

// spec 02 §2.8.2, decode at p: [0, …, ⌊(p+1)/m⌋ − 1] + offset (offset = n_win); width ⌊(p+1)/m⌋.
IndexLists hca_lists_decode(std::int64_t start_pos, std::int64_t ratio, std::int64_t offset);

// spec 02 §2.8.4: compressed entry i (block [m·i, m(i+1))) is visible to query position t iff
// m(i+1) − 1 ≤ t, i.e. i < ⌊(t+1)/m⌋ (the code's rule; the report's i < ⌊t/m⌋ is one token late).
bool compressed_entry_visible(std::int64_t entry, std::int64_t position, std::int64_t ratio);
// Number of compressed entries visible to position t: ⌊(t+1)/m⌋.
std::int64_t visible_compressed_entries(std::int64_t position, std::int64_t ratio);

}  // namespace dsv4
