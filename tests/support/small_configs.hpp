// Small shapes shared by the component tests and the property suites (properties/*_props.cpp
// include this header by its relative path): the three compressor kinds at d = 32, and the
// built-in tiny config shortened to 160 positions with its attention layers, built once per
// (mode, layer, batch).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "dsv4/config/model_config.hpp"
#include "dsv4/model/attention.hpp"
#include "dsv4/model/compressor.hpp"
#include "dsv4/model/precision.hpp"

namespace dsv4::testing_support {

// ---- compressors: d = 32; main D = 72 with r_d = 8 (one FP8 block of nope dims), indexer D = 32
namespace compressor_kinds {

constexpr std::int64_t kDim = 32;
constexpr std::int64_t kRd = 8;
constexpr std::int64_t kMaxSeq = 512;

// kind 0: main ratio 4 (overlap), 1: main ratio 128, 2: indexer ratio 4 (Hadamard + FP4).
inline CompressorSpec spec_of(int kind) {
  CompressorSpec s;
  s.ratio = kind == 1 ? 128 : 4;
  s.dim = kDim;
  s.head_dim = kind == 2 ? 32 : 64 + kRd;
  s.rope_head_dim = kRd;
  s.rotate = kind == 2;
  s.max_seq_len = kMaxSeq;
  s.rope.rope_head_dim = kRd;
  s.rope.base = 160000.0;
  s.rope.factor = 16.0;
  s.rope.original_seq_len = 64;
  return s;
}

inline const char* kind_name(int kind) { return kind == 0 ? "main4" : kind == 1 ? "main128" : "indexer4"; }

}  // namespace compressor_kinds

// ---- tiny (window 16, ratios 0/128/4), shortened to 160 positions; layer 0 SWA, 1 HCA-128, 2 CSA-4.
inline ModelConfig small_tiny() {
  ModelConfig c = builtin_config("tiny");
  c.max_seq_len = 160;
  c.n_heads = 4;
  c.o_groups = 2;
  return c;
}

// small_tiny's Attention of `layer` (synthetic weights, seed 42), built on first use; max_batch 0
// keeps tiny's max_batch_size.
inline const Attention& small_tiny_attention(Mode mode, std::int64_t layer, std::int64_t max_batch = 0) {
  static std::map<std::tuple<int, std::int64_t, std::int64_t>, std::unique_ptr<Attention>> cache;
  auto& slot = cache[{static_cast<int>(mode), layer, max_batch}];
  if (!slot) {
    ModelConfig cfg = small_tiny();
    if (max_batch > 0) cfg.max_batch_size = max_batch;
    slot = std::make_unique<Attention>(Precision(mode), cfg, layer, AttentionWeights::synthetic(cfg, layer, 42));
  }
  return *slot;
}

}  // namespace dsv4::testing_support
