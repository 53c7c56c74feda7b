// Backward of the Walsh–Hadamard rotation (spec 01 §1.10; spec 06 §6.12).
#include "dsv4/train/hadamard_backward.hpp"

namespace dsv4 {

// spec 06 §6.12: the rotation is symmetric, so its backward is the forward applied to dy.
Mat hadamard_backward(const Mat& dy, std::int64_t size) { return hadamard(Precision(Mode::kExact), dy, size); }

}  // namespace dsv4
