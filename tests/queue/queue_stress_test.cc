// The DurableQueue concurrency conformance (many lessees racing) for every
// adapter, built for ThreadSanitizer.
#include <memory>

#include "gtest/gtest.h"
#include "txfn/in_memory_queue.h"
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

}  // namespace
}  // namespace txfn
