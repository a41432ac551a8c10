// InMemoryQueue and ShardedQueue: the DurableQueue conformance suite, with
// one shard and with several.
#include "txfn/in_memory_queue.h"

#include <memory>
#include <optional>
#include <string>
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

// A shard keeps one copy of each tenant, function and client name for all
// the calls that share it: a name must outlive the calls that leave, and
// come back intact once every call that had it is gone.
TEST(InMemoryQueueTest, CallsSharingANameKeepItWhileAnyIsQueuedAndGetItBackAfter) {
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  InMemoryQueue q;
  CallIdGenerator ids(7);
  auto make = [&](std::string function) {
    Call c;
    c.id = ids.Next();
    c.tenant = "acme";
    c.function = std::move(function);
    c.client = "web";
    c.args = Value::Int64(1);
    c.start_after = t0;
    c.deadline = t0 + absl::Hours(1);
    return c;
  };
  auto lease = [&](absl::Time now) {
    auto got = q.Lease({.shard = 0, .now = now, .max = 100, .lease_duration = absl::Seconds(30)});
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *std::move(got) : std::vector<LeasedCall>{};
  };
  auto settle = [&](const Settlement& s, absl::Time now) {
    auto r = q.Settle({&s, 1}, now);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->at(0).ok()) << r->at(0);
  };
  ASSERT_EQ(*q.Enqueue({make("mail:send"), make("mail:send"), make("mail:send")}), 3u);
  std::vector<LeasedCall> leased = lease(t0);
  ASSERT_EQ(leased.size(), 3u);
  for (int i = 0; i < 2; ++i) settle(Settlement::Ack(leased[i].token), t0);

  // The last call still has every name, and a NACK's reason is kept with it.
  settle(Settlement::Nack(leased[2].token, t0, "smtp down"), t0);
  absl::StatusOr<std::optional<QueuedCall>> last = q.Find(leased[2].token.id, t0);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->call.tenant, "acme");
  EXPECT_EQ((*last)->call.function, "mail:send");
  EXPECT_EQ((*last)->call.client, "web");
  EXPECT_EQ((*last)->reason, "smtp down");
  leased = lease(t0);
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].call.function, "mail:send");
  EXPECT_EQ(leased[0].call.attempt, 1);
  settle(Settlement::Ack(leased[0].token), t0);
  EXPECT_EQ(q.size(), 0u);

  // Every call that had the names is gone; new calls bring them back.
  Call again = make("mail:send");
  again.tenant = "acme";
  ASSERT_EQ(*q.Enqueue({again, make("mail:bounce")}), 2u);
  leased = lease(t0);
  ASSERT_EQ(leased.size(), 2u);
  EXPECT_EQ(leased[0].call, [&] {
    Call c = again;
    c.attempt = 0;
    return c;
  }());
  EXPECT_EQ(leased[1].call.function, "mail:bounce");
  EXPECT_EQ(leased[1].call.tenant, "acme");
}

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
