// Registration of cross_entropy (spec 06 §6.5, §6.12; ref/train/cross_entropy.hpp): the per-token
// next-token loss c_t = lse(ℓ_t) − ℓ_{t,y_t} of fp32 logits. No official training code exists, so
// the registry's reference (official form) is the reference's own double loss of the fp32 logits,
// rounded once to fp32; the mean over tokens (lm_loss) is the caller's and not part of the op (every
// output of an op is per row).
#include <string>

#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/cross_entropy.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// inputs logits [rows, vocab] (per row, fp32), targets [rows, 1] (per row, token ids as exact
// integers) → loss [rows, 1].
Outputs reference(const Call& c) {
  const Array& logits = c.inputs.at(0);
  const Vec loss = token_cross_entropy(to_mat(logits), checked_integers(c.inputs.at(1)));
  return {Array::floats("loss", logits.rows, 1, to_floats(loss))};
}

// Targets: uniform in [0, vocab), row 0 the row's largest logit, row 1 its smallest.
std::vector<float> targets(const std::vector<float>& logits, std::int64_t rows, std::int64_t vocab,
                           std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.cross_entropy.targets"));
  std::vector<float> t(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t pick = static_cast<std::int64_t>(rng.words(static_cast<std::uint64_t>(r))[0] % vocab);
    if (r < 2) {
      pick = 0;
      for (std::int64_t v = 1; v < vocab; ++v) {
        const float a = logits[static_cast<std::size_t>(r * vocab + v)],
                    b = logits[static_cast<std::size_t>(r * vocab + pick)];
        if (r == 0 ? a > b : a < b) pick = v;
      }
    }
    t[static_cast<std::size_t>(r)] = static_cast<float>(pick);
  }
  return t;
}

Case make_case(std::int64_t rows, std::int64_t vocab, double sigma, std::uint64_t seed, const std::string& what,
               bool with_upstream) {
  Case c;
  c.label = shape_label({rows, vocab}) + " logits σ " + std::to_string(static_cast<int>(sigma)) + ", " + what;
  std::vector<float> l = normals(rows * vocab, sigma, seed, "ops.cross_entropy.logits");
  std::vector<float> t = targets(l, rows, vocab, seed);
  c.call.inputs = {Array::floats("logits", rows, vocab, std::move(l)), Array::floats("targets", rows, 1, std::move(t))};
  if (with_upstream) c.call.inputs.push_back(upstream("dloss", rows, 1, seed, "grad.cross_entropy.dloss"));
  return c;
}

std::vector<Case> cross_entropy_cases(std::uint64_t seed) {
  return {make_case(4, 129280, 3.0, seed * 1000 + 1, "V4 vocabulary", false),
          make_case(64, 1024, 1.0, seed * 1000 + 2, "tiny vocabulary", false),
          make_case(17, 7, 40.0, seed * 1000 + 3, "peaked (exp underflows)", false),
          make_case(3, 1, 1.0, seed * 1000 + 4, "one-token vocabulary (loss 0)", false)};
}

// The backward (spec 06 §6.12): d(logits) = dc·(softmax − onehot); targets have none. lse is smooth
// everywhere: no kinks.
GradientForms cross_entropy_gradient() {
  GradientForms g;
  g.outputs = {"loss"};
  g.wrt = {0};
  g.forward_exact = [](const Call& c) {
    return Doubles{flat(token_cross_entropy(to_mat(c.inputs.at(0)), checked_integers(c.inputs.at(1))))};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    const Array& logits = c.inputs.at(0);
    const std::vector<std::int64_t> t = checked_integers(c.inputs.at(1));
    std::vector<Mp50> loss(static_cast<std::size_t>(logits.rows));
    for (std::int64_t r = 0; r < logits.rows; ++r) {
      const Mp50* row = x.at(0).data() + r * logits.cols;
      loss[static_cast<std::size_t>(r)] = log_sum_exp(row, logits.cols) - row[t[static_cast<std::size_t>(r)]];
    }
    return Mp50s{loss};
  };
  g.backward = [](const Call& c) {
    return Doubles{
        flat(cross_entropy_backward(to_mat(c.inputs.at(0)), checked_integers(c.inputs.at(1)), to_vec(c.inputs.at(2))))};
  };
  g.cases = [](std::uint64_t seed) {
    return std::vector<Case>{make_case(3, 7, 1.0, seed * 100 + 1, "smooth", true),
                             make_case(2, 16, 6.0, seed * 100 + 2, "peaked, smooth", true),
                             make_case(4, 1, 1.0, seed * 100 + 3, "one-token vocabulary, gradient 0", true)};
  };
  return g;
}

}  // namespace

Op cross_entropy_op() {
  return registration(
      "cross_entropy", "spec 06 §6.5",
      "next-token cross-entropy per token: lse(logits) − logits[target] (fp32 logits, double, rounded once)", {}, {},
      reference, Fn(), cross_entropy_cases, cross_entropy_gradient());
}

}  // namespace dsv4::ops::detail
