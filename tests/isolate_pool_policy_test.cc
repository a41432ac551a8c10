// Unit tests of the IsolateScheduler's policy (txfn::internal::IsolatePool),
// without V8: the "isolate" is a plain struct recording the tenant it was
// created for, so every decision (reuse MRU, create, evict LRU, wait) is
// observable.
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/internal/isolate_pool.h"

namespace txfn::internal {
namespace {

using ::testing::HasSubstr;

struct FakeIsolate {
  std::string tenant;
  uint64_t id = 0;
};

using Pool = IsolatePool<int, FakeIsolate>;
using Assignment = Pool::Assignment;

// Does what a worker does with an assignment: "disposes" the evicted isolate
// and creates the missing one.
Assignment Take(Pool& pool) {
  std::optional<Assignment> a = pool.TryAcquire();
  EXPECT_TRUE(a.has_value());
  if (!a) return {};
  if (a->isolate == nullptr) {
    a->isolate = std::make_unique<FakeIsolate>(FakeIsolate{a->tenant, a->isolate_id});
  }
  EXPECT_EQ(a->isolate->tenant, a->tenant) << "isolate " << a->isolate_id << " crossed tenants";
  EXPECT_EQ(a->isolate->id, a->isolate_id);
  return std::move(*a);
}

void Done(Pool& pool, Assignment& a) { (void)pool.Release(a.isolate_id, std::move(a.isolate)); }

// Options of a pool whose bound is two isolates, with `patience`.
IsolatePoolOptions BoundOfTwo(absl::Duration patience) {
  return {.max_isolates = 2,
          .queue_capacity = 8,
          .max_in_flight_per_tenant = 4,
          .own_isolate_patience = patience};
}

// A pool of two isolates, its bound, with tenant "a"'s busy and "b"'s idle: returns a's
// assignment (request 1).
Assignment BusyAAndIdleB(Pool& pool) {
  EXPECT_TRUE(pool.Submit("a", 1).ok());
  EXPECT_TRUE(pool.Submit("b", 2).ok());
  Assignment a1 = Take(pool), b2 = Take(pool);
  Done(pool, b2);
  return a1;
}

TEST(IsolatePoolPolicyTest, CreatesThenReusesTheTenantsIsolate) {
  Pool pool({.max_isolates = 4, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  Assignment first = Take(pool);
  EXPECT_FALSE(first.reused);
  EXPECT_EQ(first.request, 1);
  const uint64_t id = first.isolate_id;
  Done(pool, first);

  ASSERT_TRUE(pool.Submit("a", 2).ok());
  Assignment second = Take(pool);
  EXPECT_TRUE(second.reused);
  EXPECT_EQ(second.isolate_id, id);
  Done(pool, second);

  IsolatePoolStats s = pool.stats();
  EXPECT_EQ(s.created, 1u);
  EXPECT_EQ(s.reused, 1u);
  EXPECT_EQ(s.disposed, 0u);
  EXPECT_EQ(s.live_isolates, 1);
  EXPECT_TRUE(s.in_flight.empty());
}

TEST(IsolatePoolPolicyTest, PicksTheMostRecentlyUsedIdleIsolateOfTheTenant) {
  Pool pool({.max_isolates = 4, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.Submit("a", i).ok());
  Assignment x = Take(pool), y = Take(pool), z = Take(pool);
  const uint64_t y_id = y.isolate_id, z_id = z.isolate_id;
  Done(pool, x);
  Done(pool, z);
  Done(pool, y);  // y is now the most recently used
  ASSERT_TRUE(pool.Submit("a", 3).ok());
  Assignment next = Take(pool);
  EXPECT_EQ(next.isolate_id, y_id);
  ASSERT_TRUE(pool.Submit("a", 4).ok());
  Assignment after = Take(pool);
  EXPECT_EQ(after.isolate_id, z_id);
  EXPECT_EQ(pool.stats().created, 3u);
}

TEST(IsolatePoolPolicyTest, CreatesRatherThanEvictingUnderTheBound) {
  Pool pool({.max_isolates = 2, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  Assignment a = Take(pool);
  Done(pool, a);
  ASSERT_TRUE(pool.Submit("b", 2).ok());
  Assignment b = Take(pool);
  EXPECT_FALSE(b.reused);
  EXPECT_EQ(b.evicted, nullptr);
  EXPECT_NE(b.isolate_id, a.isolate_id);
  EXPECT_EQ(pool.stats().live_isolates, 2);
}

TEST(IsolatePoolPolicyTest, EvictsTheLeastRecentlyUsedIdleIsolateOfAnotherTenantAtTheBound) {
  Pool pool({.max_isolates = 2, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  ASSERT_TRUE(pool.Submit("b", 2).ok());
  Assignment a = Take(pool), b = Take(pool);
  const uint64_t b_id = b.isolate_id;
  Done(pool, a);  // a's isolate is the least recently used
  Done(pool, b);

  ASSERT_TRUE(pool.Submit("c", 3).ok());
  Assignment c = Take(pool);
  ASSERT_NE(c.evicted, nullptr);
  EXPECT_EQ(c.evicted->tenant, "a");
  EXPECT_FALSE(c.reused);
  Done(pool, c);

  // b kept its isolate.
  ASSERT_TRUE(pool.Submit("b", 4).ok());
  Assignment b2 = Take(pool);
  EXPECT_EQ(b2.isolate_id, b_id);
  EXPECT_EQ(b2.evicted, nullptr);
  Done(pool, b2);

  IsolatePoolStats s = pool.stats();
  EXPECT_EQ(s.created, 3u);
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_EQ(s.disposed, 1u);
  EXPECT_EQ(s.live_isolates, 2);
}

TEST(IsolatePoolPolicyTest, ReusesOwnIsolateBeforeEvictingAtTheBound) {
  Pool pool({.max_isolates = 2, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  ASSERT_TRUE(pool.Submit("b", 2).ok());
  Assignment a = Take(pool), b = Take(pool);
  Done(pool, b);
  Done(pool, a);
  ASSERT_TRUE(pool.Submit("b", 3).ok());
  Assignment b2 = Take(pool);
  EXPECT_TRUE(b2.reused);
  EXPECT_EQ(b2.evicted, nullptr);
}

// At the bound, a request of a tenant whose isolate is busy waits for that
// isolate (the requests behind it are served meanwhile) instead of evicting
// another tenant's isolate to build a second one.
TEST(IsolatePoolPolicyTest, AtTheBoundARequestWaitsForItsTenantsBusyIsolate) {
  Pool pool(BoundOfTwo(absl::InfiniteDuration()));
  Assignment a1 = BusyAAndIdleB(pool);
  const uint64_t a_id = a1.isolate_id;

  ASSERT_TRUE(pool.Submit("a", 3).ok());
  ASSERT_TRUE(pool.Submit("b", 4).ok());
  Assignment b4 = Take(pool);  // a3 is passed over, not served by evicting b
  EXPECT_EQ(b4.request, 4);
  EXPECT_TRUE(b4.reused);
  EXPECT_FALSE(pool.TryAcquire().has_value()) << "a3 waits for a's isolate";
  Done(pool, a1);
  Assignment a3 = Take(pool);
  EXPECT_EQ(a3.request, 3);
  EXPECT_EQ(a3.isolate_id, a_id);
  EXPECT_EQ(a3.evicted, nullptr);
  Done(pool, a3);
  Done(pool, b4);

  IsolatePoolStats s = pool.stats();
  EXPECT_EQ(s.created, 2u);
  EXPECT_EQ(s.evicted, 0u);
  EXPECT_EQ(s.waited_for_own, 1u);
}

TEST(IsolatePoolPolicyTest, WithoutPatienceItEvictsAtOnce) {
  Pool pool(BoundOfTwo(absl::ZeroDuration()));
  Assignment a1 = BusyAAndIdleB(pool);
  ASSERT_TRUE(pool.Submit("a", 3).ok());
  Assignment a3 = Take(pool);
  ASSERT_NE(a3.evicted, nullptr);
  EXPECT_EQ(a3.evicted->tenant, "b");
  EXPECT_NE(a3.isolate_id, a1.isolate_id);
  Done(pool, a1);
  Done(pool, a3);
}

TEST(IsolatePoolPolicyTest, AfterItsPatienceAWaitingRequestEvicts) {
  const absl::Duration patience = absl::Milliseconds(30);
  Pool pool(BoundOfTwo(patience));
  Assignment a1 = BusyAAndIdleB(pool);
  const absl::Time submitted = absl::Now();
  ASSERT_TRUE(pool.Submit("a", 3).ok());
  EXPECT_FALSE(pool.TryAcquire().has_value());
  std::optional<Assignment> a3 = pool.Acquire();  // a stays busy: wakes at the deadline
  ASSERT_TRUE(a3.has_value());
  EXPECT_GE(absl::Now() - submitted, patience);
  EXPECT_EQ(a3->request, 3);
  ASSERT_NE(a3->evicted, nullptr);
  EXPECT_EQ(a3->evicted->tenant, "b");
  Done(pool, a1);
  (void)pool.Release(a3->isolate_id, nullptr);  // never created: gives its place back
}

TEST(IsolatePoolPolicyTest, WaitsWhileEveryIsolateIsBusy) {
  Pool pool({.max_isolates = 1, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  ASSERT_TRUE(pool.Submit("b", 2).ok());
  Assignment a = Take(pool);
  EXPECT_FALSE(pool.TryAcquire().has_value()) << "the only isolate is busy";
  EXPECT_EQ(pool.stats().queue_length, 1u);
  Done(pool, a);
  Assignment b = Take(pool);
  ASSERT_NE(b.evicted, nullptr);
  EXPECT_EQ(b.evicted->tenant, "a");
  EXPECT_EQ(b.request, 2);
}

TEST(IsolatePoolPolicyTest, ServesInFifoOrder) {
  Pool pool({.max_isolates = 1, .queue_capacity = 8, .max_in_flight_per_tenant = 8});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool.Submit(i % 2 ? "a" : "b", i).ok());
  for (int i = 0; i < 5; ++i) {
    Assignment a = Take(pool);
    EXPECT_EQ(a.request, i);
    Done(pool, a);
  }
}

// SubmitAhead: served before every request Submit queued (ahead ones in their order), past
// the queue's capacity and the tenant's in-flight cap, and one at a time per tenant past its
// running cap; counted in flight.
TEST(IsolatePoolPolicyTest, ARequestQueuedAheadIsServedFirstPastEveryCap) {
  Pool pool({.max_isolates = 4,
             .queue_capacity = 3,
             .max_in_flight_per_tenant = 2,
             .max_running_per_tenant = 1});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  Assignment running = Take(pool);
  ASSERT_TRUE(pool.Submit("a", 2).ok());
  ASSERT_TRUE(pool.Submit("b", 3).ok());
  ASSERT_TRUE(pool.Submit("c", 4).ok());
  ASSERT_TRUE(absl::IsResourceExhausted(pool.Submit("a", 5))) << "both caps reached";
  ASSERT_TRUE(pool.SubmitAhead("a", 10).ok());
  ASSERT_TRUE(pool.SubmitAhead("a", 11).ok());
  EXPECT_EQ(pool.InFlight("a"), 4);
  EXPECT_EQ(pool.stats().queue_length, 5u);

  // "a" is at its running cap: its first ahead request runs anyway; the second waits until
  // the first ended, its plain one for the cap, and the others' are served past them.
  Assignment first = Take(pool);
  EXPECT_EQ(first.request, 10);
  EXPECT_EQ(first.tenant, "a");
  Assignment second = Take(pool);
  EXPECT_EQ(second.request, 3) << "one of a's ahead requests at a time past its cap";
  Assignment third = Take(pool);
  EXPECT_EQ(third.request, 4);
  EXPECT_FALSE(pool.TryAcquire().has_value()) << "the bound (4 isolates) is reached";
  Done(pool, first);
  Assignment fourth = Take(pool);
  EXPECT_EQ(fourth.request, 11);
  EXPECT_EQ(fourth.isolate_id, first.isolate_id) << "reuses a's idle isolate";
  Done(pool, fourth);
  EXPECT_FALSE(pool.TryAcquire().has_value()) << "a's plain request waits for its cap";
  Done(pool, running);
  Assignment last = Take(pool);
  EXPECT_EQ(last.request, 2);
  Done(pool, second);
  Done(pool, third);
  Done(pool, last);
  IsolatePoolStats stats = pool.stats();
  EXPECT_TRUE(stats.in_flight.empty());
  EXPECT_EQ(stats.rejected_queue_full + stats.rejected_tenant_cap, 1u);
}

// At the isolate bound a request queued ahead waits for its tenant's busy isolate as any
// request does, for its patience, and then evicts another tenant's idle one; while it waits
// it stays ahead of the requests Submit queued.
TEST(IsolatePoolPolicyTest, ARequestQueuedAheadWaitsOutItsPatienceAtTheBound) {
  const absl::Duration patience = absl::Milliseconds(30);
  Pool pool(BoundOfTwo(patience));
  Assignment a1 = BusyAAndIdleB(pool);
  const absl::Time submitted = absl::Now();
  ASSERT_TRUE(pool.Submit("a", 3).ok());
  ASSERT_TRUE(pool.SubmitAhead("a", 10).ok());
  EXPECT_FALSE(pool.TryAcquire().has_value()) << "both wait for a's isolate";
  std::optional<Assignment> ahead = pool.Acquire();  // a stays busy: wakes at the deadline
  ASSERT_TRUE(ahead.has_value());
  EXPECT_GE(absl::Now() - submitted, patience);
  EXPECT_EQ(ahead->request, 10) << "served before the request queued earlier by Submit";
  ASSERT_NE(ahead->evicted, nullptr);
  EXPECT_EQ(ahead->evicted->tenant, "b");
  EXPECT_FALSE(pool.TryAcquire().has_value()) << "the bound is reached again";
  Done(pool, a1);
  Assignment plain = Take(pool);
  EXPECT_EQ(plain.request, 3);
  EXPECT_EQ(plain.isolate_id, a1.isolate_id);
  Done(pool, plain);
  (void)pool.Release(ahead->isolate_id, nullptr);  // never created: gives its place back
  EXPECT_EQ(pool.stats().evicted, 1u);
}

TEST(IsolatePoolPolicyTest, ARequestQueuedAheadAfterShutdownIsRefused) {
  Pool pool({.max_isolates = 1});
  pool.Shutdown();
  EXPECT_TRUE(absl::IsFailedPrecondition(pool.SubmitAhead("a", 1)));
  EXPECT_EQ(pool.InFlight("a"), 0);
}

TEST(IsolatePoolPolicyTest, DisposedIsolateFreesItsPlace) {
  Pool pool({.max_isolates = 1, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  Assignment a = Take(pool);
  (void)pool.Release(a.isolate_id, nullptr);  // e.g. it hit its heap limit
  EXPECT_EQ(pool.stats().live_isolates, 0);
  ASSERT_TRUE(pool.Submit("a", 2).ok());
  Assignment again = Take(pool);
  EXPECT_FALSE(again.reused);
  EXPECT_EQ(again.evicted, nullptr);
  EXPECT_NE(again.isolate_id, a.isolate_id) << "ids are never reused";
  EXPECT_EQ(pool.stats().disposed, 1u);
}

TEST(IsolatePoolPolicyTest, FullQueueIsResourceExhausted) {
  Pool pool({.max_isolates = 1, .queue_capacity = 2, .max_in_flight_per_tenant = 10});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  ASSERT_TRUE(pool.Submit("b", 2).ok());
  absl::Status s = pool.Submit("c", 3);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("queue"));
  EXPECT_EQ(pool.InFlight("c"), 0);
  EXPECT_EQ(pool.stats().rejected_queue_full, 1u);
  // Taking one off the queue makes room.
  Assignment a = Take(pool);
  EXPECT_TRUE(pool.Submit("c", 3).ok());
  Done(pool, a);
}

TEST(IsolatePoolPolicyTest, TenantCapCountsQueuedAndRunning) {
  Pool pool({.max_isolates = 4, .queue_capacity = 16, .max_in_flight_per_tenant = 2});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  Assignment running = Take(pool);
  ASSERT_TRUE(pool.Submit("a", 2).ok());
  EXPECT_EQ(pool.InFlight("a"), 2);
  absl::Status s = pool.Submit("a", 3);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("tenant 'a'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("cap 2"));
  EXPECT_TRUE(pool.Submit("b", 4).ok()) << "other tenants are not affected";
  EXPECT_EQ(pool.stats().rejected_tenant_cap, 1u);
  EXPECT_EQ(pool.stats().in_flight.at("a"), 2);
  Done(pool, running);
  EXPECT_EQ(pool.InFlight("a"), 1);
  EXPECT_TRUE(pool.Submit("a", 5).ok());
}

// A queued request whose caller gave up on it is dropped unrun: its places in the queue and in
// its tenant's in-flight count free up (a Submit at the cap looks first), and no worker is
// handed it. One already handed out runs on.
TEST(IsolatePoolPolicyTest, AQueuedRequestGivenUpIsDroppedUnrun) {
  Pool pool({.max_isolates = 1, .queue_capacity = 3, .max_in_flight_per_tenant = 2});
  bool first_given_up = false, second_given_up = false;  // read under the pool's lock
  ASSERT_TRUE(pool.Submit("a", 1, [&] { return first_given_up; }).ok());
  Assignment running = Take(pool);
  ASSERT_TRUE(pool.Submit("a", 2, [&] { return second_given_up; }).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(pool.Submit("a", 3)));
  first_given_up = true;  // handed out: no effect
  second_given_up = true;
  ASSERT_TRUE(pool.Submit("a", 3).ok()) << "the given-up request's place is free";
  EXPECT_EQ(pool.stats().given_up, 1u);
  EXPECT_EQ(pool.InFlight("a"), 2);
  Done(pool, running);
  Assignment next = Take(pool);
  EXPECT_EQ(next.request, 3) << "2 was never handed out";
  Done(pool, next);
  // Found by a worker's search too.
  bool third_given_up = false;
  ASSERT_TRUE(pool.Submit("b", 4, [&] { return third_given_up; }).ok());
  third_given_up = true;
  EXPECT_FALSE(pool.TryAcquire().has_value());
  EXPECT_EQ(pool.stats().given_up, 2u);
  EXPECT_EQ(pool.stats().queue_length, 0u);
  EXPECT_EQ(pool.InFlight("b"), 0);
  EXPECT_TRUE(pool.stats().in_flight.empty());
}

// A dropped request is destroyed outside the pool's lock: its destructor may call the pool
// (a work item's captures may lead back to the scheduler). Under the lock this deadlocks.
TEST(IsolatePoolPolicyTest, ADroppedRequestIsDestroyedOutsideThePoolsLock) {
  struct CallsBack;
  using ProbePool = IsolatePool<std::shared_ptr<CallsBack>, FakeIsolate>;
  struct CallsBack {
    ProbePool* pool = nullptr;
    bool* destroyed = nullptr;
    ~CallsBack() {
      (void)pool->stats();  // takes the pool's lock
      *destroyed = true;
    }
  };
  ProbePool pool({.max_isolates = 1, .queue_capacity = 1, .max_in_flight_per_tenant = 1});
  for (const bool by_submit : {true, false}) {
    bool destroyed = false;
    bool given_up = false;
    auto probe = std::make_shared<CallsBack>();
    probe->pool = &pool;
    probe->destroyed = &destroyed;
    ASSERT_TRUE(pool.Submit("a", std::move(probe), [&] { return given_up; }).ok());
    given_up = true;
    if (by_submit) {
      ASSERT_TRUE(pool.Submit("b", nullptr).ok()) << "the queue's one place is free";
      EXPECT_TRUE(destroyed);
      std::optional<ProbePool::Assignment> b = pool.TryAcquire();
      ASSERT_TRUE(b.has_value());
      (void)pool.Release(b->isolate_id, nullptr);
    } else {
      EXPECT_FALSE(pool.TryAcquire().has_value());
      EXPECT_TRUE(destroyed);
    }
  }
}

TEST(IsolatePoolPolicyTest, ShutdownDrainsTheQueueThenStops) {
  Pool pool({.max_isolates = 2, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  ASSERT_TRUE(pool.Submit("a", 1).ok());
  pool.Shutdown();
  EXPECT_TRUE(absl::IsFailedPrecondition(pool.Submit("a", 2)));
  std::optional<Assignment> a = pool.Acquire();
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->request, 1);
  a->isolate = std::make_unique<FakeIsolate>(FakeIsolate{"a", a->isolate_id});
  (void)pool.Release(a->isolate_id, std::move(a->isolate));
  EXPECT_FALSE(pool.Acquire().has_value());
  std::vector<std::unique_ptr<FakeIsolate>> idle = pool.TakeIdle();
  ASSERT_EQ(idle.size(), 1u);
  EXPECT_EQ(idle[0]->tenant, "a");
  EXPECT_EQ(pool.stats().live_isolates, 0);
  EXPECT_EQ(pool.stats().disposed, 1u);
}

// A deleted tenant's idle isolates are taken out for disposal; its busy one stays with its
// request, and the other tenants' idle isolates stay in their order.
TEST(IsolatePoolPolicyTest, TakeIdleOfTakesOnlyThatTenantsIdleIsolates) {
  Pool pool({.max_isolates = 8, .queue_capacity = 8, .max_in_flight_per_tenant = 4});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.Submit("gone", i).ok());
  ASSERT_TRUE(pool.Submit("kept", 3).ok());
  Assignment g1 = Take(pool), g2 = Take(pool), g3 = Take(pool), k = Take(pool);
  const uint64_t kept_id = k.isolate_id;
  Done(pool, g1);
  Done(pool, k);
  Done(pool, g2);
  std::vector<std::unique_ptr<FakeIsolate>> idle = pool.TakeIdleOf("gone");
  ASSERT_EQ(idle.size(), 2u);
  for (const auto& isolate : idle) EXPECT_EQ(isolate->tenant, "gone");
  EXPECT_TRUE(pool.TakeIdleOf("gone").empty());
  EXPECT_TRUE(pool.TakeIdleOf("never-seen").empty());
  IsolatePoolStats s = pool.stats();
  EXPECT_EQ(s.live_isolates, 2);  // "gone"'s busy one and "kept"'s
  EXPECT_EQ(s.disposed, 2u);
  Done(pool, g3);  // released afterwards: idle as usual
  ASSERT_TRUE(pool.Submit("kept", 4).ok());
  Assignment again = Take(pool);
  EXPECT_EQ(again.isolate_id, kept_id);
  EXPECT_TRUE(again.reused);
  Done(pool, again);
  EXPECT_EQ(pool.TakeIdleOf("gone").size(), 1u);
  EXPECT_EQ(pool.stats().live_isolates, 1);
}

TEST(IsolatePoolPolicyTest, OptionsBelowOneAreRaised) {
  Pool pool({.max_isolates = 0, .queue_capacity = 0, .max_in_flight_per_tenant = 0});
  EXPECT_TRUE(pool.Submit("a", 1).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(pool.Submit("b", 2)));
}

}  // namespace
}  // namespace txfn::internal

namespace txfn::internal {
namespace {

// The memory budget: isolates count new_isolate_bytes until they report
// their size at Release; past the budget the least recently used idle
// isolates go, and a new isolate is made only after an eviction.
TEST(IsolatePoolPolicyTest, MemoryBudgetEvictsLeastRecentlyUsedIdleIsolates) {
  Pool pool({.max_isolates = 100,
             .queue_capacity = 8,
             .max_in_flight_per_tenant = 4,
             .memory_budget_bytes = 10,
             .new_isolate_bytes = 3});
  // Three tenants fit (3 x 3 = 9 bytes); each reports 3 bytes.
  for (const char* t : {"a", "b", "c"}) {
    ASSERT_TRUE(pool.Submit(t, 0).ok());
    Assignment x = Take(pool);
    EXPECT_TRUE(pool.Release(x.isolate_id, std::move(x.isolate), 3).empty());
  }
  EXPECT_EQ(pool.stats().live_isolates, 3);
  EXPECT_EQ(pool.stats().isolate_bytes, 9u);
  // A fourth would take 12 > 10: the least recently used ("a") is evicted.
  ASSERT_TRUE(pool.Submit("d", 0).ok());
  Assignment d = Take(pool);
  ASSERT_NE(d.evicted, nullptr);
  EXPECT_EQ(d.evicted->tenant, "a");
  // "d" grew: 6 bytes. Now 3 + 3 + 6 = 12 > 10: "b" goes at its release.
  std::vector<std::unique_ptr<FakeIsolate>> gone =
      pool.Release(d.isolate_id, std::move(d.isolate), 6);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0]->tenant, "b");
  IsolatePoolStats s = pool.stats();
  EXPECT_EQ(s.live_isolates, 2);
  EXPECT_EQ(s.isolate_bytes, 9u);
  EXPECT_EQ(s.evicted, 2u);
  EXPECT_EQ(s.evicted_for_memory, 2u);  // the count bound (100) was never near
  // "c" is still warm.
  ASSERT_TRUE(pool.Submit("c", 0).ok());
  Assignment c = Take(pool);
  EXPECT_TRUE(c.reused);
  Done(pool, c);
}

// A budget smaller than one isolate still lets one live (it never waits).
TEST(IsolatePoolPolicyTest, BudgetBelowOneIsolateStillServes) {
  Pool pool({.max_isolates = 4,
             .queue_capacity = 8,
             .max_in_flight_per_tenant = 4,
             .memory_budget_bytes = 1,
             .new_isolate_bytes = 5});
  for (const char* t : {"a", "b"}) {
    ASSERT_TRUE(pool.Submit(t, 0).ok());
    Assignment x = Take(pool);
    EXPECT_EQ(x.tenant, t);
    (void)pool.Release(x.isolate_id, std::move(x.isolate), 5);
  }
  EXPECT_LE(pool.stats().live_isolates, 1);
}

}  // namespace
}  // namespace txfn::internal
