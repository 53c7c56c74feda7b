// Registration of hadamard (spec 01 §1.10): y = bf16(fl32(WHT(x) × fl32(N^−1/2))) on every size-N
// segment of every row, the fp32 radix-2 butterflies in increasing stage order.
#include <cmath>
#include <string>
#include <utility>

#include "dsv4/gpu/hadamard.hpp"
#include "dsv4/model/hadamard.hpp"
#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"
#include "dsv4/ops/case_inputs.hpp"
#include "dsv4/ops/gradient.hpp"
#include "dsv4/train/hadamard_backward.hpp"
#include "op_list.hpp"

namespace dsv4::ops::detail {
namespace {

// ints {size}; inputs x [rows, cols] (per row, bf16 values) → y [rows, cols] (bf16 values).
Outputs reference(const Call& c) {
  const Array& x = c.inputs.at(0);
  Mat m(x.rows, x.cols);
  for (std::int64_t i = 0; i < x.elements(); ++i) m.data()[i] = x.f32[static_cast<std::size_t>(i)];
  hadamard_inplace(Precision(Mode::kOfficial), m, c.ints.at(0));
  return {Array::floats("y", x.rows, x.cols, std::vector<float>(m.data(), m.data() + m.size()))};
}

#if DSV4_HAVE_CUDA
Outputs device(const Call& c) {
  const Array& x = c.inputs.at(0);
  return {Array::floats("y", x.rows, x.cols, gpu::hadamard(x.f32.data(), x.rows, x.cols, c.ints.at(0)))};
}
#endif

// The edge activations (zero blocks, subnormals, e4m3/e2m1 ties, outliers, wide ranges) with every
// value of magnitude ≥ 2^96 scaled by 2^-24: a butterfly sum of up to 2^14 of them stays finite.
// (An fp32 overflow would make inf − inf = NaN somewhere, and a NaN's payload is the machine's,
// not the arithmetic's: the bits compared would be the NaN's.)
std::vector<float> activations(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  std::vector<float> x = edge_activations(rows, cols, seed);
  for (float& v : x) {
    if (std::fabs(v) >= 0x1p96f) v = round_bf16(static_cast<double>(v) * 0x1p-24);
  }
  return x;
}

// Small integers: with N = 4^k the scale 2^-k is exact and the bf16 rounding of the integer sums
// (beyond 8 significant bits) meets many exact ties.
std::vector<float> small_integers(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  const CounterRng rng(seed, stream_id("ops.hadamard.integers"));
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(rng.words(i)[0] % 17) - 8);
  return x;
}

// A case of x [rows, cols] with segment size `size`, labelled by its shape, size and `what`.
Case make_case(std::int64_t rows, std::int64_t cols, std::int64_t size, const std::string& what, std::vector<float> x) {
  Case c;
  c.label = shape_label({rows, cols}) + " size " + std::to_string(size) + " " + what;
  c.call.ints = {size};
  c.call.inputs = {Array::floats("x", rows, cols, std::move(x))};
  return c;
}

struct Spec {
  std::int64_t rows, cols, size;
};

std::vector<Case> hadamard_cases(std::uint64_t seed) {
  std::vector<Case> cases;
  std::uint64_t k = 0;
  // The model's rotation: N = c_I = 128 (indexer queries per head, compressed index keys), one or
  // several segments per row; other powers of two from 1 to 2^14 (beyond 8192 the kernel works in
  // global memory instead of shared memory).
  for (const Spec s : std::vector<Spec>{{1, 128, 128},
                                        {64, 128, 128},
                                        {300, 128, 128},
                                        {17, 8192, 128},
                                        {5, 1024, 1024},
                                        {3, 4096, 0},
                                        {2, 8192, 8192},
                                        {2, 32768, 16384},
                                        {7, 64, 64},
                                        {9, 32, 2},
                                        {4, 3, 1}}) {
    ++k;
    cases.push_back(
        make_case(s.rows, s.cols, s.size, "activations", activations(s.rows, s.cols, seed * 1000 + 300 + k)));
  }
  for (const Spec s : std::vector<Spec>{{32, 256, 256}, {16, 1024, 64}, {8, 1024, 1024}}) {
    ++k;
    cases.push_back(make_case(s.rows, s.cols, s.size, "small integers (bf16 ties)",
                              small_integers(s.rows, s.cols, seed * 1000 + 300 + k)));
  }
  std::vector<float> zeros(8 * 512, 0.0f);  // all zeros (signed)
  for (std::size_t i = 0; i < zeros.size(); i += 3) zeros[i] = -0.0f;
  cases.push_back(make_case(8, 512, 128, "signed zeros", std::move(zeros)));
  return cases;
}

// The backward (spec 06 §6.12, ref/train hadamard_backward): dx from dy. Linear: no kinks.
GradientForms hadamard_gradient() {
  GradientForms g;
  g.outputs = {"y"};
  g.wrt = {0};
  g.forward_exact = [](const Call& c) {
    return Doubles{flat(hadamard(Precision(Mode::kExact), to_mat(c.inputs.at(0)), c.ints.at(0)))};
  };
  g.forward_mp50 = [](const Call& c, const Mp50s& x) {
    std::vector<Mp50> y = x.at(0);
    hadamard_exact_inplace(y, c.inputs.at(0).rows, c.inputs.at(0).cols, c.ints.at(0));
    return Mp50s{std::move(y)};
  };
  g.backward = [](const Call& c) { return Doubles{flat(hadamard_backward(to_mat(c.inputs.at(1)), c.ints.at(0)))}; };
  g.cases = [](std::uint64_t seed) {
    const std::vector<Spec> specs = {{3, 16, 8}, {2, 16, 0}, {2, 3, 1}};
    return cases_of(specs, [&](const Spec& s, std::uint64_t k) {
      Case c = make_case(s.rows, s.cols, s.size, "(linear: no kinks)",
                         normals(s.rows * s.cols, 1.0, seed * 100 + k, "grad.hadamard.x"));
      c.call.inputs.push_back(upstream("dy", s.rows, s.cols, seed * 100 + k, "grad.hadamard.dy"));
      return c;
    });
  };
  return g;
}

}  // namespace

Op hadamard_op() {
  return registration("hadamard", "spec 01 §1.10",
                      "Walsh–Hadamard rotation: bf16(fl32(WHT(x) · fl32(N^-1/2))) per size-N segment, fp32 butterflies",
                      {"size"}, {}, reference, DSV4_OPS_DEVICE(device), hadamard_cases, hadamard_gradient());
}

}  // namespace dsv4::ops::detail
