// Registration of embedding (spec 05 §5.1): h = embed[id], a bf16 row gather.
#include <memory>
#include <string>

#include "dsv4/gpu/embedding.hpp"
#include "dsv4/model/head.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/embedding_backward.hpp"
#include "op_list.hpp"
#include "resident_device.hpp"

namespace dsv4::ops::detail {
namespace {

// inputs ids [rows, 1] (per row, token ids as exact integers), embed [vocab, dim] (shared, bf16
// values) → h [rows, dim].
std::vector<std::int64_t> token_ids(const Array& ids) {
  if (ids.cols != 1) throw std::invalid_argument("embedding: ids must be [rows, 1]");
  std::vector<std::int64_t> t(static_cast<std::size_t>(ids.rows));
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<std::int64_t>(ids.f32[i]);
  return t;
}

Outputs reference(const Call& c) {
  const Array& ids = c.inputs.at(0);
  const Array& embed = c.inputs.at(1);
  Mat e(embed.rows, embed.cols);
  for (std::int64_t i = 0; i < embed.elements(); ++i) e.data()[i] = embed.f32[static_cast<std::size_t>(i)];
  const Mat h = embed_tokens(e, token_ids(ids));
  return {Array::floats("h", ids.rows, embed.cols, to_floats(h))};
}

#if DSV4_HAVE_CUDA
// gpu::embedding_resident with the table's device copy (kept with a resident table:
// resident_device.hpp).
Outputs device(const Call& c) {
  const Array& ids = c.inputs.at(0);
  const Array& embed = c.inputs.at(1);
  const std::vector<std::int64_t> t = token_ids(ids);
  std::vector<std::shared_ptr<const void>> hold;
  const float* table = device_floats(embed, "values", embed.f32.data(), hold);
  return {Array::floats("h", ids.rows, embed.cols,
                        gpu::embedding_resident(t.data(), ids.rows, table, embed.rows, embed.cols))};
}
#endif

// Ids: row 0 → 0, row 1 → vocab − 1, row 2 → the same id as row 3 (a repeated token), the rest
// uniform in [0, vocab).
std::vector<float> ids(std::int64_t rows, std::int64_t vocab, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.embedding.ids"));
  std::vector<float> t(static_cast<std::size_t>(rows));
  for (std::size_t r = 0; r < t.size(); ++r) t[r] = static_cast<float>(rng.words(r)[0] % vocab);
  if (rows > 0) t[0] = 0.0f;
  if (rows > 1) t[1] = static_cast<float>(vocab - 1);
  if (rows > 3) t[2] = t[3];
  return t;
}

std::vector<Case> embedding_cases(std::uint64_t seed) {
  struct Spec {
    std::int64_t rows, vocab, dim;
    const char* what;
  };
  // Tables of edge activations (signed zeros, subnormals, outliers: a gather must keep every bit);
  // the V4 vocabulary (129,280) at a narrow width, and narrow vocabularies at the model's widths.
  const std::vector<Spec> specs = {{64, 129280, 8, "V4 vocabulary"},
                                   {300, 512, 4096, "Flash width"},
                                   {5, 256, 7168, "V4 width"},
                                   {17, 1000, 96, "odd"},
                                   {1, 1, 32, "one-token vocabulary"}};
  return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
    Case c;
    c.label = std::to_string(s.rows) + " ids, " + shape_label({s.vocab, s.dim}) + " table, " + s.what;
    Array embed = Array::floats("embed", s.vocab, s.dim, edge_activations(s.vocab, s.dim, seed * 1000 + 200 + k));
    embed.per_row = false;
    c.call.inputs = {Array::floats("ids", s.rows, 1, ids(s.rows, s.vocab, seed * 1000 + 250 + k)), std::move(embed)};
    return c;
  });
}

// The backward (spec 06 §6.12, ref/train embedding_backward): d(embed) from dh; ids have none.
// A gather is linear in the table: no kinks anywhere.
GradientForms embedding_gradient() {
  GradientForms g;
  g.outputs = {"h"};
  g.wrt = {1};
  g.forward_exact = [](const Call& c) {
    return Doubles{flat(embed_tokens(to_mat(c.inputs.at(1)), token_ids(c.inputs.at(0))))};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& embed = c.inputs.at(1);
    return Mp50s{embedding_gather(x.at(1), embed.rows, embed.cols, token_ids(c.inputs.at(0)))};
  };
  g.backward = [](const Call& c) {
    return Doubles{flat(embedding_backward(token_ids(c.inputs.at(0)), to_mat(c.inputs.at(2)), c.inputs.at(1).rows))};
  };
  g.cases = [](std::uint64_t seed) {
    std::vector<Case> cases;
    for (const Shape s : std::vector<Shape>{{6, 5}, {9, 3}}) {
      const std::int64_t vocab = s.rows, dim = s.cols, tokens = vocab + 1;  // at least one id repeats
      Case c;
      c.label = std::to_string(tokens) + " ids (repeated), " + shape_label(s) + " table (linear: no kinks)";
      Array embed = Array::floats("embed", vocab, dim, normals(vocab * dim, 1.0, seed * 100 + vocab, "grad.embedding"));
      embed.per_row = false;
      c.call.inputs = {Array::floats("ids", tokens, 1, ids(tokens, vocab, seed * 100 + vocab)), std::move(embed),
                       upstream("dh", tokens, dim, seed * 100 + vocab, "grad.embedding.dh")};
      cases.push_back(std::move(c));
    }
    return cases;
  };
  return g;
}

}  // namespace

Op embedding_op() {
  return registration("embedding", "spec 05 §5.1", "embedding: h = embed[id], a bf16 row gather", {}, {}, reference,
                      DSV4_OPS_DEVICE(device), embedding_cases, embedding_gradient(), /*resident_inputs=*/true);
}

}  // namespace dsv4::ops::detail
