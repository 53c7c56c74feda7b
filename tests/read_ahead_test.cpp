// ReadAhead (oracle/golden read_ahead.hpp), certify's read-ahead worker: items arrive in order,
// a producer's exception is rethrown at its item (after every earlier item), handed-back items
// are reused, out-of-order takes are refused, and a consumer that stops early does not hang.
#include "dsv4/golden/read_ahead.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace dsv4 {
namespace {

struct Item {
  std::size_t index = 0;
  std::vector<int> buffer;
  int generation = 0;  // how many times this item was filled
};

TEST(ReadAhead, ItemsArriveInOrderAndAreRecycled) {
  std::atomic<int> fills{0};
  ReadAhead<Item> r(50, [&](std::size_t i, Item& it) {
    it.index = i;
    it.buffer.assign(100, static_cast<int>(i));
    ++it.generation;
    ++fills;
  });
  int reused = 0;
  for (std::size_t i = 0; i < 50; ++i) {
    Item it = r.take(i);
    ASSERT_EQ(it.index, i);
    ASSERT_EQ(it.buffer.front(), static_cast<int>(i));
    if (it.generation > 1) ++reused;
    r.recycle(std::move(it));
  }
  EXPECT_EQ(fills.load(), 50);
  EXPECT_GT(reused, 40) << "handed-back items must be refilled instead of made anew";
}

TEST(ReadAhead, AnErrorIsRethrownAtItsItemAfterTheEarlierOnes) {
  ReadAhead<Item> r(10, [](std::size_t i, Item& it) {
    if (i == 4) throw std::runtime_error("bad item 4");
    it.index = i;
  });
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(r.take(i).index, i);
  try {
    (void)r.take(4);
    FAIL() << "item 4 must rethrow";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "bad item 4");
  }
}

TEST(ReadAhead, OutOfOrderTakeIsRefused) {
  ReadAhead<Item> r(3, [](std::size_t i, Item& it) { it.index = i; });
  EXPECT_THROW((void)r.take(1), std::logic_error);
  EXPECT_EQ(r.take(0).index, 0u);
}

TEST(ReadAhead, StoppingEarlyAndEmptyDoNotHang) {
  std::atomic<int> fills{0};
  {
    ReadAhead<Item> r(1000, [&](std::size_t i, Item& it) {
      it.index = i;
      ++fills;
    });
    EXPECT_EQ(r.take(0).index, 0u);
  }  // destroyed with the worker blocked on a full queue
  EXPECT_LT(fills.load(), 10) << "the worker stays at most `depth` items ahead";
  ReadAhead<Item> none(0, [](std::size_t, Item&) { FAIL() << "nothing to produce"; });
}

}  // namespace
}  // namespace dsv4
