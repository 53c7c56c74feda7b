// `dsv4 golden verify --recompute` (recompute.hpp).
#include "dsv4/golden/recompute.hpp"

#include <set>
#include <utility>

#include "dsv4/audit/tensor_move.hpp"
#include "dsv4/model/transformer.hpp"

namespace dsv4 {

namespace {

// The row-major coordinate of flat element `i` of a tensor of shape `shape`.
std::vector<std::int64_t> unflatten(std::int64_t i, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> c(shape.size(), 0);
  for (std::size_t d = shape.size(); d-- > 0;) {
    if (shape[d] <= 0) continue;
    c[d] = i % shape[d];
    i /= shape[d];
  }
  return c;
}

}  // namespace

std::string coordinate_text(const std::vector<std::int64_t>& coordinate) {
  std::string s = "[";
  for (std::size_t i = 0; i < coordinate.size(); ++i) s += (i ? ", " : "") + std::to_string(coordinate[i]);
  return s + "]";
}

GoldenRecomputeResult recompute_official(const Golden& g, const ModelWeights& w, const OfficialRunner* runner,
                                         const StepProgressFn& progress) {
  GoldenRecomputeResult r;
  r.device = runner ? runner->device : "cpu";
  if (runner) check_runner_batch(*runner, static_cast<std::int64_t>(g.tokens().size()));
  const ModelConfig& c = g.config();
  MemoryRecorder rec;
  if (runner) {
    runner->run(c, w, g.tokens(), g.steps(), rec, progress);
  } else {
    const Transformer model(Precision(Mode::kOfficial), c, w);
    run_plan(model, g.tokens(), g.steps(), rec, progress);
  }
  add_choice_scores(c, gate_biases(w), Mode::kOfficial, rec);  // as generate_golden does

  const auto fail = [&](RecomputeMismatch m) {
    ++r.differing_outputs;
    if (!r.first) r.first = std::move(m);
  };
  std::set<std::string> recomputed;
  for (const std::string& name : rec.order()) {  // execution order (the choice scores last)
    recomputed.insert(name);
    const RecordedTensor& t = rec.at(name);
    const GoldenEntry* e = g.find("official/" + name);
    if (e == nullptr) {
      fail({name, {}, 0, 0, 0, "recomputed but not in the golden"});
      continue;
    }
    if (e->shape != t.shape) {
      fail({name,
            {},
            0,
            0,
            0,
            "shape " + coordinate_text(t.shape) + " recomputed, " + coordinate_text(e->shape) + " stored"});
      continue;
    }
    const std::vector<double> stored = g.values("official", name);
    ++r.outputs;
    r.values += static_cast<std::int64_t>(stored.size());
    // Bits, not values: tensor_move compares every element's bit pattern (a −0 for a +0 differs).
    const std::optional<audit::TensorMove> m =
        audit::tensor_move(name, stored, t.values, t.integral ? DType::kI64 : DType::kF64);
    if (m) fail({name, unflatten(m->first_element, e->shape), m->yardstick, m->other, m->differing, ""});
  }
  for (const std::string& name : g.canonical_names())
    if (g.find("official/" + name) != nullptr && recomputed.count(name) == 0)
      fail({name, {}, 0, 0, 0, "not recomputed"});
  return r;
}

}  // namespace dsv4
