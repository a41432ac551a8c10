// The DurableQueue concurrency conformance (many lessees racing) for every
// adapter, built for ThreadSanitizer.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "txfn/in_memory_queue.h"
#include "txfn/limiters.h"
#include "txfn/sharded_queue.h"
#if TXFN_QUEUE_TEST_SQLITE
#include "sqlite_queue_test_util.h"
#endif
#include "txfn/testing/durable_queue_conformance.h"

namespace txfn {
namespace {

TXFN_INSTANTIATE_DURABLE_QUEUE_CONCURRENCY_CONFORMANCE(InMemoryThreeShards, [] {
  return std::make_unique<InMemoryQueue>(InMemoryQueueOptions{.shards = 3});
});

TXFN_INSTANTIATE_DURABLE_QUEUE_CONCURRENCY_CONFORMANCE(
    ShardedInMemory, []() -> std::unique_ptr<DurableQueue> {
      auto q =
          ShardedQueue::Create({std::make_shared<InMemoryQueue>(InMemoryQueueOptions{.shards = 2}),
                                std::make_shared<InMemoryQueue>()});
      return q.ok() ? *std::move(q) : nullptr;
    });

#if TXFN_QUEUE_TEST_SQLITE
TXFN_INSTANTIATE_DURABLE_QUEUE_CONCURRENCY_CONFORMANCE(SqliteTwoShards, [] {
  return queue_test::TempSqliteQueue::Make(2);
});
#endif

// ConcurrencyLimiter is shared by threads (calls finish anywhere): the cap
// holds under contention, and every slot taken is given back.
TEST(ConcurrencyLimiterStressTest, NeverAdmitsMoreThanTheLimit) {
  ConcurrencyLimiter limiter(3);
  std::atomic<int> inside{0};
  std::atomic<int> worst{0};
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (!limiter.TryAcquire()) continue;
        const int now = ++inside;
        int w = worst.load();
        while (now > w && !worst.compare_exchange_weak(w, now)) {
        }
        ++admitted;
        --inside;
        limiter.Release();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(worst.load(), 3);
  EXPECT_GT(admitted.load(), 0);
  EXPECT_EQ(limiter.in_flight(), 0);
}

}  // namespace
}  // namespace txfn
