// Backward of RoPE and its inverse (spec 02 §2.3; spec 06 §6.12).
#include "dsv4/train/rope_backward.hpp"

namespace dsv4 {

// spec 06 §6.12: dx = R(θ)ᵀ dy — the reference's rotation with the direction flipped.
Mat rope_backward(const RopeTable& table, const Mat& dy, std::span<const std::int64_t> positions, std::int64_t head_dim,
                  bool inverse) {
  Mat dx = dy;
  apply_rope_inplace(Precision(Mode::kExact), table, dx, positions, head_dim, !inverse);
  return dx;
}

}  // namespace dsv4
