// The single-threaded DurableQueue conformance tests; see
// txfn/testing/durable_queue_conformance.h.
#include "txfn/testing/durable_queue_conformance.h"

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/testing/queue_test_util.h"
#include "txfn/durable_queue.h"

namespace txfn::testing {

namespace internal {
int LinkDurableQueueConformanceTests() { return 0; }
}  // namespace internal

void DurableQueueConformanceTest::SetUp() {
  ASSERT_TRUE(GetParam().make) << "QueueFactory::make is empty";
  queue_ = GetParam().make();
  ASSERT_NE(queue_, nullptr) << "QueueFactory::make returned nullptr";
  ASSERT_GE(queue_->shard_count(), 1);
}

void DurableQueueConformanceTest::TearDown() { queue_.reset(); }

bool DurableQueueConformanceTest::Reopen() {
  if (!GetParam().reopen) return false;
  queue_ = GetParam().reopen(std::move(queue_));
  EXPECT_NE(queue_, nullptr) << "QueueFactory::reopen returned nullptr";
  return queue_ != nullptr;
}

namespace {

using internal::AllDeadLetters;
using internal::CallMaker;
using internal::Enqueued;
using internal::kT0;
using internal::LeaseAll;
using internal::SettleOne;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// A TenantDepth of `tenant` with `calls` (whatever its bytes).
::testing::Matcher<TenantDepth> Depth(const std::string& tenant, size_t calls) {
  return ::testing::AllOf(::testing::Field(&TenantDepth::tenant, tenant),
                          ::testing::Field(&TenantDepth::calls, calls));
}

constexpr absl::Duration kLease = absl::Seconds(30);

std::vector<CallId> Ids(const std::vector<LeasedCall>& leased) {
  std::vector<CallId> out;
  out.reserve(leased.size());
  for (const auto& l : leased) out.push_back(l.call.id);
  return out;
}
std::vector<CallId> Ids(const std::vector<Call>& calls) {
  std::vector<CallId> out;
  out.reserve(calls.size());
  for (const auto& c : calls) out.push_back(c.id);
  return out;
}
std::vector<CallId> Sorted(std::vector<CallId> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Every call of `calls` in one shard (so ordering across calls is defined).
std::vector<Call> SameShardCalls(DurableQueue& q, CallMaker& maker, int n, const std::string& fn,
                                 absl::Time start = kT0) {
  std::vector<Call> out;
  while (static_cast<int>(out.size()) < n) {
    Call c = maker.Make(fn, start);
    if (q.ShardOf(c.id) == 0) out.push_back(std::move(c));
  }
  return out;
}

TEST_P(DurableQueueConformanceTest, AnEnqueuedCallIsLeasedWithEveryField) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call c = maker.Make("mail:send");
  c.criticality = Criticality::kHigh;
  c.quota = QuotaClass::kOpportunistic;
  c.retry = {.max_attempts = 7,
             .initial_backoff = absl::Milliseconds(250),
             .max_backoff = absl::Minutes(2),
             .multiplier = 1.5};
  c.idempotency_key = "order-17";
  c.client = "frontend:eu";
  c.args = Value::FromObject({{"to", Value::String("ann")},
                              {"bytes", Value::Bytes(std::string("\0\xff", 2))},
                              {"n", Value::Float64(-0.0)}});
  c.attempt = 5;  // ignored by Enqueue
  ASSERT_EQ(Enqueued(q, {c}), 1u);
  std::vector<LeasedCall> got = LeaseAll(q, kT0);
  ASSERT_THAT(got, SizeIs(1));
  Call expected = c;
  expected.attempt = 0;
  EXPECT_EQ(got[0].call, expected);
  EXPECT_EQ(got[0].token.id, c.id);
  EXPECT_NE(got[0].token.token, 0u);
  EXPECT_EQ(got[0].expires, kT0 + kLease);
  EXPECT_EQ(got[0].shard, q.ShardOf(c.id));
}

TEST_P(DurableQueueConformanceTest, SpilledArgsAndLargeArgsRoundTrip) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call spilled = maker.Make("f");
  spilled.args = Value();
  spilled.args_blob = "blob/123";
  Call big = maker.Make("f");
  big.args = Value::Bytes(std::string(1 << 20, 'x'));
  ASSERT_EQ(Enqueued(q, {spilled, big}), 2u);
  std::vector<LeasedCall> got = LeaseAll(q, kT0);
  ASSERT_THAT(got, SizeIs(2));
  for (const LeasedCall& l : got) EXPECT_EQ(l.call, l.call.id == spilled.id ? spilled : big);
}

TEST_P(DurableQueueConformanceTest, ShardOfIsStableAndEachShardHandsOutOnlyItsCalls) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::vector<Call> calls;
  calls.reserve(64);
  for (int i = 0; i < 64; ++i) calls.push_back(maker.Make("f"));
  ASSERT_EQ(Enqueued(q, calls), 64u);
  for (const Call& c : calls) {
    const int s = q.ShardOf(c.id);
    EXPECT_GE(s, 0);
    EXPECT_LT(s, q.shard_count());
    EXPECT_EQ(q.ShardOf(c.id), s);
  }
  std::set<CallId> seen;
  for (int s = 0; s < q.shard_count(); ++s) {
    auto got = q.Lease({.shard = s, .now = kT0, .max = 100, .lease_duration = kLease});
    ASSERT_TRUE(got.ok()) << got.status();
    for (const LeasedCall& l : *got) {
      EXPECT_EQ(q.ShardOf(l.call.id), s);
      EXPECT_EQ(l.shard, s);
      EXPECT_TRUE(seen.insert(l.call.id).second);
    }
  }
  EXPECT_EQ(seen.size(), 64u);
}

TEST_P(DurableQueueConformanceTest, EnqueueOfABatchWithOneBadCallStoresNothing) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::vector<Call> batch = {maker.Make("a"), maker.Make("b"), maker.Make("c")};
  batch[1].deadline = batch[1].start_after - absl::Seconds(1);
  auto r = q.Enqueue(batch);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(batch[1].id.ToString()));
  EXPECT_THAT(r.status().message(), HasSubstr("deadline"));
  EXPECT_THAT(LeaseAll(q, kT0 + absl::Minutes(1)), IsEmpty());
  auto depths = q.Depths(kT0);
  ASSERT_TRUE(depths.ok());
  EXPECT_THAT(*depths, IsEmpty());
}

TEST_P(DurableQueueConformanceTest, EveryInvalidCallIsRefusedByName) {
  DurableQueue& q = queue();
  CallMaker maker;
  struct Case {
    const char* expect;
    std::function<void(Call&)> edit;
  };
  const std::vector<Case> cases = {
      {"nil", [](Call& c) { c.id = CallId(); }},
      {"version", [](Call& c) { c.id = CallId(c.id.hi() & ~uint64_t{0xf000}, c.id.lo()); }},
      {"tenant name is empty", [](Call& c) { c.tenant.clear(); }},
      {"tenant name", [](Call& c) { c.tenant = "a b"; }},
      {"function name is empty", [](Call& c) { c.function.clear(); }},
      {"function name", [](Call& c) { c.function = std::string(300, 'f'); }},
      {"function name", [](Call& c) { c.function = "mod:fn\n"; }},
      {"client name", [](Call& c) { c.client = "bad client"; }},
      {"quota class", [](Call& c) { c.quota = static_cast<QuotaClass>(9); }},
      {"criticality", [](Call& c) { c.criticality = static_cast<Criticality>(4); }},
      {"not after the start", [](Call& c) { c.deadline = c.start_after; }},
      {"between", [](Call& c) { c.deadline = c.start_after + absl::Milliseconds(500); }},
      {"between", [](Call& c) { c.deadline = c.start_after + absl::Hours(25); }},
      {"start_after is not set", [](Call& c) { c.start_after = absl::InfinitePast(); }},
      {"both inline and spilled", [](Call& c) { c.args_blob = "k"; }},
      {"max_attempts", [](Call& c) { c.retry.max_attempts = 0; }},
      {"backoff", [](Call& c) { c.retry.initial_backoff = -absl::Seconds(1); }},
      {"multiplier", [](Call& c) { c.retry.multiplier = 0.5; }},
      {"idempotency key", [](Call& c) { c.idempotency_key = std::string(300, 'k'); }},
  };
  for (const Case& tc : cases) {
    Call c = maker.Make("f");
    tc.edit(c);
    auto r = q.Enqueue({&c, 1});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << tc.expect;
    EXPECT_THAT(r.status().message(), HasSubstr(tc.expect));
  }
  EXPECT_THAT(LeaseAll(q, kT0 + absl::Hours(2)), IsEmpty());
}

TEST_P(DurableQueueConformanceTest, DuplicateIdsInABatchAreRefused) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call a = maker.Make("f");
  Call b = maker.Make("g");
  b.id = a.id;
  auto r = q.Enqueue(std::vector<Call>{a, b});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("twice"));
  EXPECT_THAT(LeaseAll(q, kT0), IsEmpty());
}

TEST_P(DurableQueueConformanceTest, EnqueueSkipsIdsAlreadyQueuedAndKeepsTheStoredCall) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call a = maker.Make("f");
  ASSERT_EQ(Enqueued(q, {a}), 1u);
  Call again = a;
  again.function = "other";
  Call b = maker.Make("f");
  EXPECT_EQ(Enqueued(q, {again, b}), 1u);
  std::vector<LeasedCall> got = LeaseAll(q, kT0);
  ASSERT_THAT(got, SizeIs(2));
  for (const LeasedCall& l : got) {
    if (l.call.id == a.id) {
      EXPECT_EQ(l.call.function, "f");
    }
  }
  // Still skipped while leased, and while dead-lettered.
  EXPECT_EQ(Enqueued(q, {a}), 0u);
  for (const LeasedCall& l : got) {
    ASSERT_TRUE(SettleOne(q, Settlement::DeadLetter(l.token, "test"), kT0).ok());
  }
  EXPECT_EQ(Enqueued(q, {a}), 0u);
  EXPECT_THAT(LeaseAll(q, kT0), IsEmpty());
}

TEST_P(DurableQueueConformanceTest, CallsAreLeasedOnlyOnceDueInStartThenEnqueueOrder) {
  DurableQueue& q = queue();
  CallMaker maker;
  // Enqueued out of start order, some sharing a start time.
  std::vector<Call> calls = SameShardCalls(q, maker, 6, "f");
  const absl::Duration starts[] = {absl::Seconds(30), absl::Seconds(10), absl::Seconds(20),
                                   absl::Seconds(10), absl::Seconds(0),  absl::Seconds(20)};
  for (int i = 0; i < 6; ++i) {
    calls[i].start_after = kT0 + starts[i];
    calls[i].deadline = calls[i].start_after + absl::Hours(1);
  }
  ASSERT_EQ(Enqueued(q, {calls[0], calls[1], calls[2]}), 3u);
  ASSERT_EQ(Enqueued(q, {calls[3], calls[4], calls[5]}), 3u);

  auto lease = [&](absl::Time now, size_t max) {
    auto got = q.Lease({.shard = 0, .now = now, .max = max, .lease_duration = absl::Hours(2)});
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? Ids(*got) : std::vector<CallId>{};
  };
  EXPECT_THAT(lease(kT0 - absl::Seconds(1), 10), IsEmpty()) << "nothing is due yet";
  EXPECT_THAT(lease(kT0 + absl::Seconds(10), 1), ElementsAre(calls[4].id));
  EXPECT_THAT(lease(kT0 + absl::Seconds(15), 10), ElementsAre(calls[1].id, calls[3].id));
  EXPECT_THAT(lease(kT0 + absl::Minutes(1), 10),
              ElementsAre(calls[2].id, calls[5].id, calls[0].id));
  EXPECT_THAT(lease(kT0 + absl::Minutes(1), 10), IsEmpty()) << "all are leased";
}

TEST_P(DurableQueueConformanceTest, TheFunctionFilterHandsOutOnlyThoseFunctionsInOrder) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::vector<Call> calls;
  const char* fns[] = {"a", "b", "c", "a", "b", "c", "a"};
  int i = 0;
  for (const char* fn : fns) {
    std::vector<Call> one = SameShardCalls(q, maker, 1, fn, kT0 + absl::Seconds(i++));
    calls.push_back(one[0]);
  }
  ASSERT_EQ(Enqueued(q, calls), calls.size());
  auto got = q.Lease({.shard = 0,
                      .functions = {"c", "a", "a"},
                      .now = kT0 + absl::Minutes(1),
                      .max = 4,
                      .lease_duration = kLease});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Ids(*got), ElementsAre(calls[0].id, calls[2].id, calls[3].id, calls[5].id));
  got = q.Lease({.shard = 0,
                 .functions = {"a", "zzz"},
                 .now = kT0 + absl::Minutes(1),
                 .max = 10,
                 .lease_duration = kLease});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Ids(*got), ElementsAre(calls[6].id));
  EXPECT_THAT(Ids(LeaseAll(q, kT0 + absl::Minutes(1))), ElementsAre(calls[1].id, calls[4].id));
}

// Calls of three tenants, one function, one shard, due a second apart in the
// order of `tenants`.
std::vector<Call> TenantsCalls(DurableQueue& q, CallMaker& maker,
                               const std::vector<std::string>& tenants) {
  std::vector<Call> calls;
  for (size_t i = 0; i < tenants.size(); ++i) {
    Call c = SameShardCalls(q, maker, 1, "f", kT0 + absl::Seconds(static_cast<double>(i)))[0];
    c.tenant = tenants[i];
    calls.push_back(std::move(c));
  }
  return calls;
}

TEST_P(DurableQueueConformanceTest, SkippedTenantsCallsStayDueInOrderForALaterLease) {
  DurableQueue& q = queue();
  CallMaker maker;
  const std::vector<Call> calls =
      TenantsCalls(q, maker, {"hog", "hog", "a", "hog", "b", "a", "hog", "b"});
  ASSERT_EQ(Enqueued(q, calls), calls.size());
  const absl::Time now = kT0 + absl::Minutes(1);
  auto got = q.Lease({.shard = 0,
                      .skip_tenants = {"hog", "b", "hog"},
                      .now = now,
                      .max = 10,
                      .lease_duration = kLease});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Ids(*got), ElementsAre(calls[2].id, calls[5].id));
  got = q.Lease(
      {.shard = 0, .skip_tenants = {"hog"}, .now = now, .max = 1, .lease_duration = kLease});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Ids(*got), ElementsAre(calls[4].id));
  // With the function filter and the quota class too.
  got = q.Lease({.shard = 0,
                 .functions = {"f"},
                 .quota = QuotaClass::kReserved,
                 .skip_tenants = {"hog"},
                 .now = now,
                 .max = 10,
                 .lease_duration = kLease});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Ids(*got), ElementsAre(calls[7].id));
  EXPECT_THAT(Ids(LeaseAll(q, now)),
              ElementsAre(calls[0].id, calls[1].id, calls[3].id, calls[6].id));
}

TEST_P(DurableQueueConformanceTest, MaxPerTenantCapsEachTenantsCallsInALease) {
  DurableQueue& q = queue();
  CallMaker maker;
  const std::vector<Call> calls = TenantsCalls(
      q, maker, {"hog", "hog", "hog", "hog", "a", "hog", "a", "b", "a", "hog", "b", "b"});
  ASSERT_EQ(Enqueued(q, calls), calls.size());
  const absl::Time now = kT0 + absl::Minutes(1);
  std::vector<CallId> order;  // every lease's calls, in lease order
  for (int round = 0; round < 20 && order.size() < calls.size(); ++round) {
    auto got =
        q.Lease({.shard = 0, .now = now, .max = 5, .max_per_tenant = 2, .lease_duration = kLease});
    ASSERT_TRUE(got.ok()) << got.status();
    // Never none while calls are due; never more than 2 of a tenant; in due
    // order, and each tenant's the earliest it has due.
    ASSERT_FALSE(got->empty()) << "round " << round;
    absl::flat_hash_map<std::string, int> per_tenant;
    for (const LeasedCall& l : *got) {
      EXPECT_LE(++per_tenant[l.call.tenant], 2) << l.call.tenant;
      order.push_back(l.call.id);
    }
    for (size_t i = 1; i < got->size(); ++i) {
      EXPECT_LT((*got)[i - 1].call.start_after, (*got)[i].call.start_after);
    }
    for (const LeasedCall& l : *got) {
      for (const Call& c : calls) {
        if (c.tenant != l.call.tenant || c.start_after >= l.call.start_after) continue;
        EXPECT_TRUE(absl::c_linear_search(order, c.id))
            << l.call.tenant << "'s call due at " << l.call.start_after
            << " was leased before its earlier one";
      }
    }
    // The first lease's first call is the first due.
    if (round == 0) {
      EXPECT_EQ(got->front().call.id, calls[0].id);
    }
  }
  // Every call once.
  EXPECT_EQ(Sorted(order), Sorted(Ids(calls)));
  EXPECT_THAT(LeaseAll(q, now), IsEmpty());
}

// Random leases with random skip lists and caps, over calls of five tenants,
// three functions and both quota classes due at random times, checked against
// what the contract allows: only due calls of tenants not skipped, of the
// function and class asked for, at most the cap of each tenant and each
// tenant's earliest, in due order, never none while one is due; and in the
// end every call is handed out exactly once.
// Leases `calls` (enqueued, due from kT0 on) at random (tenants skipped, a function, a quota
// class, max, max_per_tenant; `always_skipped`, if not empty, in every skip list) one second
// apart until each call of another tenant is handed out, checking every lease against the
// contract. Returns how often a cap held back a tenant's due calls.
int LeaseByTenantAtRandom(DurableQueue& q, const std::vector<Call>& calls,
                          const std::vector<std::string>& tenants,
                          const std::vector<std::string>& functions,
                          const std::string& always_skipped, std::mt19937& rng) {
  absl::flat_hash_map<CallId, const Call*> by_id;
  for (const Call& c : calls) by_id[c.id] = &c;
  const size_t to_lease = static_cast<size_t>(
      absl::c_count_if(calls, [&](const Call& c) { return c.tenant != always_skipped; }));
  absl::flat_hash_set<CallId> leased;
  // Pending calls are due in (start_after, enqueue order): the order of `calls` breaks ties.
  auto earlier = [&](const Call& a, const Call& b) { return a.start_after < b.start_after; };
  absl::Time now = kT0;
  int capped = 0;
  for (int round = 0; round < 200 && leased.size() < to_lease; ++round) {
    now += absl::Seconds(1);
    LeaseRequest r{.shard = 0, .now = now, .lease_duration = absl::Hours(2)};
    if (!always_skipped.empty()) r.skip_tenants.push_back(always_skipped);
    for (const std::string& t : tenants) {
      if (rng() % 4 == 0) r.skip_tenants.push_back(t);
    }
    if (rng() % 3 == 0) r.functions = {functions[rng() % functions.size()]};
    if (rng() % 3 == 0) {
      r.quota = rng() % 2 == 0 ? QuotaClass::kReserved : QuotaClass::kOpportunistic;
    }
    r.max = 1 + rng() % 12;
    r.max_per_tenant = rng() % 4;  // 0: no cap
    auto eligible = [&](const Call& c) {
      return !leased.contains(c.id) && c.start_after <= now &&
             !absl::c_linear_search(r.skip_tenants, c.tenant) &&
             (r.functions.empty() || c.function == r.functions[0]) &&
             (!r.quota.has_value() || c.quota == *r.quota);
    };
    auto got = q.Lease(r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return capped;
    const Call* first = nullptr;
    for (const Call& c : calls) {
      if (eligible(c) && (first == nullptr || earlier(c, *first))) first = &c;
    }
    if (first == nullptr) {
      EXPECT_TRUE(got->empty()) << "round " << round;
      continue;
    }
    EXPECT_FALSE(got->empty()) << "round " << round << ": none handed out while one is due";
    if (got->empty()) continue;
    EXPECT_EQ(got->front().call.start_after, first->start_after) << "round " << round;
    EXPECT_LE(got->size(), r.max);
    absl::flat_hash_map<std::string, size_t> per_tenant;
    for (size_t i = 0; i < got->size(); ++i) {
      const Call& c = *by_id.at((*got)[i].call.id);
      EXPECT_TRUE(eligible(c)) << "round " << round << ": an ineligible call " << c.tenant << "/"
                               << c.function;
      if (i > 0) {
        EXPECT_LE((*got)[i - 1].call.start_after, c.start_after) << "round " << round;
      }
      ++per_tenant[c.tenant];
      if (r.max_per_tenant > 0) {
        EXPECT_LE(per_tenant[c.tenant], r.max_per_tenant);
      }
      // Its tenant's earliest: no eligible call of the tenant due strictly
      // earlier stays behind.
      for (const Call& other : calls) {
        if (other.tenant != c.tenant || !eligible(other) || !earlier(other, c)) continue;
        EXPECT_TRUE(
            absl::c_any_of(*got, [&](const LeasedCall& l) { return l.call.id == other.id; }))
            << "round " << round << ": " << c.tenant << " passed over an earlier call";
      }
    }
    for (const LeasedCall& l : *got) EXPECT_TRUE(leased.insert(l.call.id).second);
    for (const auto& [held_tenant, n] : per_tenant) {
      const std::string& tenant = held_tenant;  // (a lambda cannot capture a binding in C++20)
      if (n == r.max_per_tenant &&
          absl::c_any_of(calls, [&](const Call& c) { return c.tenant == tenant && eligible(c); })) {
        ++capped;  // the cap held a tenant's due calls back (the case under test)
      }
    }
  }
  EXPECT_EQ(leased.size(), to_lease) << "every call handed out exactly once";
  return capped;
}

// `n` calls due within a minute of kT0, each of a random tenant, function and quota class.
std::vector<Call> RandomCalls(DurableQueue& q, CallMaker& maker, std::mt19937& rng, int n,
                              const std::vector<std::string>& tenants,
                              const std::vector<std::string>& functions) {
  std::vector<Call> calls;
  for (int i = 0; i < n; ++i) {
    const absl::Time due = kT0 + absl::Seconds(static_cast<double>(rng() % 60));
    Call c = SameShardCalls(q, maker, 1, functions[rng() % functions.size()], due)[0];
    c.tenant = tenants[rng() % tenants.size()];
    c.quota = rng() % 3 == 0 ? QuotaClass::kOpportunistic : QuotaClass::kReserved;
    calls.push_back(std::move(c));
  }
  return calls;
}

TEST_P(DurableQueueConformanceTest, LeasingByTenantKeepsToTheContractUnderRandomRequests) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::mt19937 rng(7);
  const std::vector<std::string> tenants = {"t0", "t1", "t2", "t3", "t4"};
  const std::vector<std::string> functions = {"a", "b", "c"};
  const std::vector<Call> calls = RandomCalls(q, maker, rng, 120, tenants, functions);
  ASSERT_EQ(Enqueued(q, calls), calls.size());
  EXPECT_GT(LeaseByTenantAtRandom(q, calls, tenants, functions, "", rng), 10);
}

// The same past a skipped tenant whose 3,000 due calls come first in due order, of both quota
// classes and every function: more than an adapter may read past in due order before it looks
// tenant by tenant (PostgresQueue's skip_scan_rows). Then, no longer skipped, its calls are
// handed out in their order.
TEST_P(DurableQueueConformanceTest, LeasingByTenantKeepsToTheContractPastABigSkippedBacklog) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::mt19937 rng(9);
  const std::vector<std::string> tenants = {"t0", "t1", "t2", "t3", "t4"};
  const std::vector<std::string> functions = {"a", "b", "c"};
  std::vector<Call> calls = RandomCalls(q, maker, rng, 3000, {"hog"}, functions);
  for (Call& c : calls) c.start_after -= absl::Minutes(1);  // before every other call
  for (Call& c : RandomCalls(q, maker, rng, 100, tenants, functions)) calls.push_back(c);
  for (Call& c : RandomCalls(q, maker, rng, 300, {"hog"}, functions)) calls.push_back(c);
  ASSERT_EQ(Enqueued(q, calls), calls.size());
  EXPECT_GT(LeaseByTenantAtRandom(q, calls, tenants, functions, "hog", rng), 10);
  auto hog = q.Lease({.shard = 0, .now = kT0 + absl::Minutes(5), .max = 50});
  ASSERT_TRUE(hog.ok()) << hog.status();
  ASSERT_EQ(hog->size(), 50u);
  absl::Time last = absl::InfinitePast();
  for (const LeasedCall& l : *hog) {
    EXPECT_EQ(l.call.tenant, "hog");
    EXPECT_LE(last, l.call.start_after);
    last = l.call.start_after;
  }
  EXPECT_EQ(hog->front().call.start_after, kT0 - absl::Minutes(1));
}

// Leases that skip a tenant's backlog, between random writes that make calls
// due at any time, the past included: enqueues (a backlog of the skipped
// tenant, other tenants' calls), ACKs, NACKs and releases with past or
// future retry times, extensions, leases left to expire. An adapter may
// remember how far earlier leases got past the backlog (SqliteQueue does);
// whatever it remembers, every lease must still hand out a call whenever
// one is due, the earliest first, and only eligible ones.
TEST_P(DurableQueueConformanceTest, LeasesPastASkippedBacklogSeeEveryWriteUnderRandomOperations) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::mt19937 rng(11);
  const std::vector<std::string> tenants = {"hog", "t1", "t2", "t3"};
  struct Model {
    Call call;
    bool leased = false;
    absl::Time due;  // pending: when due; leased: when the lease expires
    LeaseToken token;
  };
  std::vector<Model> calls;
  absl::flat_hash_map<CallId, size_t> index;
  absl::Time now = kT0;
  auto secs = [&](int lo, int hi) {
    return absl::Seconds(lo + static_cast<int>(rng() % static_cast<unsigned>(hi - lo + 1)));
  };
  auto enqueue = [&](const std::string& tenant, int n, absl::Time due) {
    std::vector<Call> batch = SameShardCalls(q, maker, n, "f", due);
    for (Call& c : batch) {
      c.tenant = tenant;
      c.deadline = due + absl::Hours(24);  // far past the test's hour
      c.retry.max_attempts = 100;          // more deliveries than any call gets here
      c.quota = rng() % 4 == 0 ? QuotaClass::kOpportunistic : QuotaClass::kReserved;
    }
    ASSERT_EQ(Enqueued(q, batch), batch.size());
    for (Call& c : batch) {
      index[c.id] = calls.size();
      calls.push_back({.call = std::move(c), .due = due});
    }
  };
  enqueue("hog", 200, now);
  int leases = 0, handed_out = 0, past_writes = 0, removed = 0;
  for (int step = 0; step < 600; ++step) {
    const unsigned op = rng() % 11;
    if (op == 10) {
      // Take out a call still in the queue: only one that waits (not under a live lease) goes.
      Model& m = calls[rng() % calls.size()];
      if (!index.contains(m.call.id)) continue;
      auto r = q.RemovePending({&m.call.id, 1}, now);
      ASSERT_TRUE(r.ok()) << r.status();
      if (m.leased && m.due > now) {
        EXPECT_EQ(r->at(0).code(), absl::StatusCode::kFailedPrecondition) << "step " << step;
      } else {
        ASSERT_TRUE(r->at(0).ok()) << "step " << step << ": " << r->at(0);
        m.leased = false;
        m.due = absl::InfiniteFuture();  // gone
        index.erase(m.call.id);
        ++removed;
      }
    } else if (op == 0) {
      enqueue("hog", 20, now + secs(-30, 5));
    } else if (op == 1) {
      const absl::Time due = now + secs(-40, 10);
      if (due <= now) ++past_writes;
      enqueue(tenants[1 + rng() % 3], 1, due);
    } else if (op <= 3) {
      // Settle one of the live leases: ACK, NACK or release, at any retry time.
      std::vector<size_t> live;
      for (size_t i = 0; i < calls.size(); ++i) {
        if (calls[i].leased && calls[i].due > now) live.push_back(i);
      }
      if (live.empty()) continue;
      const size_t i = live[rng() % live.size()];
      const absl::Time retry_at = now + secs(-40, 10);
      const unsigned kind = rng() % 3;
      const Settlement st = kind == 0   ? Settlement::Ack(calls[i].token)
                            : kind == 1 ? Settlement::Nack(calls[i].token, retry_at)
                                        : Settlement::Release(calls[i].token, retry_at);
      ASSERT_TRUE(SettleOne(q, st, now).ok()) << "step " << step;
      if (kind == 0) {
        index.erase(calls[i].call.id);
        calls[i].leased = false;
        calls[i].due = absl::InfiniteFuture();  // gone
      } else {
        if (retry_at <= now) ++past_writes;
        calls[i].leased = false;
        calls[i].due = retry_at;
      }
    } else if (op == 4) {
      for (Model& m : calls) {
        if (!m.leased || m.due <= now || rng() % 2 == 0) continue;
        auto r = q.Extend({&m.token, 1}, now, absl::Seconds(5));
        ASSERT_TRUE(r.ok() && r->at(0).ok()) << "step " << step;
        m.due = now + absl::Seconds(5);
      }
    } else if (op == 5) {
      now += secs(0, 4);  // leases may expire: their calls are due again
    } else {
      LeaseRequest r{.shard = 0, .now = now, .lease_duration = secs(1, 8)};
      if (rng() % 5 != 0) r.skip_tenants.push_back("hog");
      if (rng() % 4 == 0) r.skip_tenants.push_back(tenants[1 + rng() % 3]);
      if (rng() % 4 == 0) {
        r.quota = rng() % 2 == 0 ? QuotaClass::kReserved : QuotaClass::kOpportunistic;
      }
      r.max = 1 + rng() % 4;
      r.max_per_tenant = rng() % 3;
      auto eligible = [&](const Model& m) {
        return index.contains(m.call.id) && m.due <= now &&
               !absl::c_linear_search(r.skip_tenants, m.call.tenant) &&
               (!r.quota.has_value() || m.call.quota == *r.quota);
      };
      absl::Time earliest = absl::InfiniteFuture();
      for (const Model& m : calls) {
        if (eligible(m)) earliest = std::min(earliest, m.due);
      }
      auto got = q.Lease(r);
      ASSERT_TRUE(got.ok()) << got.status();
      ++leases;
      if (earliest == absl::InfiniteFuture()) {
        EXPECT_THAT(*got, IsEmpty()) << "step " << step;
        continue;
      }
      ASSERT_FALSE(got->empty()) << "step " << step << ": none handed out while one is due";
      EXPECT_EQ(calls[index.at(got->front().call.id)].due, earliest)
          << "step " << step << ": not the earliest due call first";
      for (const LeasedCall& l : *got) {
        ASSERT_TRUE(index.contains(l.call.id)) << "step " << step << ": an acknowledged call";
        Model& m = calls[index.at(l.call.id)];
        EXPECT_TRUE(eligible(m)) << "step " << step << ": an ineligible call of " << m.call.tenant;
        m.leased = true;
        m.due = l.expires;
        m.token = l.token;
        ++handed_out;
      }
    }
  }
  EXPECT_GT(leases, 200);
  EXPECT_GT(handed_out, 200);
  EXPECT_GT(past_writes, 30) << "writes due before the leases' progress (the case under test)";
  EXPECT_GT(removed, 10);
}

TEST_P(DurableQueueConformanceTest, BadTenantFiltersAreRefused) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, SameShardCalls(q, maker, 1, "f")), 1u);
  auto bad_name = q.Lease({.shard = 0, .skip_tenants = {"ok", "not ok"}, .now = kT0, .max = 1});
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_name.status().message(), HasSubstr("skip_tenants"));
  std::vector<std::string> many(1001, "t");
  auto too_many = q.Lease({.shard = 0, .skip_tenants = many, .now = kT0, .max = 1});
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(), HasSubstr("1001"));
  EXPECT_THAT(LeaseAll(q, kT0), SizeIs(1));  // nothing was leased by the refusals
}

TEST_P(DurableQueueConformanceTest, TheQuotaFilterHandsOutOnlyThatClassInOrder) {
  DurableQueue& q = queue();
  CallMaker maker;
  // Opportunistic calls due first, reserved ones after, over two functions.
  std::vector<Call> calls;
  for (int i = 0; i < 6; ++i) {
    Call c = SameShardCalls(q, maker, 1, i % 2 == 0 ? "a" : "b", kT0 + absl::Seconds(i))[0];
    c.quota = i < 3 ? QuotaClass::kOpportunistic : QuotaClass::kReserved;
    calls.push_back(std::move(c));
  }
  ASSERT_EQ(Enqueued(q, calls), calls.size());
  const absl::Time now = kT0 + absl::Minutes(1);
  auto got = q.Lease(
      {.shard = 0, .quota = QuotaClass::kReserved, .now = now, .max = 2, .lease_duration = kLease});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Ids(*got), ElementsAre(calls[3].id, calls[4].id))
      << "reserved calls first, past the opportunistic ones due earlier";
  got = q.Lease({.shard = 0,
                 .functions = {"b"},
                 .quota = QuotaClass::kOpportunistic,
                 .now = now,
                 .max = 10,
                 .lease_duration = kLease});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Ids(*got), ElementsAre(calls[1].id)) << "both filters apply";
  EXPECT_THAT(Ids(LeaseAll(q, now)), ElementsAre(calls[0].id, calls[2].id, calls[5].id))
      << "unfiltered: the rest in due order, whatever their class";
  const std::optional<QuotaClass> bad = static_cast<QuotaClass>(7);
  EXPECT_EQ(q.Lease({.shard = 0, .quota = bad, .now = now, .max = 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// An unfiltered lease takes both classes in one due order: with the classes
// interleaved, due times out of enqueue order, ties, a call to dead-letter
// in the middle, and leases of a few calls at a time, the rounds hand out
// every live call once, in (start, enqueue) order.
TEST_P(DurableQueueConformanceTest, UnfilteredLeasesInterleaveTheClassesInDueOrder) {
  DurableQueue& q = queue();
  CallMaker maker;
  const int starts[] = {7, 3, 3, 9, 0, 5, 3, 8, 1, 5, 2, 6, 4};
  std::vector<Call> calls;
  for (int i = 0; i < 13; ++i) {
    Call c = SameShardCalls(q, maker, 1, i % 3 == 0 ? "a" : "b", kT0 + absl::Seconds(starts[i]))[0];
    c.quota = (i * 5) % 3 == 1 ? QuotaClass::kOpportunistic : QuotaClass::kReserved;
    calls.push_back(std::move(c));
  }
  calls[12].deadline = calls[12].start_after + absl::Seconds(10);  // past by the lease
  ASSERT_EQ(Enqueued(q, calls), calls.size());
  std::vector<int> order(12);
  for (int i = 0; i < 12; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return starts[x] < starts[y]; });
  std::vector<CallId> want(order.size());
  for (size_t i = 0; i < order.size(); ++i) want[i] = calls[order[i]].id;

  const absl::Time now = kT0 + absl::Minutes(1);
  std::vector<CallId> got;
  for (int round = 0; round < 5; ++round) {
    auto leased = q.Lease({.shard = 0, .now = now, .max = 5, .lease_duration = kLease});
    ASSERT_TRUE(leased.ok()) << leased.status();
    for (const LeasedCall& l : *leased) got.push_back(l.call.id);
  }
  EXPECT_EQ(got, want);
  const std::vector<DeadLetter> dead = AllDeadLetters(q);
  ASSERT_THAT(dead, SizeIs(1));
  EXPECT_EQ(dead[0].call.id, calls[12].id);
}

TEST_P(DurableQueueConformanceTest, ALeaseIsExclusiveUntilItExpiresThenTheCallComesBack) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call c = maker.Make("f");
  ASSERT_EQ(Enqueued(q, {c}), 1u);
  std::vector<LeasedCall> first = LeaseAll(q, kT0);
  ASSERT_THAT(first, SizeIs(1));
  EXPECT_EQ(first[0].call.attempt, 0);
  EXPECT_THAT(LeaseAll(q, kT0 + kLease - absl::Nanoseconds(1)), IsEmpty());
  std::vector<LeasedCall> second = LeaseAll(q, kT0 + kLease);
  ASSERT_THAT(second, SizeIs(1)) << "the lease expired: at-least-once delivery";
  EXPECT_EQ(second[0].call.id, c.id);
  EXPECT_EQ(second[0].call.attempt, 1) << "the expired delivery counts";
  EXPECT_NE(second[0].token.token, first[0].token.token);
}

TEST_P(DurableQueueConformanceTest, AckDeletesAndASecondAckIsRefused) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, {maker.Make("f")}), 1u);
  std::vector<LeasedCall> got = LeaseAll(q, kT0);
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_TRUE(q.Ack(got[0].token, kT0 + absl::Seconds(1)).ok());
  EXPECT_EQ(q.Ack(got[0].token, kT0 + absl::Seconds(1)).code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(LeaseAll(q, kT0 + absl::Hours(5)), IsEmpty()) << "an acked call never comes back";
  auto depths = q.Depths(kT0);
  ASSERT_TRUE(depths.ok());
  EXPECT_THAT(*depths, IsEmpty());
}

TEST_P(DurableQueueConformanceTest, AStaleTokenIsRefusedAndCannotTouchTheNewOwnersLease) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, {maker.Make("f")}), 1u);
  std::vector<LeasedCall> a = LeaseAll(q, kT0);
  ASSERT_THAT(a, SizeIs(1));
  std::vector<LeasedCall> b = LeaseAll(q, kT0 + kLease + absl::Seconds(1));
  ASSERT_THAT(b, SizeIs(1));
  const absl::Time late = kT0 + kLease + absl::Seconds(2);
  for (const Settlement& s : {Settlement::Ack(a[0].token), Settlement::Nack(a[0].token, late),
                              Settlement::DeadLetter(a[0].token, "late")}) {
    absl::Status st = SettleOne(q, s, late);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_THAT(st.message(), HasSubstr("stale"));
  }
  auto ext = q.Extend({&a[0].token, 1}, late, kLease);
  ASSERT_TRUE(ext.ok());
  EXPECT_EQ((*ext)[0].code(), absl::StatusCode::kFailedPrecondition);
  // B's lease is intact: it is still exclusive, and B can ack.
  EXPECT_THAT(LeaseAll(q, late), IsEmpty());
  EXPECT_TRUE(q.Ack(b[0].token, late).ok());
}

TEST_P(DurableQueueConformanceTest, AnExpiredLeaseIsRefusedEvenBeforeAnyoneLeasesTheCallAgain) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, {maker.Make("f")}), 1u);
  std::vector<LeasedCall> a = LeaseAll(q, kT0);
  ASSERT_THAT(a, SizeIs(1));
  EXPECT_EQ(q.Ack(a[0].token, kT0 + kLease).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(LeaseAll(q, kT0 + kLease), SizeIs(1)) << "the call was not deleted";
}

TEST_P(DurableQueueConformanceTest, AForgedTokenIsRefused) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, {maker.Make("f")}), 1u);
  std::vector<LeasedCall> a = LeaseAll(q, kT0);
  ASSERT_THAT(a, SizeIs(1));
  LeaseToken forged = a[0].token;
  forged.token += 1000;
  EXPECT_EQ(q.Ack(forged, kT0).code(), absl::StatusCode::kFailedPrecondition);
  LeaseToken unknown{maker.Make("f").id, a[0].token.token};
  EXPECT_EQ(q.Ack(unknown, kT0).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(q.Ack(a[0].token, kT0).ok());
}

TEST_P(DurableQueueConformanceTest, ANackMakesTheCallDueAtRetryAtWithOneMoreAttempt) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, {maker.Make("f")}), 1u);
  std::vector<LeasedCall> a = LeaseAll(q, kT0);
  ASSERT_THAT(a, SizeIs(1));
  const absl::Time retry = kT0 + absl::Seconds(10);
  ASSERT_TRUE(q.Nack(a[0].token, kT0 + absl::Seconds(1), retry, "flaky").ok());
  EXPECT_THAT(LeaseAll(q, retry - absl::Nanoseconds(1)), IsEmpty());
  std::vector<LeasedCall> b = LeaseAll(q, retry);
  ASSERT_THAT(b, SizeIs(1));
  EXPECT_EQ(b[0].call.attempt, 1);
  EXPECT_EQ(b[0].call.start_after, a[0].call.start_after) << "the call itself is unchanged";
}

TEST_P(DurableQueueConformanceTest, AReleaseGivesTheCallBackWithoutUsingAnAttempt) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call c = maker.Make("f");
  c.retry.max_attempts = 1;
  ASSERT_EQ(Enqueued(q, {c}), 1u);
  absl::Time now = kT0;
  for (int i = 0; i < 3; ++i) {
    std::vector<LeasedCall> got = LeaseAll(q, now);
    ASSERT_THAT(got, SizeIs(1)) << "round " << i;
    EXPECT_EQ(got[0].call.attempt, 0) << "released deliveries do not count";
    ASSERT_TRUE(SettleOne(q, Settlement::Release(got[0].token, now + absl::Seconds(5)), now).ok());
    EXPECT_THAT(LeaseAll(q, now + absl::Seconds(4)), IsEmpty()) << "due again only at retry_at";
    now += absl::Seconds(5);
  }
  EXPECT_THAT(AllDeadLetters(q), IsEmpty());
  std::vector<LeasedCall> last = LeaseAll(q, now);
  ASSERT_THAT(last, SizeIs(1));
  ASSERT_TRUE(q.Nack(last[0].token, now, now, "real failure").ok());
  EXPECT_THAT(AllDeadLetters(q), SizeIs(1)) << "the one real attempt was the last";
}

TEST_P(DurableQueueConformanceTest, ExtendKeepsALeaseAlive) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, {maker.Make("f")}), 1u);
  std::vector<LeasedCall> a = LeaseAll(q, kT0);
  ASSERT_THAT(a, SizeIs(1));
  absl::Time now = kT0;
  for (int i = 0; i < 5; ++i) {
    now += kLease / 2;
    auto r = q.Extend({&a[0].token, 1}, now, kLease);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE((*r)[0].ok()) << (*r)[0];
    EXPECT_THAT(LeaseAll(q, now + kLease / 2), IsEmpty()) << "still leased at round " << i;
  }
  EXPECT_TRUE(q.Ack(a[0].token, now + kLease - absl::Seconds(1)).ok());
}

TEST_P(DurableQueueConformanceTest, ANackPastTheLastAttemptDeadLetters) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call c = maker.Make("f");
  c.retry.max_attempts = 2;
  ASSERT_EQ(Enqueued(q, {c}), 1u);
  absl::Time now = kT0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<LeasedCall> got = LeaseAll(q, now);
    ASSERT_THAT(got, SizeIs(1)) << "attempt " << attempt;
    EXPECT_EQ(got[0].call.attempt, attempt);
    ASSERT_TRUE(q.Nack(got[0].token, now, now, "boom").ok());
  }
  EXPECT_THAT(LeaseAll(q, now + absl::Minutes(1)), IsEmpty());
  std::vector<DeadLetter> dead = AllDeadLetters(q);
  ASSERT_THAT(dead, SizeIs(1));
  EXPECT_EQ(dead[0].call.id, c.id);
  EXPECT_EQ(dead[0].call.attempt, 2);
  EXPECT_THAT(dead[0].reason, HasSubstr("attempts exhausted"));
  EXPECT_THAT(dead[0].reason, HasSubstr("boom"));
  EXPECT_EQ(dead[0].at, now);
}

TEST_P(DurableQueueConformanceTest, LeasesThatExpireUseUpAttemptsToo) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call c = maker.Make("f");
  c.retry.max_attempts = 3;
  ASSERT_EQ(Enqueued(q, {c}), 1u);
  absl::Time now = kT0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(LeaseAll(q, now), SizeIs(1));
    now += kLease;  // the lessee died
  }
  EXPECT_THAT(LeaseAll(q, now), IsEmpty());
  std::vector<DeadLetter> dead = AllDeadLetters(q);
  ASSERT_THAT(dead, SizeIs(1));
  EXPECT_THAT(dead[0].reason, HasSubstr("attempts exhausted after 3"));
}

TEST_P(DurableQueueConformanceTest, ACallPastItsDeadlineIsDeadLetteredNotLeased) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call late = maker.Make("f", kT0, absl::Minutes(5));
  Call fine = maker.Make("f", kT0, absl::Hours(2));
  ASSERT_EQ(Enqueued(q, {late, fine}), 2u);
  std::vector<LeasedCall> got = LeaseAll(q, kT0 + absl::Minutes(5));
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0].call.id, fine.id);
  std::vector<DeadLetter> dead = AllDeadLetters(q);
  ASSERT_THAT(dead, SizeIs(1));
  EXPECT_EQ(dead[0].call.id, late.id);
  EXPECT_THAT(dead[0].reason, HasSubstr("deadline passed"));
}

TEST_P(DurableQueueConformanceTest, FindFollowsACallFromPendingToLeasedToDeadAndForgetsAnAck) {
  DurableQueue& q = queue();
  CallMaker maker;
  Call c = maker.Make("f", kT0 + absl::Seconds(5));
  c.retry.max_attempts = 2;
  Call acked = maker.Make("g");
  EXPECT_EQ(q.Find(c.id, kT0).value(), std::nullopt);
  ASSERT_EQ(Enqueued(q, {c, acked}), 2u);

  std::optional<QueuedCall> found = q.Find(c.id, kT0).value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->state, QueuedCall::State::kPending);
  EXPECT_EQ(found->at, kT0 + absl::Seconds(5));
  EXPECT_EQ(found->call, c);

  const absl::Time t1 = kT0 + absl::Seconds(10);
  std::vector<LeasedCall> got = LeaseAll(q, t1);
  ASSERT_THAT(got, SizeIs(2));
  found = q.Find(c.id, t1).value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->state, QueuedCall::State::kLeased);
  EXPECT_EQ(found->at, t1 + kLease);
  EXPECT_EQ(found->call.attempt, 1);
  // An expired lease is pending again.
  EXPECT_EQ(q.Find(c.id, t1 + kLease).value()->state, QueuedCall::State::kPending);

  for (const LeasedCall& l : got) {
    if (l.call.id == acked.id) {
      ASSERT_TRUE(q.Ack(l.token, t1).ok());
    } else {
      ASSERT_TRUE(q.Nack(l.token, t1, t1, "first").ok());
    }
  }
  EXPECT_EQ(q.Find(acked.id, t1).value(), std::nullopt);
  found = q.Find(c.id, t1).value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->state, QueuedCall::State::kPending);
  EXPECT_EQ(found->reason, "first");

  got = LeaseAll(q, t1);
  ASSERT_THAT(got, SizeIs(1));
  ASSERT_TRUE(q.Nack(got[0].token, t1, t1, "second").ok());
  found = q.Find(c.id, t1).value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->state, QueuedCall::State::kDead);
  EXPECT_EQ(found->at, t1);
  EXPECT_THAT(found->reason, HasSubstr("attempts exhausted"));
  EXPECT_EQ(found->call.attempt, 2);
}

TEST_P(DurableQueueConformanceTest, RemovePendingTakesOutOnlyCallsWaitingToBeLeased) {
  DurableQueue& q = queue();
  CallMaker maker;
  // Leased at kT0: `expired` (its lease ends at kT0 + 30 s), `held` (extended
  // to kT0 + 50 s) and `dead` (NACKed with its one attempt used).
  std::vector<Call> first = SameShardCalls(q, maker, 3, "f");
  const Call& expired = first[0];
  const Call& held = first[1];
  first[2].retry.max_attempts = 1;
  const Call& dead = first[2];
  ASSERT_EQ(Enqueued(q, first), 3u);
  std::vector<LeasedCall> got = LeaseAll(q, kT0);
  ASSERT_THAT(got, SizeIs(3));
  auto token_of = [&](const Call& c) {
    for (const LeasedCall& l : got) {
      if (l.call.id == c.id) return l.token;
    }
    ADD_FAILURE() << "call " << c.id.ToString() << " not leased";
    return LeaseToken{};
  };
  ASSERT_TRUE(q.Nack(token_of(dead), kT0, kT0, "once").ok());
  const LeaseToken held_token = token_of(held);
  ASSERT_TRUE(q.Extend({&held_token, 1}, kT0 + absl::Seconds(20), kLease).value()[0].ok());
  // Waiting: `due` (due now) and `later` (due in ten minutes).
  std::vector<Call> second = SameShardCalls(q, maker, 2, "f");
  second[1].start_after = kT0 + absl::Minutes(10);
  second[1].deadline = second[1].start_after + absl::Hours(1);
  const Call& due = second[0];
  const Call& later = second[1];
  ASSERT_EQ(Enqueued(q, second), 2u);
  const CallId unknown = maker.Make("f").id;
  const absl::Time t = kT0 + absl::Seconds(40);

  // Bad batches change nothing.
  const std::vector<CallId> twice = {due.id, later.id, due.id};
  auto bad = q.RemovePending(twice, t);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr("twice"));
  const std::vector<CallId> too_many(DurableQueue::kMaxLeaseBatch + 1, due.id);
  EXPECT_EQ(q.RemovePending(too_many, t).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(q.Find(due.id, t).value().has_value());
  EXPECT_THAT(q.RemovePending({}, t).value(), IsEmpty());

  const std::vector<CallId> ids = {expired.id, later.id, due.id, held.id, dead.id, unknown};
  auto removed = q.RemovePending(ids, t);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_THAT(*removed, SizeIs(6));
  EXPECT_TRUE((*removed)[0].ok()) << "a call whose lease expired waits: " << (*removed)[0];
  EXPECT_TRUE((*removed)[1].ok()) << (*removed)[1];
  EXPECT_TRUE((*removed)[2].ok()) << (*removed)[2];
  EXPECT_EQ((*removed)[3].code(), absl::StatusCode::kFailedPrecondition) << (*removed)[3];
  EXPECT_THAT((*removed)[3].message(), HasSubstr("leased"));
  EXPECT_EQ((*removed)[4].code(), absl::StatusCode::kFailedPrecondition) << (*removed)[4];
  EXPECT_THAT((*removed)[4].message(), HasSubstr("dead-lettered"));
  EXPECT_EQ((*removed)[5].code(), absl::StatusCode::kNotFound) << (*removed)[5];

  auto check = [&](DurableQueue& queue, const char* when) {
    for (const Call* gone : std::initializer_list<const Call*>{&expired, &later, &due}) {
      EXPECT_EQ(queue.Find(gone->id, t).value(), std::nullopt) << when;
    }
    EXPECT_EQ(queue.Find(held.id, t).value()->state, QueuedCall::State::kLeased) << when;
    EXPECT_EQ(queue.Find(dead.id, t).value()->state, QueuedCall::State::kDead) << when;
    std::vector<FunctionDepth> depths = queue.Depths(t).value();
    ASSERT_THAT(depths, SizeIs(1)) << when;
    EXPECT_EQ(depths[0].pending, 0u) << when;
    EXPECT_EQ(depths[0].leased, 1u) << when;
  };
  check(q, "after RemovePending");
  // The expired lease's token is no good any more, and a second removal finds nothing.
  EXPECT_EQ(q.Ack(token_of(expired), t).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(q.RemovePending({&due.id, 1}, t).value()[0].code(), absl::StatusCode::kNotFound);
  DurableQueue* after = &q;
  if (Reopen()) {
    after = &queue();
    check(*after, "after reopening");
  }
  // Only the held call is ever delivered again (once its lease ends).
  std::vector<LeasedCall> back = LeaseAll(*after, kT0 + absl::Minutes(30));
  ASSERT_THAT(back, SizeIs(1));
  EXPECT_EQ(back[0].call.id, held.id);
}

TEST_P(DurableQueueConformanceTest, ListCallsPagesInIdOrderThroughEveryStateWithFilters) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::vector<Call> calls;
  for (int i = 0; i < 30; ++i) {
    Call c = maker.Make(i % 3 == 0 ? "g" : "f");
    if (i % 2 == 0) c.tenant = "other";
    c.retry.max_attempts = 1;
    calls.push_back(std::move(c));
  }
  ASSERT_EQ(Enqueued(q, calls), 30u);
  // Lease some, and dead-letter one of those.
  std::vector<LeasedCall> leased = LeaseAll(q, kT0);
  ASSERT_FALSE(leased.empty());
  const CallId dead = leased[0].call.id;
  ASSERT_TRUE(q.Nack(leased[0].token, kT0, kT0, "gone").ok());  // one attempt: dead now
  const absl::Time now = kT0 + absl::Seconds(1);

  std::vector<CallId> all;
  CallId after;
  for (;;) {
    auto page = q.ListCalls(after, 7, {}, now);
    ASSERT_TRUE(page.ok()) << page.status();
    if (page->empty()) break;
    EXPECT_LE(page->size(), 7u);
    for (const QueuedCall& c : *page) all.push_back(c.call.id);
    after = page->back().call.id;
  }
  EXPECT_EQ(all, Sorted(Ids(calls)));

  auto of = [&](const DurableQueue::ListFilter& filter) {
    std::vector<QueuedCall> out = q.ListCalls(CallId(), 1000, filter, now).value();
    for (size_t i = 1; i < out.size(); ++i) EXPECT_LT(out[i - 1].call.id, out[i].call.id);
    return out;
  };
  std::vector<QueuedCall> other = of({.tenant = "other"});
  EXPECT_EQ(other.size(), 15u);
  for (const QueuedCall& c : other) EXPECT_EQ(c.call.tenant, "other");
  std::vector<QueuedCall> g_other = of({.tenant = "other", .function = "g"});
  EXPECT_EQ(g_other.size(), 5u);
  std::vector<QueuedCall> dead_ones = of({.state = QueuedCall::State::kDead});
  ASSERT_EQ(dead_ones.size(), 1u);
  EXPECT_EQ(dead_ones[0].call.id, dead);
  const size_t leased_now = of({.state = QueuedCall::State::kLeased}).size();
  EXPECT_EQ(leased_now, leased.size() - 1);
  EXPECT_EQ(of({.state = QueuedCall::State::kPending}).size(), 30 - leased.size());
  // `before` bounds the walk from above, alone, with a tenant, and with `after`.
  const std::vector<CallId> sorted = Sorted(Ids(calls));
  std::vector<QueuedCall> below = of({.before = sorted[15]});
  ASSERT_EQ(below.size(), 15u);
  EXPECT_EQ(below.front().call.id, sorted[0]);
  EXPECT_EQ(below.back().call.id, sorted[14]);
  size_t others_below = 0;
  for (const Call& c : calls) others_below += c.tenant == "other" && c.id < sorted[15];
  std::vector<QueuedCall> other_below = of({.tenant = "other", .before = sorted[15]});
  EXPECT_EQ(other_below.size(), others_below);
  for (const QueuedCall& c : other_below) {
    EXPECT_EQ(c.call.tenant, "other");
    EXPECT_LT(c.call.id, sorted[15]);
  }
  std::vector<QueuedCall> between =
      q.ListCalls(sorted[4], 1000, {.before = sorted[9]}, now).value();
  ASSERT_EQ(between.size(), 4u);
  EXPECT_EQ(between.front().call.id, sorted[5]);
  EXPECT_TRUE(of({.before = sorted[0]}).empty());
  // Past the lease, the leased calls are pending again.
  EXPECT_EQ(q.ListCalls(CallId(), 1000, {.state = QueuedCall::State::kPending},
                        kT0 + kLease + absl::Seconds(1))
                ->size(),
            29u);
  EXPECT_TRUE(absl::IsInvalidArgument(q.ListCalls(CallId(), 0, {}, now).status()));
}

TEST_P(DurableQueueConformanceTest, DeadLettersAreListedInIdOrderAndRedriven) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::vector<Call> calls;
  calls.reserve(7);
  for (int i = 0; i < 7; ++i) calls.push_back(maker.Make("f"));
  ASSERT_EQ(Enqueued(q, calls), 7u);
  std::vector<LeasedCall> got = LeaseAll(q, kT0);
  ASSERT_THAT(got, SizeIs(7));
  std::vector<Settlement> kill;
  kill.reserve(got.size());
  for (const LeasedCall& l : got) kill.push_back(Settlement::DeadLetter(l.token, "permanent"));
  auto r = q.Settle(kill, kT0 + absl::Seconds(1));
  ASSERT_TRUE(r.ok()) << r.status();
  for (const absl::Status& s : *r) EXPECT_TRUE(s.ok()) << s;

  // Paged listing, in id order.
  std::vector<CallId> listed;
  CallId after;
  while (true) {
    auto page = q.ListDeadLetters(after, 3);
    ASSERT_TRUE(page.ok()) << page.status();
    if (page->empty()) break;
    EXPECT_LE(page->size(), 3u);
    for (const DeadLetter& d : *page) {
      listed.push_back(d.call.id);
      EXPECT_EQ(d.reason, "permanent");
      EXPECT_EQ(d.at, kT0 + absl::Seconds(1));
    }
    after = page->back().call.id;
  }
  EXPECT_EQ(listed, Sorted(Ids(calls)));
  EXPECT_THAT(LeaseAll(q, kT0 + absl::Minutes(1)), IsEmpty());

  // Re-drive two, one of them twice, and one id that is not a dead letter.
  const absl::Time later = kT0 + absl::Hours(3);  // past the original deadlines
  std::vector<CallId> ids = {listed[0], listed[3], maker.Make("f").id};
  auto red = q.Redrive(ids, later);
  ASSERT_TRUE(red.ok()) << red.status();
  EXPECT_TRUE((*red)[0].ok());
  EXPECT_TRUE((*red)[1].ok());
  EXPECT_EQ((*red)[2].code(), absl::StatusCode::kNotFound);
  auto again = q.Redrive({&listed[0], 1}, later);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(AllDeadLetters(q), SizeIs(5));
  std::vector<LeasedCall> back = LeaseAll(q, later);
  ASSERT_THAT(back, SizeIs(2));
  for (const LeasedCall& l : back) {
    EXPECT_EQ(l.call.attempt, 0);
    EXPECT_EQ(l.call.deadline, later + absl::Hours(1)) << "the deadline window restarts";
    EXPECT_EQ(l.call.start_after, later) << "and starts now";
    EXPECT_TRUE(ValidateCall(l.call).ok()) << ValidateCall(l.call);
  }
}

TEST_P(DurableQueueConformanceTest, DepthsCountPendingDueAndLeasedPerFunction) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::vector<Call> calls = {maker.Make("a", kT0 - absl::Seconds(30)), maker.Make("a", kT0),
                             maker.Make("a", kT0 + absl::Minutes(1)),
                             maker.Make("b", kT0 - absl::Seconds(5))};
  ASSERT_EQ(Enqueued(q, calls), 4u);
  auto d = q.Depths(kT0);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_THAT(*d, SizeIs(2));
  EXPECT_EQ((*d)[0].function, "a");
  EXPECT_EQ((*d)[0].pending, 3u);
  EXPECT_EQ((*d)[0].due, 2u);
  EXPECT_EQ((*d)[0].leased, 0u);
  EXPECT_EQ((*d)[0].oldest_due, kT0 - absl::Seconds(30));
  EXPECT_EQ((*d)[0].oldest_due_age, absl::Seconds(30));
  EXPECT_EQ((*d)[1].function, "b");
  EXPECT_EQ((*d)[1].oldest_due_age, absl::Seconds(5));

  auto leased = q.Lease({.shard = q.ShardOf(calls[0].id),
                         .functions = {"a"},
                         .now = kT0,
                         .max = 1,
                         .lease_duration = kLease});
  ASSERT_TRUE(leased.ok());
  ASSERT_THAT(*leased, SizeIs(1));
  EXPECT_EQ((*leased)[0].call.id, calls[0].id);
  d = q.Depths(kT0);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)[0].pending, 2u);
  EXPECT_EQ((*d)[0].leased, 1u);
  EXPECT_EQ((*d)[0].oldest_due, kT0);
  // Once the lease expired, the call is due again, from the expiry.
  d = q.Depths(kT0 + kLease);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)[0].leased, 0u);
  EXPECT_EQ((*d)[0].pending, 3u);
  EXPECT_EQ((*d)[0].due, 2u);
  EXPECT_EQ((*d)[0].oldest_due, kT0);
  d = q.Depths(kT0 + kLease + absl::Seconds(1));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)[0].oldest_due, kT0);
  EXPECT_EQ((*d)[0].oldest_due_age, kLease + absl::Seconds(1));
}

TEST_P(DurableQueueConformanceTest, TenantDepthsCountPendingAndLeasedCallsPerTenant) {
  DurableQueue& q = queue();
  auto depths = q.TenantDepths(kT0);
  ASSERT_TRUE(depths.ok()) << depths.status();
  EXPECT_THAT(*depths, IsEmpty());
  CallMaker maker;
  std::vector<Call> calls;
  for (const char* tenant : {"b", "a", "b", "Z", "b"}) {
    Call c = maker.Make("f", calls.size() == 1 ? kT0 + absl::Hours(1) : kT0);  // a's: not due
    c.tenant = tenant;
    calls.push_back(std::move(c));
  }
  ASSERT_EQ(Enqueued(q, calls), 5u);
  depths = q.TenantDepths(kT0);
  ASSERT_TRUE(depths.ok()) << depths.status();
  // By bytes: "Z" before "a". Bytes are about the calls' encoded sizes.
  EXPECT_THAT(*depths, ElementsAre(Depth("Z", 1), Depth("a", 1), Depth("b", 3)));
  for (const TenantDepth& d : *depths) {
    uint64_t encoded = 0;
    for (const Call& c : calls) encoded += c.tenant == d.tenant ? EncodeCall(c).size() : 0;
    EXPECT_GE(d.bytes, encoded / 2) << d.tenant;
    EXPECT_LE(d.bytes, 2 * encoded + 128) << d.tenant;
  }

  // A leased call counts; an acknowledged one and a dead letter do not.
  std::vector<LeasedCall> leased = LeaseAll(q, kT0);
  ASSERT_THAT(leased, SizeIs(4));
  std::vector<Settlement> settle;
  for (const LeasedCall& l : leased) {
    if (l.call.id == calls[0].id) settle.push_back(Settlement::Ack(l.token));
    if (l.call.id == calls[3].id) settle.push_back(Settlement::DeadLetter(l.token, "test"));
  }
  ASSERT_THAT(settle, SizeIs(2));
  ASSERT_TRUE(q.Settle(settle, kT0).ok());
  depths = q.TenantDepths(kT0);
  ASSERT_TRUE(depths.ok()) << depths.status();
  EXPECT_THAT(*depths, ElementsAre(Depth("a", 1), Depth("b", 2)));

  // Big arguments count with their size (inline here: a queue does not spill).
  Call big = maker.Make("f", kT0 + absl::Hours(1));
  big.tenant = "a";
  big.args = Value::FromObject({{"text", Value::String(std::string(100'000, 'x'))}});
  ASSERT_EQ(Enqueued(q, {big}), 1u);
  depths = q.TenantDepths(kT0);
  ASSERT_TRUE(depths.ok()) << depths.status();
  ASSERT_THAT(*depths, ElementsAre(Depth("a", 2), Depth("b", 2)));
  EXPECT_GE((*depths)[0].bytes, 100'000u);
  EXPECT_LE((*depths)[0].bytes, 101'000u);
  EXPECT_LE((*depths)[1].bytes, 1'000u);
}

// RemoveDeadLetters deletes dead letters from before the time given only, for good: a pending,
// leased, unknown or younger call is left as it is, and a dead letter removed is gone from
// every view (and cannot be redriven).
TEST_P(DurableQueueConformanceTest, RemoveDeadLettersDeletesDeadLettersOnly) {
  DurableQueue& q = queue();
  CallMaker maker;
  std::vector<Call> calls = {maker.Make("f"), maker.Make("f"), maker.Make("f"),
                             maker.Make("f", kT0 + absl::Hours(1))};
  ASSERT_EQ(Enqueued(q, calls), 4u);
  std::vector<LeasedCall> leased = LeaseAll(q, kT0);
  ASSERT_THAT(leased, SizeIs(3));
  std::vector<Settlement> dead;
  for (const LeasedCall& l : leased) {
    if (l.call.id != calls[2].id) dead.push_back(Settlement::DeadLetter(l.token, "test"));
  }
  ASSERT_TRUE(q.Settle(dead, kT0).ok());  // calls 0 and 1 dead at kT0, 2 leased, 3 pending
  const CallId unknown = maker.Make("f").id;
  absl::StatusOr<std::vector<absl::Status>> young = q.RemoveDeadLetters({calls[0].id}, kT0);
  ASSERT_TRUE(young.ok()) << young.status();
  EXPECT_EQ((*young)[0].code(), absl::StatusCode::kFailedPrecondition) << "dead at kT0, not before";
  EXPECT_THAT(AllDeadLetters(q), SizeIs(2));
  absl::StatusOr<std::vector<absl::Status>> removed = q.RemoveDeadLetters(
      {calls[0].id, calls[2].id, calls[3].id, unknown}, kT0 + absl::Nanoseconds(1));
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_THAT(*removed, SizeIs(4));
  EXPECT_TRUE((*removed)[0].ok()) << (*removed)[0];
  EXPECT_EQ((*removed)[1].code(), absl::StatusCode::kFailedPrecondition) << (*removed)[1];
  EXPECT_EQ((*removed)[2].code(), absl::StatusCode::kFailedPrecondition) << (*removed)[2];
  EXPECT_EQ((*removed)[3].code(), absl::StatusCode::kNotFound) << (*removed)[3];
  auto find = q.Find(calls[0].id, kT0);
  ASSERT_TRUE(find.ok()) << find.status();
  EXPECT_FALSE(find->has_value());
  std::vector<DeadLetter> left = AllDeadLetters(q);
  ASSERT_THAT(left, SizeIs(1));
  EXPECT_EQ(left[0].call.id, calls[1].id);
  std::vector<absl::Status> redriven = *q.Redrive({calls[0].id}, kT0);
  EXPECT_EQ(redriven[0].code(), absl::StatusCode::kNotFound) << redriven[0];
  find = q.Find(calls[3].id, kT0);
  ASSERT_TRUE(find.ok() && find->has_value());
  EXPECT_EQ((*find)->state, QueuedCall::State::kPending);
  EXPECT_EQ(q.RemoveDeadLetters({calls[1].id, calls[1].id}, absl::InfiniteFuture()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(AllDeadLetters(q), SizeIs(1)) << "a refused batch removes nothing";
}

TEST_P(DurableQueueConformanceTest, EveryBadRequestIsInvalidArgumentAndChangesNothing) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, {maker.Make("f")}), 1u);
  auto expect_bad = [](const absl::Status& s, const char* what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(what));
  };
  expect_bad(q.Lease({.shard = -1, .now = kT0, .max = 1}).status(), "shard");
  expect_bad(q.Lease({.shard = q.shard_count(), .now = kT0, .max = 1}).status(), "shard");
  expect_bad(q.Lease({.shard = 0, .now = kT0, .max = 0}).status(), "max");
  expect_bad(q.Lease({.shard = 0, .now = kT0, .max = DurableQueue::kMaxLeaseBatch + 1}).status(),
             "max");
  expect_bad(
      q.Lease({.shard = 0, .now = kT0, .max = 1, .lease_duration = absl::ZeroDuration()}).status(),
      "lease_duration");
  expect_bad(
      q.Lease({.shard = 0, .now = kT0, .max = 1, .lease_duration = absl::Hours(25)}).status(),
      "lease_duration");
  expect_bad(q.Lease({.shard = 0, .functions = {"bad name"}, .now = kT0, .max = 1}).status(),
             "function name");
  expect_bad(q.Lease({.shard = 0, .now = absl::InfiniteFuture(), .max = 1}).status(), "now");

  std::vector<LeasedCall> got = LeaseAll(q, kT0);
  ASSERT_THAT(got, SizeIs(1));
  std::vector<Settlement> twice = {Settlement::Ack(got[0].token), Settlement::Ack(got[0].token)};
  expect_bad(q.Settle(twice, kT0).status(), "twice");
  Settlement inf = Settlement::Nack(got[0].token, absl::InfiniteFuture());
  expect_bad(q.Settle({&inf, 1}, kT0).status(), "retry_at");
  expect_bad(q.Extend({&got[0].token, 1}, kT0, absl::ZeroDuration()).status(), "lease_duration");
  expect_bad(q.ListDeadLetters(CallId(), 0).status(), "limit");
  std::vector<Call> too_many(DurableQueue::kMaxEnqueueBatch + 1);
  expect_bad(q.Enqueue(too_many).status(), "over the limit");
  // Nothing changed: the lease still holds and acks.
  EXPECT_TRUE(q.Ack(got[0].token, kT0).ok());
}

TEST_P(DurableQueueConformanceTest, ASettleBatchReportsEachLeaseOnItsOwn) {
  DurableQueue& q = queue();
  CallMaker maker;
  ASSERT_EQ(Enqueued(q, {maker.Make("f"), maker.Make("f"), maker.Make("f")}), 3u);
  std::vector<LeasedCall> got = LeaseAll(q, kT0);
  ASSERT_THAT(got, SizeIs(3));
  ASSERT_TRUE(q.Ack(got[1].token, kT0).ok());
  std::vector<Settlement> batch = {Settlement::Ack(got[0].token), Settlement::Ack(got[1].token),
                                   Settlement::Nack(got[2].token, kT0 + absl::Seconds(1))};
  auto r = q.Settle(batch, kT0);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(*r, SizeIs(3));
  EXPECT_TRUE((*r)[0].ok());
  EXPECT_EQ((*r)[1].code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE((*r)[2].ok());
  std::vector<LeasedCall> back = LeaseAll(q, kT0 + absl::Seconds(1));
  ASSERT_THAT(back, SizeIs(1));
  EXPECT_EQ(back[0].call.id, got[2].call.id);
}

// --- Durable adapters ---------------------------------------------------------

TEST_P(DurableQueueConformanceTest, ReopenKeepsCallsLeasesDeadLettersAndFreshTokens) {
  DurableQueue& q0 = queue();
  CallMaker maker;
  std::vector<Call> calls;
  calls.reserve(6);
  for (int i = 0; i < 6; ++i) calls.push_back(maker.Make(i % 2 == 0 ? "a" : "b"));
  ASSERT_EQ(Enqueued(q0, calls), 6u);
  std::vector<LeasedCall> leased = LeaseAll(q0, kT0, 3);
  ASSERT_THAT(leased, SizeIs(3));
  ASSERT_TRUE(q0.Ack(leased[0].token, kT0).ok());
  ASSERT_TRUE(q0.DeadLetterCall(leased[1].token, kT0, "bad").ok());
  // leased[2] stays leased across the restart.
  if (!Reopen()) GTEST_SKIP() << "the adapter is not durable (no reopen)";
  DurableQueue& q = queue();
  EXPECT_THAT(LeaseAll(q, kT0 + absl::Seconds(1)), SizeIs(3)) << "the three never leased";
  std::vector<DeadLetter> dead = AllDeadLetters(q);
  ASSERT_THAT(dead, SizeIs(1));
  EXPECT_EQ(dead[0].call.id, leased[1].call.id);
  EXPECT_EQ(dead[0].reason, "bad");
  // The lease survived: still exclusive, its token still works...
  EXPECT_TRUE(q.Extend({&leased[2].token, 1}, kT0 + absl::Seconds(2), kLease).ok());
  // ...and after expiry the call comes back with a token never used before.
  std::vector<LeasedCall> back = LeaseAll(q, kT0 + absl::Minutes(10));
  ASSERT_THAT(back, SizeIs(4));  // the expired one and the three from above
  std::set<std::pair<CallId, uint64_t>> tokens;
  for (const LeasedCall& l : leased) tokens.insert({l.token.id, l.token.token});
  for (const LeasedCall& l : back) {
    EXPECT_FALSE(tokens.count({l.token.id, l.token.token}))
        << "token " << l.token.token << " reused";
    if (l.call.id == leased[2].call.id) {
      EXPECT_EQ(l.call.attempt, 1);
    }
  }
  // Enqueue after a reopen still skips the ids it holds.
  EXPECT_EQ(Enqueued(q, calls), 1u) << "only the acked call is new again";
}

}  // namespace
}  // namespace txfn::testing
