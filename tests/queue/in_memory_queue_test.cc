// InMemoryQueue and ShardedQueue: the DurableQueue conformance suite, with
// one shard and with several.
#include "txfn/in_memory_queue.h"

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "queue_test_util.h"
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

// An adapter without a TenantDepths of its own: DurableQueue's, which pages through ListCalls.
class DefaultTenantDepthsQueue final : public queue_test::ForwardingQueue {
 public:
  using queue_test::ForwardingQueue::ForwardingQueue;
  absl::StatusOr<std::vector<TenantDepth>> TenantDepths(absl::Time now) override {
    return DurableQueue::TenantDepths(now);
  }
};
TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(DefaultTenantDepths,
                                           []() -> std::unique_ptr<DurableQueue> {
                                             return std::make_unique<DefaultTenantDepthsQueue>(
                                                 std::make_shared<InMemoryQueue>());
                                           });

TEST(InMemoryQueueTest, TheDefaultTenantDepthsCountsPastOnePageOfListCalls) {
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  auto inner = std::make_shared<InMemoryQueue>(InMemoryQueueOptions{.shards = 3});
  DefaultTenantDepthsQueue q(inner);
  CallIdGenerator ids(11);
  std::vector<Call> calls;
  for (size_t i = 0; i < DurableQueue::kMaxLeaseBatch + 7; ++i) {
    Call c;
    c.id = ids.Next();
    c.tenant = i % 3 == 0 ? "c" : i % 2 == 0 ? "a" : "b";
    c.function = "f";
    c.start_after = t0;
    c.deadline = t0 + absl::Hours(1);
    calls.push_back(std::move(c));
  }
  ASSERT_TRUE(q.Enqueue(calls).ok());
  auto counted = inner->TenantDepths(t0);
  ASSERT_TRUE(counted.ok()) << counted.status();
  ASSERT_EQ(counted->size(), 3u);
  size_t total = 0;
  for (const TenantDepth& d : *counted) total += d.calls;
  EXPECT_EQ(total, calls.size());
  auto paged = q.TenantDepths(t0);
  ASSERT_TRUE(paged.ok()) << paged.status();
  EXPECT_EQ(*paged, *counted);
}

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

// A shard keeps no order of all its pending calls, only each function's and
// the heads of those: whatever enqueues, leases, releases, acknowledgements,
// expired leases and deadlines do to the heads, an unfiltered lease must
// still take the calls in one due order (due time, then enqueue order), and
// a filtered one that order's calls of its functions. Checked against a
// model that sorts every pending call.
TEST(InMemoryQueueTest, LeasesFollowOneDueOrderAcrossFunctionsUnderRandomChurn) {
  struct Model {
    absl::Time due;  // pending: when due; leased: when the lease expires
    uint64_t seq;
    std::string function;
    QuotaClass quota;
    absl::Time deadline;
    std::optional<LeaseToken> lease;  // set while leased
  };
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  const std::vector<std::string> functions = {"a", "b", "c", "d", "e", "f"};
  std::mt19937_64 rng(42);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  InMemoryQueue q;
  CallIdGenerator ids(3);
  std::map<CallId, Model> model;
  uint64_t next_seq = 0;
  absl::Time now = t0;
  int leased_total = 0, dead_total = 0;

  for (int step = 0; step < 4000; ++step) {
    const int op = uniform(0, 99);
    if (op < 30) {
      std::vector<Call> batch(static_cast<size_t>(uniform(1, 4)));
      for (Call& c : batch) {
        c.id = ids.Next();
        c.tenant = "t";
        c.function = functions[static_cast<size_t>(uniform(0, 5))];
        c.quota = uniform(0, 1) == 0 ? QuotaClass::kReserved : QuotaClass::kOpportunistic;
        c.start_after = now + absl::Seconds(uniform(0, 20));
        c.deadline = c.start_after + absl::Seconds(uniform(0, 3) == 0 ? uniform(1, 30) : 80000);
        c.retry.max_attempts = 100;
        model[c.id] = {c.start_after, next_seq++, c.function, c.quota, c.deadline, std::nullopt};
      }
      absl::StatusOr<size_t> added = q.Enqueue(batch);
      ASSERT_TRUE(added.ok()) << added.status();
      ASSERT_EQ(*added, batch.size());
    } else if (op < 60) {
      LeaseRequest request{.now = now,
                           .max = static_cast<size_t>(uniform(1, 3)),
                           .lease_duration = absl::Seconds(uniform(2, 30))};
      if (uniform(0, 2) == 0) {
        request.quota = uniform(0, 1) == 0 ? QuotaClass::kReserved : QuotaClass::kOpportunistic;
      }
      if (uniform(0, 2) == 0) {
        for (int k = uniform(1, 2); k > 0; --k) {
          request.functions.push_back(functions[static_cast<size_t>(uniform(0, 5))]);
        }
      }
      auto wanted = [&](const Model& m) {
        if (request.quota && *request.quota != m.quota) return false;
        return request.functions.empty() ||
               std::find(request.functions.begin(), request.functions.end(), m.function) !=
                   request.functions.end();
      };
      // The model: expired leases are due from their expiry; then the first
      // due calls in (due, seq) order, dead-lettering those past deadline.
      for (auto& [id, m] : model) {
        if (m.lease && m.due <= now) m.lease.reset();
      }
      std::vector<CallId> expected;
      while (expected.size() < request.max) {
        const std::pair<const CallId, Model>* best = nullptr;
        for (const auto& entry : model) {
          const Model& m = entry.second;
          if (m.lease || m.due > now || !wanted(m)) continue;
          if (best == nullptr ||
              std::tie(m.due, m.seq) < std::tie(best->second.due, best->second.seq)) {
            best = &entry;
          }
        }
        if (best == nullptr) break;
        const CallId id = best->first;
        if (best->second.deadline <= now) {
          model.erase(id);  // dead-lettered (dead letters are not listed here)
          ++dead_total;
          continue;
        }
        expected.push_back(id);
        Model& m = model[id];
        m.lease = LeaseToken{id, 0};
        m.due = now + request.lease_duration;
      }
      absl::StatusOr<std::vector<LeasedCall>> got = q.Lease(request);
      ASSERT_TRUE(got.ok()) << got.status();
      std::vector<CallId> got_ids;
      for (const LeasedCall& l : *got) {
        got_ids.push_back(l.call.id);
        model[l.call.id].lease = l.token;
      }
      ASSERT_EQ(got_ids, expected) << "step " << step;
      leased_total += static_cast<int>(got_ids.size());
    } else if (op < 85) {
      std::vector<CallId> held;
      for (const auto& [id, m] : model) {
        if (m.lease && m.due > now) held.push_back(id);
      }
      if (held.empty()) continue;
      const CallId id = held[static_cast<size_t>(uniform(0, static_cast<int>(held.size()) - 1))];
      Model& m = model[id];
      if (uniform(0, 2) == 0) {
        ASSERT_TRUE(q.Ack(*m.lease, now).ok());
        model.erase(id);
      } else {
        const absl::Time retry_at = now + absl::Seconds(uniform(0, 15));
        absl::StatusOr<std::vector<absl::Status>> r =
            q.Settle({Settlement::Release(*m.lease, retry_at)}, now);
        ASSERT_TRUE(r.ok() && r->at(0).ok());
        m.lease.reset();
        m.due = retry_at;
      }
    } else {
      now += absl::Seconds(uniform(0, 3));
    }
  }
  // The run went through every path, many times.
  EXPECT_GT(leased_total, 1000);
  EXPECT_GT(dead_total, 20);
  EXPECT_EQ(q.size(), model.size() + static_cast<size_t>(dead_total));
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

TEST(InMemoryQueueTest, ShardCountsOutsideTheRangeAreClamped) {
  EXPECT_EQ(InMemoryQueue(InMemoryQueueOptions{.shards = -3}).shard_count(), 1);
  EXPECT_EQ(InMemoryQueue(InMemoryQueueOptions{.shards = 1 << 30}).shard_count(),
            DurableQueue::kMaxShards);
}

}  // namespace
}  // namespace txfn
