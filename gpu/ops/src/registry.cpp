// The list of registered ops (dsv4/ops/registry.hpp). Adding an op: its own <stem>_op.cpp and one
// line here.
#include "dsv4/ops/registry.hpp"

#include "op_list.hpp"
#if DSV4_HAVE_CUDA
#include "dsv4/gpu/device.hpp"
#endif

namespace dsv4::ops {

const std::vector<Op>& all_ops() {
  static const std::vector<Op> ops = {
      detail::act_quant_op(),
      detail::fp4_act_quant_op(),
      detail::hc_split_sinkhorn_op(),
      detail::rmsnorm_op(),
      detail::hadamard_op(),
      detail::rope_op(),
      detail::embedding_op(),
      detail::hc_post_op(),
      detail::hc_pre_op(),
      detail::hc_head_op(),
      detail::gate_op(),
      detail::swiglu_op(),
      detail::head_op(),
      detail::linear_op(),
      detail::expert_op(),
      detail::sparse_attention_op(),
      detail::grouped_projection_op(),
      detail::moe_combine_op(),
      detail::compressor_pool_op(),
      detail::indexer_topk_op(),
      detail::index_builders_op(),
      detail::head_rmsnorm_op(),
      detail::add_op(),
      detail::scale_op(),
      detail::cross_entropy_op(),
      detail::indexer_loss_op(),
  };
  return ops;
}

const Op* find_op(std::string_view stem) {
  for (const Op& op : all_ops()) {
    if (op.stem == stem) return &op;
  }
  return nullptr;
}

std::string device_unavailable_reason() {
#if DSV4_HAVE_CUDA
  return gpu::gpu_available() ? "" : "no CUDA device visible to this process";
#else
  return "this build has no CUDA kernels (nvcc was not found at configure time)";
#endif
}

bool device_available() { return device_unavailable_reason().empty(); }

std::string device_text() {
#if DSV4_HAVE_CUDA
  return gpu::device_description();
#else
  return "none (built without CUDA)";
#endif
}

}  // namespace dsv4::ops
