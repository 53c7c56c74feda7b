// One worker thread that produces items 0, 1, …, n − 1 in order, at most `depth` ahead of the
// consumer: certify reads the next outputs from the files while the current one is judged.
// produce(i, item) fills `item` — a default one, or one the consumer handed back with recycle()
// so that its buffers are reused — on the worker only, one call at a time (the files' library,
// libhdf5, is not thread-safe, so everything that touches the files must be in produce until the
// consumer is done). An exception from produce(i) is rethrown by take(i); nothing after i is
// produced.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace dsv4 {

template <class T>
class ReadAhead {
 public:
  ReadAhead(std::size_t n, std::function<void(std::size_t, T&)> produce, std::size_t depth = 2)
      : n_(n), depth_(depth < 1 ? 1 : depth), produce_(std::move(produce)) {
    if (n_ > 0) worker_ = std::thread([this] { run(); });
  }
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;
  ~ReadAhead() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  // Items must be taken in order 0, 1, … (std::logic_error otherwise).
  T take(std::size_t i) {
    std::unique_lock<std::mutex> lock(mu_);
    if (i != next_take_) throw std::logic_error("ReadAhead: items are taken in order");
    cv_.wait(lock, [&] { return !ready_.empty() || error_; });
    if (ready_.empty()) std::rethrow_exception(error_);
    T item = std::move(ready_.front());
    ready_.pop_front();
    ++next_take_;
    lock.unlock();
    cv_.notify_all();
    return item;
  }
  // Hands a taken item back for its buffers to be reused.
  void recycle(T&& item) {
    std::lock_guard<std::mutex> lock(mu_);
    if (spare_.size() < depth_ + 1) spare_.push_back(std::move(item));
  }

 private:
  void run() {
    for (std::size_t i = 0; i < n_; ++i) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || ready_.size() < depth_; });
        if (stop_) return;
      }
      std::optional<T> item;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!spare_.empty()) {
          item.emplace(std::move(spare_.back()));
          spare_.pop_back();
        }
      }
      if (!item) item.emplace();
      try {
        produce_(i, *item);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        ready_.push_back(std::move(*item));
      }
      cv_.notify_all();
    }
  }

  const std::size_t n_, depth_;
  std::function<void(std::size_t, T&)> produce_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> ready_;
  std::vector<T> spare_;
  std::exception_ptr error_;
  std::size_t next_take_ = 0;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace dsv4
