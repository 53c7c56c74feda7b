// Host fallback of the SwiGLU kernel: the official-mode reference (clamped_swiglu_rows, the
// flat-array adapter of ref/model) for one element.
#include "swiglu_reference.hpp"

#include "dsv4/model/expert.hpp"

namespace dsv4::gpu::detail {

float swiglu_reference(float g, float u, double limit, const float* route_weight) {
  return clamped_swiglu_rows(Precision(Mode::kOfficial), &g, &u, 1, 1, limit, route_weight).at(0);
}

}  // namespace dsv4::gpu::detail
