// Backward of the embedding (spec 05 §5.1, spec 06 §6.12).
#include "dsv4/train/embedding_backward.hpp"

namespace dsv4 {

// spec 06 §6.12: the gradient of a gather is a scatter-add; a token repeated in the batch adds its
// rows in ascending token order.
Mat embedding_backward(std::span<const std::int64_t> ids, const Mat& dh, std::int64_t vocab) {
  if (dh.rows() != static_cast<Eigen::Index>(ids.size())) {
    throw std::invalid_argument("embedding_backward: dh has " + std::to_string(dh.rows()) + " rows for " +
                                std::to_string(ids.size()) + " ids");
  }
  Mat de = Mat::Zero(vocab, dh.cols());
  for (std::size_t t = 0; t < ids.size(); ++t) {
    const std::int64_t id = ids[t];
    if (id < 0 || id >= vocab) {
      throw std::invalid_argument("embedding_backward: token id " + std::to_string(id) + " outside [0, " +
                                  std::to_string(vocab) + ")");
    }
    de.row(id) += dh.row(static_cast<Eigen::Index>(t));
  }
  return de;
}

}  // namespace dsv4
