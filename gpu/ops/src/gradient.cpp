// The backward half of a registration (dsv4/ops/gradient.hpp; spec 06 §6.12).
#include "dsv4/ops/gradient.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4::ops {

void set_backward(Op& op, GradientForms g) {
  auto forms = std::make_shared<const GradientForms>(std::move(g));
  op.gradient = forms;
  op.backward_reference = [forms](const Call& c) {
    const Doubles grads = forms->backward(c);
    if (grads.size() != forms->wrt.size()) {
      throw std::logic_error("backward returned " + std::to_string(grads.size()) + " gradients for " +
                             std::to_string(forms->wrt.size()) + " differentiable inputs");
    }
    Outputs out;
    for (std::size_t i = 0; i < grads.size(); ++i) {
      const Array& in = c.inputs.at(forms->wrt[i]);
      std::vector<float> v(grads[i].size());
      for (std::size_t j = 0; j < v.size(); ++j) v[j] = static_cast<float>(grads[i][j]);
      Array a = Array::floats("d" + in.name, in.rows, in.cols, std::move(v));
      a.per_row = in.per_row;
      out.push_back(std::move(a));
    }
    return out;
  };
}

std::vector<double> doubles(const Array& a) {
  if (a.dtype != DType::kF32) throw std::invalid_argument("op array " + a.name + " is not a float array");
  return std::vector<double>(a.f32.begin(), a.f32.end());
}

Mat to_mat(const Array& a) { return to_mat(doubles(a), a.rows, a.cols); }

Vec to_vec(const Array& a) {
  const std::vector<double> v = doubles(a);
  Vec r(static_cast<Eigen::Index>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) r(static_cast<Eigen::Index>(i)) = v[i];
  return r;
}

std::vector<double> flat(const Mat& m) { return std::vector<double>(m.data(), m.data() + m.size()); }

std::vector<double> flat(const Vec& v) { return std::vector<double>(v.data(), v.data() + v.size()); }

Mat to_mat(const std::vector<double>& v, std::int64_t rows, std::int64_t cols) {
  if (static_cast<std::int64_t>(v.size()) != rows * cols) {
    throw std::invalid_argument("to_mat: " + std::to_string(v.size()) + " values for [" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "]");
  }
  Mat m(rows, cols);
  for (std::size_t i = 0; i < v.size(); ++i) m.data()[i] = v[i];
  return m;
}

std::vector<std::int64_t> checked_integers(const Array& a) {
  std::vector<std::int64_t> t(a.f32.size());
  for (std::size_t i = 0; i < t.size(); ++i) {
    t[i] = static_cast<std::int64_t>(a.f32[i]);
    if (static_cast<float>(t[i]) != a.f32[i]) {
      throw std::invalid_argument("op array " + a.name + " holds a non-integer value at element " + std::to_string(i));
    }
  }
  return t;
}

std::vector<float> normals(std::int64_t n, double sigma, std::uint64_t seed, const char* stream) {
  const CounterRng rng(seed, stream_id(stream));
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(sigma * rng.normal(i));
  return v;
}

std::vector<float> bf16_normals(std::int64_t n, double sigma, std::uint64_t seed, const char* stream) {
  std::vector<float> v = normals(n, sigma, seed, stream);
  for (float& f : v) f = round_bf16(f);
  return v;
}

Array upstream(std::string name, std::int64_t rows, std::int64_t cols, std::uint64_t seed, const char* stream) {
  return Array::floats(std::move(name), rows, cols, normals(rows * cols, 1.0, seed, stream));
}

Call forward_call(const Call& backward_call, std::size_t n_inputs) {
  if (backward_call.inputs.size() < n_inputs) throw std::invalid_argument("backward call with too few inputs");
  Call c;
  c.ints = backward_call.ints;
  c.reals = backward_call.reals;
  c.inputs.assign(backward_call.inputs.begin(), backward_call.inputs.begin() + static_cast<std::ptrdiff_t>(n_inputs));
  return c;
}

}  // namespace dsv4::ops
