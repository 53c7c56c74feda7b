// One factory per registered op (private to gpu/ops; each defined in its own <stem>_op.cpp and
// listed once in registry.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/ops/gradient.hpp"
#include "dsv4/ops/op.hpp"

namespace dsv4::ops::detail {

// A dense matrix or vector of doubles (Eigen) as the floats of an Array: the values of an fp32 or
// bf16 output or weight, exactly representable (shared by the op files).
template <class M>
std::vector<float> to_floats(const M& m) {
  std::vector<float> v(static_cast<std::size_t>(m.size()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(m.data()[i]);
  return v;
}

// The device function of a registration: `fn` in a build with CUDA, none without (where the
// kernel's host function does not exist).
#if DSV4_HAVE_CUDA
#define DSV4_OPS_DEVICE(fn) ::dsv4::ops::Fn(fn)
#else
#define DSV4_OPS_DEVICE(fn) ::dsv4::ops::Fn()
#endif

using CaseGenerator = std::function<std::vector<Case>(std::uint64_t seed)>;

// The case loop of a generator: make(spec, k) for every spec in order, k = 1, 2, … (the index each
// generator folds into its seeds).
template <class Spec, class Make>
std::vector<Case> cases_of(const std::vector<Spec>& specs, Make make) {
  std::vector<Case> cases;
  std::uint64_t k = 0;
  for (const Spec& s : specs) cases.push_back(make(s, ++k));
  return cases;
}

// The one registration every <stem>_op.cpp returns (the fields of Op): stem, spec section, summary,
// the names of Call::ints and Call::reals, reference, device function (DSV4_OPS_DEVICE, or Fn()
// where no kernel exists yet), case generator, the backward where the op has one (set_backward), and
// whether the device function takes resident shared inputs from their device copy
// (Op::resident_inputs, resident_device.hpp).
Op registration(std::string stem, std::string spec, std::string summary, std::vector<std::string> int_params,
                std::vector<std::string> real_params, Fn reference, Fn device, CaseGenerator cases,
                std::optional<GradientForms> backward = std::nullopt, bool resident_inputs = false);

Op act_quant_op();
Op fp4_act_quant_op();
Op hc_split_sinkhorn_op();
Op rmsnorm_op();
Op hadamard_op();
Op rope_op();
Op embedding_op();
Op hc_post_op();
Op linear_op();
Op expert_op();
Op hc_pre_op();
Op hc_head_op();
Op gate_op();
Op swiglu_op();
Op head_op();
Op sparse_attention_op();
Op grouped_projection_op();
Op moe_combine_op();
Op compressor_pool_op();
Op indexer_topk_op();
Op index_builders_op();
Op head_rmsnorm_op();
Op add_op();
Op scale_op();
Op cross_entropy_op();
Op indexer_loss_op();

}  // namespace dsv4::ops::detail
