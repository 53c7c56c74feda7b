// parallel_rows.hpp
#include "dsv4/numerics/parallel_rows.hpp"

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

#include "dsv4/numerics/gemm.hpp"

namespace dsv4 {

void parallel_rows(std::int64_t rows, std::int64_t min_rows, const std::function<void(std::int64_t, std::int64_t)>& f) {
  const std::int64_t t =
      std::max<std::int64_t>(1, std::min<std::int64_t>(gemm_threads(), rows / std::max<std::int64_t>(min_rows, 1)));
  if (t == 1) {
    if (rows > 0) f(0, rows);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(t));
  for (std::int64_t k = 1; k < t; ++k) {
    pool.emplace_back([&, k] {
      try {
        f(rows * k / t, rows * (k + 1) / t);
      } catch (...) {
        errors[static_cast<std::size_t>(k)] = std::current_exception();
      }
    });
  }
  try {
    f(0, rows / t);  // the first range on this thread
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace dsv4
