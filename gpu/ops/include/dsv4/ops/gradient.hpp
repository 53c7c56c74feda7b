// The backward half of an op registration (spec 06 §6.12; gpu/README.md §The op registry): the
// exact-mode backward of the training reference (ref/train/<stem>_backward) and the two forms of
// its forward that the gradient check (dsv4/ops/gradient_check.hpp) differentiates.
//
// Calling convention of a backward (GradientForms::backward and Op::backward_reference): the
// forward's inputs in the forward's order, followed by one upstream gradient per forward output
// (named "d" + the output's name, with the output's shape, per row). It returns one gradient per
// differentiable input (GradientForms::wrt, in that order; named "d" + the input's name, with the
// input's shape). Differentiable are the float inputs that carry values — activations, weights,
// gains, routing weights — never token ids, positions or tables of constants (the RoPE cos/sin
// table is a function of integers and the config). The gradient of a shared input (a weight) is the
// sum over every row of the call, rows in ascending order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dsv4/model/precision.hpp"
#include "dsv4/numerics/multiprecision.hpp"
#include "dsv4/ops/op.hpp"

namespace dsv4::ops {

// Flat row-major arrays, one per input or output (the layout of Array).
using Doubles = std::vector<std::vector<double>>;
using Mp50s = std::vector<std::vector<Mp50>>;

struct GradientForms {
  std::vector<std::string> outputs;  // the forward's outputs, in order (their upstream gradients follow the inputs)
  std::vector<std::size_t> wrt;      // the differentiable inputs: indices into the forward's Call::inputs
  // Exact mode's forward as the reference computes it (ref/model, Precision(Mode::kExact), double):
  // the forward's call → one flat array per output.
  std::function<Doubles(const Call&)> forward_exact;
  // The same equations evaluated in Mp50 (each registration says how): `x` holds every forward input
  // as Mp50 (the gradient check perturbs the differentiable ones); `call` gives the parameters and
  // the non-differentiable inputs.
  std::function<Mp50s(const Call& call, const Mp50s& x)> forward_mp50;
  // The exact-mode backward (ref/train, double): call = forward inputs + upstream gradients →
  // one flat array per wrt input.
  std::function<Doubles(const Call&)> backward;
  // Gradient-check points (forward inputs + upstream gradients): small shapes, values away from
  // every clamp edge, top-k cut and quantiser boundary by a margin each label states.
  std::function<std::vector<Case>(std::uint64_t seed)> cases;
};

// Registers `g` as op's backward: op.gradient = g, and op.backward_reference = g.backward in the
// registry's flat form (Array outputs "d" + input name, the input's shape, values rounded once to fp32).
void set_backward(Op& op, GradientForms g);

// ---- conversions for registrations ----
std::vector<double> doubles(const Array& a);
Mat to_mat(const Array& a);              // [rows, cols]
Vec to_vec(const Array& a);              // all elements, row-major
std::vector<double> flat(const Mat& m);  // row-major
std::vector<double> flat(const Vec& v);
Mat to_mat(const std::vector<double>& v, std::int64_t rows, std::int64_t cols);
// Integer-valued float inputs (ids, positions) as integers (std::invalid_argument for a fraction).
std::vector<std::int64_t> checked_integers(const Array& a);
// n values σ·N(0, 1) rounded to fp32, from the counter-based RNG (seed, stream): check points and
// upstream gradients of the gradient-check cases.
std::vector<float> normals(std::int64_t n, double sigma, std::uint64_t seed, const char* stream);
// The same values rounded once more to bf16 (check points and cases of ops whose official forward
// takes bf16 activations or weights).
std::vector<float> bf16_normals(std::int64_t n, double sigma, std::uint64_t seed, const char* stream);
// An upstream gradient of a gradient-check case: the Array `name` [rows, cols] of
// normals(rows · cols, 1.0, seed, stream).
Array upstream(std::string name, std::int64_t rows, std::int64_t cols, std::uint64_t seed, const char* stream);
// The forward's call alone (the first n_inputs inputs of a backward call).
Call forward_call(const Call& backward_call, std::size_t n_inputs);

}  // namespace dsv4::ops
