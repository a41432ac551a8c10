// InMemoryQueue and ShardedQueue: the DurableQueue conformance suite, with
// one shard and with several.
#include "txfn/in_memory_queue.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "txfn/sharded_queue.h"
#include "txfn/testing/durable_queue_conformance.h"

namespace txfn {
namespace {

TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(InMemory,
                                           [] { return std::make_unique<InMemoryQueue>(); });
TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(InMemoryFourShards, [] {
  return std::make_unique<InMemoryQueue>(InMemoryQueueOptions{.shards = 4});
});

std::unique_ptr<DurableQueue> MakeSharded() {
  auto q =
      ShardedQueue::Create({std::make_shared<InMemoryQueue>(),
                            std::make_shared<InMemoryQueue>(InMemoryQueueOptions{.shards = 3})});
  return q.ok() ? *std::move(q) : nullptr;
}
TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(ShardedInMemory, &MakeSharded);

TEST(ShardedQueueTest, SpreadsCallsEvenlyOverChildrenAndNumbersTheirShards) {
  auto a = std::make_shared<InMemoryQueue>(InMemoryQueueOptions{.shards = 2});
  auto b = std::make_shared<InMemoryQueue>(InMemoryQueueOptions{.shards = 3});
  auto q = ShardedQueue::Create({a, b});
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ((*q)->shard_count(), 5);
  CallIdGenerator ids(1);
  std::vector<int> per_shard(5);
  constexpr int kCalls = 10000;
  for (int i = 0; i < kCalls; ++i) {
    const CallId id = ids.Next();
    const int child = (*q)->ChildOf(id);
    const int shard = (*q)->ShardOf(id);
    EXPECT_EQ(shard, child == 0 ? a->ShardOf(id) : 2 + b->ShardOf(id));
    ++per_shard[shard];
  }
  // Child 0 gets half the calls over 2 shards, child 1 half over 3.
  for (int s = 0; s < 5; ++s) {
    const double expected = s < 2 ? kCalls / 4.0 : kCalls / 6.0;
    EXPECT_NEAR(per_shard[s], expected, expected * 0.1) << "shard " << s;
  }
}

TEST(ShardedQueueTest, RefusesNoChildrenAndNullChildren) {
  EXPECT_EQ(ShardedQueue::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardedQueue::Create({std::make_shared<InMemoryQueue>(), nullptr}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace txfn
