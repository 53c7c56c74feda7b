// issue 7: the KV-cache model of `dsv4 cost` equals what the CPU reference allocates.
// The reference's per-sequence attention state (Attention::allocate_state) is counted row by row
// and priced in the deployment format of spec 08 §8.1; the sum over layers must equal the
// analytic v4_kv_bytes of the cost model, for tiny and flash-slice at several context lengths.
#include <gtest/gtest.h>

#include "dsv4/cache/kv_cache.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/cost/cost_model.hpp"
#include "dsv4/model/attention.hpp"

namespace dsv4 {
namespace {

struct Counted {
  std::int64_t main_rows = 0;     // ring + compressed rows of width head_dim
  std::int64_t indexer_rows = 0;  // indexer key rows of width index_head_dim
  std::int64_t state_values = 0;  // fp32 compressor state values (K and Z, main and indexer)
};

Counted count_reference_allocation(const ModelConfig& cfg, bool include_mtp) {
  Counted n;
  const std::int64_t layers = cfg.n_layers + (include_mtp ? cfg.n_mtp_layers : 0);
  for (std::int64_t l = 0; l < layers; ++l) {
    const AttentionState st = Attention::allocate_state(cfg, l);
    EXPECT_EQ(st.window.cols(), cfg.head_dim);
    n.main_rows += st.window.rows() + st.compressed.rows();
    n.indexer_rows += st.indexer.cache.rows();
    if (st.indexer.cache.rows() > 0) {
      EXPECT_EQ(st.indexer.cache.cols(), cfg.index_head_dim);
    }
    n.state_values += 2 * (st.compressor.kv.size() + st.indexer.compressor.kv.size());
  }
  return n;
}

void expect_cost_model_matches_reference(const std::string& name, std::int64_t context) {
  ModelConfig cfg = builtin_config(name);
  cfg.max_seq_len = context;
  for (bool mtp : {false, true}) {
    const Counted n = count_reference_allocation(cfg, mtp);
    const std::int64_t reference_bytes =
        n.main_rows * cache::main_entry_bytes(cfg) + n.indexer_rows * cache::indexer_entry_bytes(cfg);
    EXPECT_EQ(static_cast<double>(reference_bytes), cost::v4_kv_bytes(cfg, context, true, mtp))
        << name << " at " << context << (mtp ? " with MTP" : "");
    // The same numbers from the allocator description that `dsv4 cost` prices.
    const cache::KVCache kv(cfg, context, 1, mtp);
    EXPECT_EQ(kv.footprint().deployment_bytes, reference_bytes);
    EXPECT_EQ(kv.footprint().state_bytes, 4 * n.state_values);
  }
}

TEST(CacheAllocation, TinyMatchesCostModel) {
  for (std::int64_t t : {16, 128, 256, 512, 1000}) expect_cost_model_matches_reference("tiny", t);
}

TEST(CacheAllocation, FlashSliceMatchesCostModel) {
  for (std::int64_t t : {128, 4096, 8192}) expect_cost_model_matches_reference("flash-slice", t);
}

TEST(CacheAllocation, ModelPricesEveryRowItCounts) {
  // A check that can fail: one extra ring row in one layer changes the byte count by one entry.
  ModelConfig cfg = builtin_config("tiny");
  const Counted n = count_reference_allocation(cfg, false);
  EXPECT_NE(static_cast<double>((n.main_rows + 1) * cache::main_entry_bytes(cfg) +
                                n.indexer_rows * cache::indexer_entry_bytes(cfg)),
            cost::v4_kv_bytes(cfg, cfg.max_seq_len, true, false));
}

}  // namespace
}  // namespace dsv4
