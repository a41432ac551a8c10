// CallScheduler on a virtual clock with fake workers: ordering, reserved vs
// opportunistic quotas under a 4x spike, flow control under a 10x spike,
// outcomes (ack, retry, back-pressure, dead letter), AIMD slow start and
// against a fake downstream, spilled arguments, lease extension, locality groups, controller
// loss, and every bad input.
#include "txfn/call_scheduler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "queue_test_util.h"
#include "scheduler_test_util.h"
#include "txfn/blob_store.h"
#include "txfn/in_memory_queue.h"
#include "txfn/submitter.h"

namespace txfn {
namespace {

using queue_test::FakeWorker;
using queue_test::RunUntil;
using queue_test::SteppedClock;
using ::testing::HasSubstr;
using ::testing::SizeIs;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

class CallFactory {
 public:
  Call Make(std::string function, absl::Time start, absl::Duration window,
            QuotaClass quota = QuotaClass::kReserved, Criticality crit = Criticality::kNormal) {
    Call c;
    c.id = ids_.Next();
    c.tenant = "t";
    c.function = std::move(function);
    c.start_after = start;
    c.deadline = start + window;
    c.quota = quota;
    c.criticality = crit;
    c.retry.max_attempts = 100;
    c.retry.initial_backoff = absl::Seconds(1);
    c.retry.max_backoff = absl::Seconds(4);
    return c;
  }

 private:
  CallIdGenerator ids_{99};
};

std::shared_ptr<FakeWorker> OkWorker(const Clock* clock, absl::Duration d) {
  return std::make_shared<FakeWorker>(
      clock, [d](const Call&) { return d; }, [d](const Call&) { return CallOutcome::Ok(d); });
}

std::unique_ptr<CallScheduler> MakeScheduler(CallScheduler::Options o) {
  auto s = CallScheduler::Create(std::move(o));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

// `n` calls of function f due at kT0, dealt round-robin to tenants hog0 ..
// hog<tenants - 1>, or all to "hog".
std::vector<Call> HogBacklog(CallFactory& f, int n, int tenants = 0) {
  std::vector<Call> backlog;
  for (int i = 0; i < n; ++i) {
    backlog.push_back(f.Make("f", kT0, absl::Hours(24)));
    backlog.back().tenant = tenants == 0 ? "hog" : absl::StrCat("hog", i % tenants);
  }
  return backlog;
}

std::optional<absl::Time> StartedAt(const FakeWorker& worker, const CallId& id) {
  for (const auto& st : worker.started()) {
    if (st.call.id == id) return st.at;
  }
  return std::nullopt;
}

TEST(CallSchedulerTest, RunsCallsByCriticalityThenDeadlineAcrossFunctions) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::vector<Call> calls = {
      f.Make("a", kT0, absl::Hours(3), QuotaClass::kReserved, Criticality::kLow),
      f.Make("b", kT0, absl::Hours(1), QuotaClass::kReserved, Criticality::kLow),
      f.Make("a", kT0, absl::Hours(2), QuotaClass::kReserved, Criticality::kCritical),
      f.Make("b", kT0, absl::Hours(5), QuotaClass::kReserved, Criticality::kHigh),
      f.Make("c", kT0, absl::Hours(1), QuotaClass::kReserved, Criticality::kHigh),
      f.Make("a", kT0, absl::Minutes(30), QuotaClass::kReserved, Criticality::kNormal),
  };
  ASSERT_TRUE(queue.Enqueue(calls).ok());
  auto worker = OkWorker(&clock, absl::Seconds(1));
  auto s = MakeScheduler({.queue = &queue, .clock = &clock});
  ASSERT_TRUE(s->AddWorker("w", worker, 1).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(20), absl::Milliseconds(100));
  std::vector<CallId> order;
  for (const auto& st : worker->started()) order.push_back(st.call.id);
  EXPECT_EQ(order, (std::vector<CallId>{calls[2].id, calls[4].id, calls[3].id, calls[5].id,
                                        calls[1].id, calls[0].id}));
  EXPECT_EQ(s->stats().acked, 6u);
  EXPECT_EQ(queue.size(), 0u);
}

// A worker whose calls take 10 s, for the ordering tests below: one slot,
// taken first by `busy` so that later calls wait in the scheduler.
std::shared_ptr<FakeWorker> TenSecondWorker(const Clock* clock) {
  return OkWorker(clock, absl::Seconds(10));
}
std::vector<CallId> StartOrder(const FakeWorker& worker) {
  std::vector<CallId> order;
  for (const auto& st : worker.started()) order.push_back(st.call.id);
  return order;
}

// Opportunistic calls are admitted onto idle slots only, so the order in
// which the buffers' heads move decides which calls take the free slots:
// criticality, then deadline, across functions, and a buffer's next call
// competes with the other buffers' heads in the same move (a's 90-minute
// call takes the third slot, not b's 2-hour one).
TEST(CallSchedulerTest, BuffersMoveTheirCallsInOneOrderAcrossFunctions) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  auto opportunistic = [&](std::string function, absl::Duration window,
                           Criticality crit = Criticality::kNormal) {
    return f.Make(std::move(function), kT0, window, QuotaClass::kOpportunistic, crit);
  };
  std::vector<Call> calls = {
      opportunistic("a", absl::Hours(5)),
      opportunistic("b", absl::Hours(4)),
      opportunistic("a", absl::Hours(1)),
      opportunistic("c", absl::Hours(6), Criticality::kCritical),
      opportunistic("b", absl::Hours(2)),
      opportunistic("a", absl::Hours(3)),
      opportunistic("a", absl::Minutes(90)),
      opportunistic("c", absl::Hours(7), Criticality::kLow),
  };
  ASSERT_TRUE(queue.Enqueue(calls).ok());
  auto worker = OkWorker(&clock, absl::Seconds(1));
  auto s = MakeScheduler({.queue = &queue, .clock = &clock});
  ASSERT_TRUE(s->AddWorker("w", worker, 3).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Milliseconds(500), absl::Milliseconds(100));
  EXPECT_EQ(StartOrder(*worker), (std::vector<CallId>{calls[3].id, calls[2].id, calls[6].id}))
      << "the first three slots";
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(30), absl::Milliseconds(100));
  EXPECT_EQ(StartOrder(*worker),
            (std::vector<CallId>{calls[3].id, calls[2].id, calls[6].id, calls[4].id, calls[5].id,
                                 calls[1].id, calls[0].id, calls[7].id}));
  EXPECT_EQ(s->stats().acked, calls.size());
}

// The RunQ is ordered too (criticality, then deadline), not first come first
// served: a call admitted later with an earlier deadline takes the next
// free slot.
TEST(CallSchedulerTest, TheRunQueueDispatchesTheEarliestDeadlineFirstNotTheFirstAdmitted) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  const Call busy = f.Make("a", kT0, absl::Hours(1));
  const Call late = f.Make("a", kT0, absl::Hours(2));
  const Call urgent = f.Make("b", kT0 + absl::Seconds(2), absl::Minutes(1));
  ASSERT_TRUE(queue.Enqueue({busy, late}).ok());
  auto worker = TenSecondWorker(&clock);
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .poll_interval = absl::Seconds(1)});
  ASSERT_TRUE(s->AddWorker("w", worker, 1).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(1), absl::Milliseconds(100));
  EXPECT_EQ(s->stats().run_queue, 1u) << "`late` waits in the RunQ for the busy slot";
  ASSERT_TRUE(queue.Enqueue({urgent}).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(5), absl::Milliseconds(100));
  EXPECT_EQ(s->stats().run_queue, 2u) << "`urgent` joined it, admitted second";
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(35), absl::Milliseconds(100));
  EXPECT_EQ(StartOrder(*worker), (std::vector<CallId>{busy.id, urgent.id, late.id}));
}

// A call admitted to the RunQ whose deadline passes while it waits for a slot
// is dead-lettered, not started late; a call still in time runs.
TEST(CallSchedulerTest, ACallWhoseDeadlinePassesInTheRunQueueIsDeadLetteredNotStartedLate) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  const Call busy = f.Make("a", kT0, absl::Hours(1), QuotaClass::kReserved, Criticality::kHigh);
  const Call soon = f.Make("b", kT0, absl::Seconds(5));
  const Call later = f.Make("c", kT0, absl::Minutes(1));
  ASSERT_TRUE(queue.Enqueue({busy, soon, later}).ok());
  auto worker = TenSecondWorker(&clock);
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .poll_interval = absl::Seconds(1)});
  ASSERT_TRUE(s->AddWorker("w", worker, 1).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(1), absl::Milliseconds(100));
  EXPECT_EQ(s->stats().run_queue, 2u) << "`soon` and `later` wait in the RunQ for the busy slot";
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(40), absl::Milliseconds(100));
  EXPECT_EQ(StartOrder(*worker), (std::vector<CallId>{busy.id, later.id}));
  EXPECT_EQ(s->stats().dead_lettered, 1u);
  EXPECT_EQ(s->stats().run_queue, 0u);
  absl::StatusOr<std::optional<QueuedCall>> dead = queue.Find(soon.id, clock.Now());
  ASSERT_TRUE(dead.ok()) << dead.status();
  ASSERT_TRUE(dead->has_value());
  EXPECT_EQ((*dead)->state, QueuedCall::State::kDead);
  EXPECT_THAT((*dead)->reason, HasSubstr("run queue"));
}

// Opportunistic calls run on idle capacity: while every slot is taken they
// stay in their buffer, so a reserved call (here with a later deadline)
// that waits in the RunQ for the slot is not overtaken by them.
TEST(CallSchedulerTest, OpportunisticCallsAreNotAdmittedWhileEverySlotIsTaken) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  const Call busy = f.Make("r", kT0, absl::Hours(1));
  const Call opportunistic = f.Make("o", kT0, absl::Minutes(30), QuotaClass::kOpportunistic);
  const Call reserved = f.Make("r", kT0, absl::Hours(1));
  ASSERT_TRUE(queue.Enqueue({busy}).ok());
  auto worker = TenSecondWorker(&clock);
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .poll_interval = absl::Seconds(1)});
  ASSERT_TRUE(s->AddWorker("w", worker, 1).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(1), absl::Milliseconds(100));
  ASSERT_TRUE(queue.Enqueue({opportunistic, reserved}).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(5), absl::Milliseconds(100));
  const SchedulerStats st = s->stats();
  EXPECT_EQ(st.run_queue, 1u) << "only the reserved call is admitted to the busy slot";
  EXPECT_EQ(st.buffered, 1u) << "the opportunistic call waits in its buffer";
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(35), absl::Milliseconds(100));
  EXPECT_EQ(StartOrder(*worker), (std::vector<CallId>{busy.id, reserved.id, opportunistic.id}));
}

// Reserved calls are leased on their own and first: neither a backlog of
// opportunistic calls that became due earlier nor buffers full of them
// keeps a new reserved call in the queue.
TEST(CallSchedulerTest, ReservedCallsAreLeasedPastAnEarlierOpportunisticBacklog) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::vector<Call> backlog;
  for (int i = 0; i < 20; ++i) {
    backlog.push_back(
        f.Make("o", kT0 - absl::Hours(1), absl::Hours(20), QuotaClass::kOpportunistic));
  }
  ASSERT_TRUE(queue.Enqueue(backlog).ok());
  const Call reserved = f.Make("r", kT0, absl::Seconds(30));
  ASSERT_TRUE(queue.Enqueue({reserved}).ok());
  SchedulerConfig config{.version = 1};
  config.functions["o"] = {.opportunistic_rate = 0};  // only near their deadline
  auto worker = TenSecondWorker(&clock);
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .lease_batch = 4,
                          .max_buffered = 4,
                          .max_buffered_per_function = 4,
                          .config = config});
  ASSERT_TRUE(s->AddWorker("w", worker, 1).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(1), absl::Milliseconds(100));
  ASSERT_THAT(worker->started(), SizeIs(1));
  EXPECT_EQ(worker->started()[0].call.id, reserved.id);
  EXPECT_EQ(worker->started()[0].at, kT0 + absl::Milliseconds(100)) << "on the first tick";
}

// The paper's time-shifting: a 4x spike of reserved and opportunistic calls
// on a fleet that cannot run both. Reserved calls start within seconds;
// opportunistic calls wait for the spike to pass and still finish before
// their deadlines.
TEST(CallSchedulerTest, ReservedCallsStartPromptlyUnderA4xSpikeWhileOpportunisticOnesWait) {
  VirtualClock clock(kT0);
  InMemoryQueue queue({.shards = 2});
  CallFactory f;
  SchedulerConfig config{.version = 1};
  config.functions["res"] = {.reserved_cpu_quota = 9, .initial_cost = absl::Seconds(1)};
  config.functions["opp"] = {.opportunistic_rate = 10, .initial_cost = absl::Seconds(1)};
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .max_buffered = 400,
                          .run_queue_target = 20,
                          .config = config});
  std::vector<std::shared_ptr<FakeWorker>> workers;
  for (int i = 0; i < 10; ++i) {
    workers.push_back(OkWorker(&clock, absl::Seconds(1)));
    ASSERT_TRUE(s->AddWorker("w" + std::to_string(i), workers.back(), 1).ok());
  }
  const absl::Duration kReservedWindow = absl::Seconds(30);
  const absl::Duration kOpportunisticWindow = absl::Hours(2);
  const absl::Time peak_start = kT0 + absl::Minutes(6);
  const absl::Time peak_end = kT0 + absl::Minutes(12);
  int received_opp_peak = 0;
  int sent_each = 0;
  int64_t second = 0;
  auto each_step = [&] {
    const absl::Time now = clock.Now();
    if (now < kT0 + absl::Seconds(second + 1)) return;
    ++second;
    // Once a second: this second's arrivals and a utilization sample.
    if (now < kT0 + absl::Minutes(20)) {
      const bool peak = now >= peak_start && now < peak_end;
      const int n = peak ? 8 : 2;  // 4x
      std::vector<Call> batch;
      for (int i = 0; i < n; ++i) {
        batch.push_back(f.Make("res", now, kReservedWindow));
        batch.push_back(f.Make("opp", now, kOpportunisticWindow, QuotaClass::kOpportunistic));
      }
      if (peak) received_opp_peak += n;
      sent_each += n;
      ASSERT_TRUE(queue.Enqueue(batch).ok());
    }
    size_t busy = 0;
    for (const auto& w : workers) busy += w->running();
    s->ReportUtilization(static_cast<double>(busy) / workers.size());
  };
  RunUntil(clock, *s, workers, kT0 + absl::Minutes(40), absl::Milliseconds(200), each_step);

  absl::Duration worst_reserved_wait;
  int opp_started_in_peak = 0, reserved = 0, opportunistic = 0, late = 0;
  for (const auto& w : workers) {
    for (const auto& st : w->started()) {
      const absl::Duration wait = st.at - st.call.start_after;
      if (st.call.quota == QuotaClass::kReserved) {
        ++reserved;
        worst_reserved_wait = std::max(worst_reserved_wait, wait);
      } else {
        ++opportunistic;
        if (st.at >= peak_start && st.at < peak_end) ++opp_started_in_peak;
      }
      if (st.at + absl::Seconds(1) > st.call.deadline) ++late;
    }
  }
  EXPECT_EQ(reserved, sent_each);
  EXPECT_EQ(opportunistic, sent_each) << "every opportunistic call ran by the end";
  EXPECT_EQ(late, 0) << "no call finished after its deadline";
  EXPECT_LT(worst_reserved_wait, absl::Seconds(10)) << "reserved calls start within seconds";
  EXPECT_LT(opp_started_in_peak, received_opp_peak / 2) << "opportunistic work was time-shifted";
  EXPECT_EQ(s->stats().dead_lettered, 0u);
  EXPECT_EQ(queue.size(), 0u);
}

// A 10x spike: the scheduler's buffers and RunQ stay within their bounds and
// the backlog waits in the durable queue; everything runs in the end.
TEST(CallSchedulerTest, RunQueueAndMemoryStayBoundedUnderA10xSpike) {
  VirtualClock clock(kT0);
  auto counting = std::make_unique<queue_test::CountingQueue>(std::make_unique<InMemoryQueue>());
  queue_test::CountingQueue& queue = *counting;
  CallFactory f;
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .lease_batch = 16,
                          .max_buffered = 48,
                          .run_queue_target = 8});
  std::vector<std::shared_ptr<FakeWorker>> workers;
  for (int i = 0; i < 4; ++i) {
    workers.push_back(OkWorker(&clock, absl::Seconds(1)));
    ASSERT_TRUE(s->AddWorker("w" + std::to_string(i), workers.back(), 1).ok());
  }
  size_t max_held = 0;
  size_t backlog_at_peak = 0;
  int64_t second = 0;
  auto each_step = [&] {
    const SchedulerStats st = s->stats();
    max_held = std::max(max_held, st.buffered + st.run_queue + st.in_flight);
    const absl::Time now = clock.Now();
    if (now < kT0 + absl::Seconds(second + 1)) return;
    ++second;
    if (second <= 30) {  // 40 calls/s against a capacity of 4/s
      std::vector<Call> batch;
      for (int i = 0; i < 40; ++i)
        batch.push_back(f.Make("f" + std::to_string(i % 7), now, absl::Hours(1)));
      ASSERT_TRUE(queue.Enqueue(batch).ok());
    }
    if (second == 30) {
      auto d = queue.Depths(now);
      ASSERT_TRUE(d.ok());
      for (const FunctionDepth& fd : *d) backlog_at_peak += fd.pending;
    }
  };
  RunUntil(clock, *s, workers, kT0 + absl::Seconds(330), absl::Milliseconds(100), each_step);
  const SchedulerStats st = s->stats();
  EXPECT_LE(st.max_buffered, 48u);
  EXPECT_LE(st.max_run_queue, 8u);
  EXPECT_LE(max_held, 48u + 8u + 4u) << "memory bounded by the buffers, the RunQ and the slots";
  EXPECT_GT(backlog_at_peak, 900u) << "the spike waited in the durable queue";
  EXPECT_GT(st.polls_skipped, 0u) << "flow control slowed the polling";
  EXPECT_EQ(st.acked, 1200u);
  EXPECT_EQ(queue.inner().Depths(clock.Now())->size(), 0u);
}

TEST(CallSchedulerTest, OutcomesAckRetryWithBackoffAndDeadLetter) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::map<CallId, int> runs;
  auto worker = std::make_shared<FakeWorker>(
      &clock, [](const Call&) { return absl::Milliseconds(10); },
      [&](const Call& c) {
        const int n = runs[c.id]++;
        if (c.function == "flaky") {
          return n < 2 ? CallOutcome::Retryable(absl::UnavailableError("try again"))
                       : CallOutcome::Ok();
        }
        if (c.function == "broken") return CallOutcome::Permanent(absl::InternalError("bug"));
        if (c.function == "hopeless") return CallOutcome::Retryable(absl::AbortedError("no"));
        return CallOutcome::Ok();
      });
  Call flaky = f.Make("flaky", kT0, absl::Hours(1));
  Call broken = f.Make("broken", kT0, absl::Hours(1));
  Call hopeless = f.Make("hopeless", kT0, absl::Hours(1));
  hopeless.retry.max_attempts = 3;
  Call tight = f.Make("hopeless", kT0, absl::Seconds(1));  // its retry would be past the deadline
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{flaky, broken, hopeless, tight}).ok());
  auto s = MakeScheduler({.queue = &queue, .clock = &clock});
  ASSERT_TRUE(s->AddWorker("w", worker, 4).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(30), absl::Milliseconds(50));

  EXPECT_EQ(runs[flaky.id], 3);
  std::vector<absl::Time> flaky_starts;
  for (const auto& st : worker->started()) {
    if (st.call.id == flaky.id) flaky_starts.push_back(st.at);
  }
  ASSERT_THAT(flaky_starts, SizeIs(3));
  EXPECT_GE(flaky_starts[1] - flaky_starts[0], absl::Seconds(1)) << "backoff 1 s";
  EXPECT_GE(flaky_starts[2] - flaky_starts[1], absl::Seconds(2)) << "backoff 2 s";
  EXPECT_EQ(runs[broken.id], 1);
  EXPECT_EQ(runs[hopeless.id], 3);
  EXPECT_EQ(runs[tight.id], 1);
  auto dead = queue.ListDeadLetters(CallId(), 10);
  ASSERT_TRUE(dead.ok());
  ASSERT_THAT(*dead, SizeIs(3));
  std::map<CallId, std::string> reasons;
  for (const DeadLetter& d : *dead) reasons[d.call.id] = d.reason;
  EXPECT_THAT(reasons[broken.id], HasSubstr("permanent error: bug"));
  EXPECT_THAT(reasons[hopeless.id], HasSubstr("attempts exhausted"));
  EXPECT_THAT(reasons[tight.id], HasSubstr("after the deadline"));
  EXPECT_EQ(s->stats().acked, 1u);
  EXPECT_EQ(s->stats().dead_lettered, 3u) << "the last failed attempt is counted too";
}

// max_running_per_tenant: a tenant with a backlog runs at most that many
// calls at once, another tenant's call runs past it at once, and nothing is
// released to the queue or counted as an attempt meanwhile; Busy gives a
// call back without using an attempt.
TEST(CallSchedulerTest, ATenantAtItsLimitWaitsInItsBufferWhileOthersRun) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::map<CallId, int> busy_once;
  auto worker = std::make_shared<FakeWorker>(
      &clock, [](const Call& c) { return c.tenant == "t" ? absl::Seconds(10) : absl::Seconds(5); },
      [&](const Call& c) {
        if (c.function == "shy" && busy_once[c.id]++ == 0) {
          return CallOutcome::Busy(absl::ResourceExhaustedError("full"), absl::Seconds(2));
        }
        return CallOutcome::Ok();
      });
  std::vector<Call> big;
  for (int i = 0; i < 20; ++i) big.push_back(f.Make("f", kT0, absl::Hours(1)));
  ASSERT_TRUE(queue.Enqueue(big).ok());
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .key_functions_by_tenant = true,
                          .max_running_per_tenant = 2});
  ASSERT_TRUE(s->AddWorker("w", worker, 8).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Milliseconds(500), absl::Milliseconds(50));
  EXPECT_EQ(worker->running(), 2u) << "tenant t holds two slots of eight";
  Call small = f.Make("f", clock.Now(), absl::Hours(1));
  small.tenant = "other";
  Call shy = f.Make("shy", clock.Now(), absl::Hours(1));
  shy.tenant = "third";
  shy.retry.max_attempts = 1;  // a Busy that counted would dead-letter it
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{small, shy}).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(3), absl::Milliseconds(50));
  EXPECT_EQ(worker->running(), 4u) << "the other tenants run past t's backlog";
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(200), absl::Milliseconds(50));
  EXPECT_EQ(worker->max_running(), 4u);
  EXPECT_EQ(s->stats().acked, 22u);
  EXPECT_EQ(busy_once[shy.id], 2);
  // t's buffer kept 16 x 2 of its 20 calls; only the Busy call went back.
  EXPECT_EQ(s->stats().released, 1u);
  EXPECT_TRUE(queue.ListDeadLetters(CallId(), 10)->empty());
}

// A tenant at its limit with a backlog of 4,000 due calls: another tenant's
// newer call starts at once (it used to wait until the backlog had run, 200 s:
// the backlog filled the buffers and so stopped the polls; then until it had
// been leased once, 1.5 s), the tenant's buffers keep kTenantBufferFactor
// times its limit, the rest waits in the queue, never leased and handed back,
// and a call submitted later starts at once too.
TEST(CallSchedulerTest, ATenantsBacklogDoesNotHoldBackAnotherTenantsNewerCalls) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  // (Each poll that skips the hog steps over its due calls in the queue: in a
  // sanitizer build 20,000 of them made this test take minutes.)
  ASSERT_TRUE(queue.Enqueue(HogBacklog(f, 4'000)).ok());
  auto victim_call = [&] {
    Call c = f.Make("f", clock.Now() + absl::Milliseconds(1), absl::Hours(24));
    c.tenant = "victim";
    return c;
  };
  const Call first = victim_call();
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{first}).ok());
  auto worker = OkWorker(&clock, absl::Milliseconds(10));  // 100 calls/s a slot
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .release_delay = absl::Seconds(10),
                          .max_release_delay = absl::Minutes(5),
                          .key_functions_by_tenant = true,
                          .max_running_per_tenant = 1});
  ASSERT_TRUE(s->AddWorker("w", worker, 4).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(30), absl::Milliseconds(10));
  ASSERT_TRUE(StartedAt(*worker, first.id).has_value()) << "the victim's call never started";
  EXPECT_LT(*StartedAt(*worker, first.id) - kT0, absl::Milliseconds(50));
  EXPECT_LE(s->stats().buffered, static_cast<size_t>(CallScheduler::kTenantBufferFactor));
  EXPECT_EQ(worker->max_running(), 2u) << "one slot for each tenant";
  // Later, with the backlog still due in the queue: at once again.
  const Call later = victim_call();
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{later}).ok());
  const absl::Time submitted = clock.Now();
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(90), absl::Milliseconds(10));
  ASSERT_TRUE(StartedAt(*worker, later.id).has_value()) << "the victim's later call never started";
  EXPECT_LT(*StartedAt(*worker, later.id) - submitted, absl::Seconds(1));
  const SchedulerStats st = s->stats();
  EXPECT_EQ(st.acked, 4'002u) << "the hog ran at its limit, 100 calls a second";
  // Leased only as it runs: what ran, and what its buffers hold.
  EXPECT_EQ(st.released, 0u);
  EXPECT_LE(st.leased, st.acked + st.buffered + st.in_flight);
  EXPECT_TRUE(queue.ListDeadLetters(CallId(), 10)->empty());
}

// Four tenants with backlogs on four slots (each at its limit of two, more
// than fit at once): the slots stay busy, another tenant's call starts at
// once, and the backlogs are leased only as they run (none handed back).
TEST(CallSchedulerTest, SeveralTenantsBacklogsComeBackNoFasterThanTheWorkersRunThem) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  ASSERT_TRUE(queue.Enqueue(HogBacklog(f, 4'000, /*tenants=*/4)).ok());
  Call victim = f.Make("f", kT0 + absl::Seconds(5), absl::Hours(24));
  victim.tenant = "victim";
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{victim}).ok());
  auto worker = OkWorker(&clock, absl::Milliseconds(10));
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .release_delay = absl::Seconds(10),
                          .max_release_delay = absl::Minutes(5),
                          .key_functions_by_tenant = true,
                          .max_running_per_tenant = 2});
  ASSERT_TRUE(s->AddWorker("w", worker, 4).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(90), absl::Milliseconds(10));
  const std::optional<absl::Time> started = StartedAt(*worker, victim.id);
  ASSERT_TRUE(started.has_value()) << "the victim's call never started";
  EXPECT_LT(*started - victim.start_after, absl::Seconds(1));
  const SchedulerStats st = s->stats();
  EXPECT_EQ(st.acked, 4'001u) << "the backlogs ran";
  EXPECT_EQ(st.released, 0u);
  EXPECT_LE(st.leased, st.acked + st.buffered + st.in_flight);
}

// A lone tenant's backlog at its limit (two of four slots) runs at its limit
// from the first call to the last: its two slots never wait for calls parked
// in the queue. (The backlog used to be released back paced at a measured
// rate, and a low measurement left the slots idle: a history checker saw 10,000
// calls drain in 2 min where 10 s would do.)
TEST(CallSchedulerTest, ALoneTenantsBacklogRunsAtItsLimitThroughout) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  ASSERT_TRUE(queue.Enqueue(HogBacklog(f, 2'000)).ok());
  auto worker = OkWorker(&clock, absl::Milliseconds(10));
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .key_functions_by_tenant = true,
                          .max_running_per_tenant = 2});
  ASSERT_TRUE(s->AddWorker("w", worker, 4).ok());
  // 2,000 calls of 10 ms two at a time: 10 s; RunUntil steps 1 ms.
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(11), absl::Milliseconds(1));
  const SchedulerStats st = s->stats();
  EXPECT_EQ(st.acked, 2'000u);
  EXPECT_EQ(st.released, 0u);
  EXPECT_EQ(st.leased, 2'000u) << "each call leased once";
  EXPECT_EQ(worker->max_running(), 2u);
  EXPECT_LE(s->stats().max_buffered, static_cast<size_t>(2 * CallScheduler::kTenantBufferFactor));
}

// An idle scheduler's polls back off to max_poll_interval; PollSoon, which a
// host calls when it has just enqueued calls that are due, makes the next
// Tick poll at once.
TEST(CallSchedulerTest, PollSoonMakesTheNextTickPollAnIdleQueue) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  auto worker = OkWorker(&clock, absl::Milliseconds(10));
  auto s = MakeScheduler({.queue = &queue, .clock = &clock});
  ASSERT_TRUE(s->AddWorker("w", worker, 1).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(10), absl::Milliseconds(5));
  const uint64_t idle_polls = s->stats().polls;
  const Call first = f.Make("f", clock.Now(), absl::Hours(1));
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{first}).ok());
  clock.Advance(absl::Milliseconds(5));
  s->Tick();
  EXPECT_EQ(worker->started().size(), 0u) << "backed off: the next poll is up to 1 s away";
  const Call second = f.Make("f", clock.Now(), absl::Hours(1));
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{second}).ok());
  s->PollSoon();
  clock.Advance(absl::Milliseconds(5));
  s->Tick();
  EXPECT_EQ(worker->started().size(), 1u) << "polled at once";
  EXPECT_EQ(s->stats().polls, idle_polls + 1);
}

// The clock set back an hour: the scheduler polls again within its poll interval (it waited
// for the clock to come back to where it had been, so due calls waited the hour, and those
// with shorter deadlines were dead-lettered unrun).
TEST(CallSchedulerTest, AClockSetBackDoesNotStopThePolls) {
  SteppedClock clock(kT0 + absl::Hours(1));
  InMemoryQueue queue;
  CallFactory f;
  auto worker = OkWorker(&clock, absl::Seconds(1));
  auto s = MakeScheduler({.queue = &queue, .clock = &clock});
  ASSERT_TRUE(s->AddWorker("w", worker, 2).ok());
  auto run = [&](absl::Time until) {
    while (clock.Now() < until) {
      clock.Set(clock.Now() + absl::Milliseconds(50));
      worker->CompleteDue();
      s->Tick();
    }
  };
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{f.Make("f", clock.Now(), absl::Hours(2))}).ok());
  run(kT0 + absl::Hours(1) + absl::Seconds(10));  // idle after it: polls back off
  ASSERT_EQ(worker->started().size(), 1u);

  clock.Set(kT0);
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{f.Make("f", kT0, absl::Seconds(30))}).ok());
  run(kT0 + absl::Seconds(5));
  EXPECT_EQ(worker->started().size(), 2u) << "the call due at once waited for the clock";
}

// Function names a host takes from tenants may each be used once: with
// forget_idle_functions their states go once idle, while a configured
// function and one with a call still held stay.
TEST(CallSchedulerTest, IdleFunctionsAreForgotten) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::vector<Call> once;
  for (int i = 0; i < 100; ++i)
    once.push_back(f.Make(absl::StrCat("once", i), kT0, absl::Hours(1)));
  once.push_back(f.Make("configured", kT0, absl::Hours(1)));
  once.push_back(f.Make("slow", kT0, absl::Hours(1)));
  ASSERT_TRUE(queue.Enqueue(once).ok());
  auto worker = std::make_shared<FakeWorker>(
      &clock,
      [](const Call& c) { return c.function == "slow" ? absl::Minutes(30) : absl::Seconds(1); },
      [](const Call&) { return CallOutcome::Ok(); });
  SchedulerConfig config;
  config.functions["configured"] = FunctionConfig{};
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .lease_duration = absl::Hours(1),
                          .config = config,
                          .forget_idle_functions = absl::Minutes(10)});
  ASSERT_TRUE(s->AddWorker("w", worker, 200).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Minutes(5), absl::Seconds(1));
  EXPECT_EQ(s->stats().acked, 101u);
  EXPECT_EQ(s->stats().functions, 102u) << "idle for less than 10 minutes";
  RunUntil(clock, *s, {worker}, kT0 + absl::Minutes(20), absl::Seconds(1));
  EXPECT_EQ(s->stats().functions, 2u) << "the configured one and the one still running";
  // A forgotten function's calls still run, with a new state.
  ASSERT_TRUE(queue.Enqueue(std::vector<Call>{f.Make("once0", clock.Now(), absl::Hours(1))}).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Minutes(21), absl::Seconds(1));
  EXPECT_EQ(s->stats().acked, 102u);
  EXPECT_EQ(s->stats().functions, 3u);
  EXPECT_FALSE(CallScheduler::Create(
                   {.queue = &queue, .clock = &clock, .forget_idle_functions = absl::Seconds(-1)})
                   .ok());
}

// A downstream with a fixed capacity answers every call above it in a second
// with back-pressure; its AIMD limiter settles the function's rate near the
// capacity, collapses during an outage and recovers after it.
TEST(CallSchedulerTest, AimdSettlesNearADownstreamsCapacityAndRecoversAfterAnOutage) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  constexpr int kCapacity = 10;  // calls per second
  const absl::Time outage_start = kT0 + absl::Minutes(5);
  const absl::Time outage_end = kT0 + absl::Minutes(6);
  std::map<int64_t, int> served;  // second -> calls the downstream served
  auto worker = std::make_shared<FakeWorker>(
      &clock, [](const Call&) { return absl::Milliseconds(100); },
      [&](const Call&) {
        const absl::Time now = clock.Now();
        const int64_t sec = absl::ToInt64Seconds(now - kT0);
        if ((now >= outage_start && now < outage_end) || served[sec] >= kCapacity) {
          return CallOutcome::BackPressure("db", absl::ResourceExhaustedError("overloaded"));
        }
        ++served[sec];
        return CallOutcome::Ok();
      });
  SchedulerConfig config{.version = 1};
  config.functions["f"] = {.downstreams = {"db"}};
  config.downstreams["db"] = {.window = absl::Seconds(5),
                              .slow_start_calls = 10,
                              .additive_increase = 5,
                              .multiplicative_decrease = 0.7};
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .config = config});
  ASSERT_TRUE(s->AddWorker("w", worker, 100).ok());
  int64_t second = 0;
  auto each_step = [&] {
    const absl::Time now = clock.Now();
    if (now < kT0 + absl::Seconds(second + 1)) return;
    ++second;
    // Demand stays at 3x the capacity: the queue is topped up to 3 seconds'
    // worth (a backlog growing without end would only slow the test down).
    std::vector<Call> batch;
    for (size_t held = queue.size(); held < 3 * kCapacity; ++held) {
      batch.push_back(f.Make("f", now, absl::Hours(1)));
    }
    if (batch.empty()) return;
    ASSERT_TRUE(queue.Enqueue(batch).ok());
  };
  auto mean_served = [&](int from_s, int to_s) {
    double sum = 0;
    for (int i = from_s; i < to_s; ++i) sum += served[i];
    return sum / (to_s - from_s);
  };
  RunUntil(clock, *s, {worker}, kT0 + absl::Minutes(5), absl::Milliseconds(100), each_step);
  const double steady = mean_served(120, 300);
  EXPECT_GT(steady, 0.6 * kCapacity);
  ASSERT_TRUE(s->DownstreamRate("db").has_value());
  EXPECT_LT(*s->DownstreamRate("db"), 1.6 * kCapacity) << "the limit stays near the capacity";
  RunUntil(clock, *s, {worker}, outage_end, absl::Milliseconds(100), each_step);
  EXPECT_LT(*s->DownstreamRate("db"), 0.3 * kCapacity) << "the outage collapsed the limit";
  RunUntil(clock, *s, {worker}, kT0 + absl::Minutes(10), absl::Milliseconds(100), each_step);
  EXPECT_GT(mean_served(480, 600), 0.6 * kCapacity) << "recovered after the outage";
  EXPECT_GT(s->stats().back_pressure, 0u);
}

// A downstream fixed at one call a second (no slow start, no increase).
SchedulerConfig OneCallASecondDownstream(const std::vector<std::string>& callers) {
  SchedulerConfig config{.version = 1};
  for (const std::string& f : callers) config.functions[f] = {.downstreams = {"db"}};
  config.downstreams["db"] = {.window = absl::Minutes(1),
                              .slow_start_calls = 60,
                              .additive_increase = 0,
                              .max_calls_per_window = 60};
  return config;
}

// Ten functions share a downstream that runs one call a second, with a
// backlog of minutes each. Their blocked buffers keep only their share of
// what the downstream admits, so they never fill max_buffered: the polls go
// on, and another function's calls start at once. (Each keeping
// max_buffered_per_function filled the buffers and stopped the polls: the
// other function's calls waited in the queue behind the backlog.)
TEST(CallSchedulerTest, AThrottledDownstreamsCallersDoNotHoldBackOtherFunctions) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::vector<std::string> callers;
  std::vector<Call> backlog;
  for (int i = 0; i < 10; ++i) {
    callers.push_back(absl::StrCat("caller", i));
    for (int k = 0; k < 100; ++k) backlog.push_back(f.Make(callers.back(), kT0, absl::Hours(2)));
  }
  ASSERT_TRUE(queue.Enqueue(backlog).ok());
  auto worker = OkWorker(&clock, absl::Milliseconds(100));
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .lease_batch = 16,
                          .max_buffered = 64,
                          .poll_interval = absl::Milliseconds(100),
                          .max_buffered_per_function = 32,
                          .config = OneCallASecondDownstream(callers)});
  ASSERT_TRUE(s->AddWorker("w", worker, 20).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(30), absl::Milliseconds(100));
  std::vector<Call> others;
  for (int k = 0; k < 5; ++k) others.push_back(f.Make("other", clock.Now(), absl::Hours(2)));
  ASSERT_TRUE(queue.Enqueue(others).ok());
  const absl::Time submitted = clock.Now();
  RunUntil(clock, *s, {worker}, submitted + absl::Seconds(5), absl::Milliseconds(100));
  int started = 0;
  for (const auto& st : worker->started()) {
    if (st.call.function != "other") continue;
    ++started;
    EXPECT_LT(st.at - submitted, absl::Seconds(2));
  }
  EXPECT_EQ(started, 5) << "the other function's calls started beside the backlog";
  EXPECT_LE(s->stats().max_buffered, 64u);
  EXPECT_EQ(s->stats().polls_skipped, 0u) << "the blocked buffers never filled max_buffered";
}

// Calls a downstream holds back go back to the queue paced at its rate, not
// all due again after release_delay: a backlog of ten minutes at one call a
// second is leased and released a few times over, not once every 10 s.
TEST(CallSchedulerTest, CallsADownstreamHoldsBackReturnAtItsPace) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::vector<Call> backlog;
  for (int k = 0; k < 600; ++k) backlog.push_back(f.Make("caller", kT0, absl::Hours(2)));
  ASSERT_TRUE(queue.Enqueue(backlog).ok());
  auto worker = OkWorker(&clock, absl::Milliseconds(100));
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .poll_interval = absl::Milliseconds(100),
                          .release_delay = absl::Seconds(10),
                          .max_release_delay = absl::Minutes(5),
                          .config = OneCallASecondDownstream({"caller"})});
  ASSERT_TRUE(s->AddWorker("w", worker, 20).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Minutes(10), absl::Milliseconds(100));
  const SchedulerStats st = s->stats();
  EXPECT_GE(st.acked, 540u) << "the downstream ran at its rate";
  EXPECT_LE(st.acked, 610u);
  // Released every 10 s, the ~590 calls not kept would be released ~35,000
  // times in 10 minutes.
  EXPECT_LT(st.released, 3000u);
  EXPECT_GT(st.released, 0u);
}

// XFaaS's slow start through the scheduler: a new downstream (the default
// AimdOptions: W = 1 min, T = 100) gets 100 calls in the first minute, then
// 20% more each minute while the backlog makes its limit bind; the first
// back-pressure halves the limit and growth becomes additive (+10 a minute).
TEST(CallSchedulerTest, SlowStartGrowsANewDownstreamTwentyPercentPerMinuteUntilBackPressure) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  const absl::Time push_back_at = kT0 + absl::Minutes(5) + absl::Seconds(1);
  bool pushed_back = false;
  auto worker = std::make_shared<FakeWorker>(
      &clock, [](const Call&) { return absl::Milliseconds(100); },
      [&](const Call&) {
        if (pushed_back || clock.Now() < push_back_at) return CallOutcome::Ok();
        pushed_back = true;
        return CallOutcome::BackPressure("db", absl::ResourceExhaustedError("overloaded"));
      });
  SchedulerConfig config{.version = 1};
  config.functions["f"] = {.downstreams = {"db"}};  // "db" gets the default AimdOptions
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .config = config});
  ASSERT_TRUE(s->AddWorker("w", worker, 50).ok());
  // A standing backlog of 100 calls (a minute's limit is at most 249 calls).
  auto top_up = [&] {
    std::vector<Call> batch;
    for (size_t held = queue.size(); held < 100; ++held) {
      batch.push_back(f.Make("f", clock.Now(), absl::Hours(1)));
    }
    if (batch.empty()) return;
    ASSERT_TRUE(queue.Enqueue(batch).ok());
  };
  top_up();
  RunUntil(clock, *s, {worker}, kT0 + absl::Minutes(8), absl::Milliseconds(100), top_up);
  std::vector<int> per_minute(8, 0);
  for (const FakeWorker::Started& st : worker->started()) {
    const int64_t m = absl::ToInt64Minutes(st.at - kT0);
    if (m < 8) ++per_minute[m];
  }
  double expected = 100;
  for (int m = 0; m < 6; ++m) {
    EXPECT_NEAR(per_minute[m], expected, expected * 0.03 + 2) << "slow start, minute " << m;
    expected *= 1.2;
  }
  ASSERT_TRUE(pushed_back);
  const double halved = 100 * std::pow(1.2, 5) * 0.5;  // minute 5's limit, times M
  EXPECT_NEAR(per_minute[6], halved, halved * 0.03 + 2) << "the back-pressure halved it";
  EXPECT_NEAR(per_minute[7], halved + 10, halved * 0.03 + 2) << "then additive increase";
  EXPECT_EQ(s->stats().back_pressure, 1u);
}

// Reserved quota: 1 CPU for a function whose calls measure 100 ms of CPU
// each is 10 calls per second, whatever the initial guess.
TEST(CallSchedulerTest, TheReservedQuotaFollowsTheMeasuredCostPerCall) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  SchedulerConfig config{.version = 1};
  config.functions["f"] = {.reserved_cpu_quota = 1, .initial_cost = absl::Milliseconds(10)};
  auto worker = std::make_shared<FakeWorker>(
      &clock, [](const Call&) { return absl::Milliseconds(100); },
      [](const Call&) { return CallOutcome::Ok(absl::Milliseconds(100)); });
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .config = config});
  ASSERT_TRUE(s->AddWorker("w", worker, 1000).ok());
  std::vector<Call> calls;
  calls.reserve(2000);
  for (int i = 0; i < 2000; ++i) calls.push_back(f.Make("f", kT0, absl::Hours(1)));
  ASSERT_TRUE(queue.Enqueue(calls).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(40), absl::Milliseconds(50));
  int late_starts = 0;
  for (const auto& st : worker->started()) late_starts += st.at >= kT0 + absl::Seconds(20);
  EXPECT_NEAR(late_starts / 20.0, 10.0, 1.5) << "calls per second once the cost is measured";
}

// CPU per call is heavy-tailed: one call that measures 1,000x the usual cost,
// after more than 1,000 calls, moves the average by about 1/1,000 of the
// difference, so the reserved function keeps a good part of its rate (an
// average over a few calls would cut it from 100 to 0.5 calls per second).
TEST(CallSchedulerTest, OneCostlyCallDoesNotStopAReservedFunction) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  SchedulerConfig config{.version = 1};
  config.functions["f"] = {.reserved_cpu_quota = 10, .initial_cost = absl::Milliseconds(100)};
  auto worker = std::make_shared<FakeWorker>(
      &clock, [](const Call&) { return absl::Milliseconds(100); },
      [](const Call& c) {
        return CallOutcome::Ok(c.args.is_int64() ? absl::Seconds(100) : absl::Milliseconds(100));
      });
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .config = config});
  ASSERT_TRUE(s->AddWorker("w", worker, 1000).ok());
  std::vector<Call> calls;
  for (int i = 0; i < 5000; ++i) calls.push_back(f.Make("f", kT0, absl::Hours(1)));
  ASSERT_TRUE(queue.Enqueue(calls).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(20), absl::Milliseconds(50));
  Call costly = f.Make("f", clock.Now(), absl::Minutes(10));  // runs next: the earliest deadline
  costly.args = Value::Int64(1);
  ASSERT_TRUE(queue.Enqueue({costly}).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(35), absl::Milliseconds(50));
  int after = 0;
  for (const auto& st : worker->started()) after += st.at >= kT0 + absl::Seconds(25);
  EXPECT_GE(after / 10.0, 30) << "calls per second after the costly call (quota: 100)";
}

TEST(CallSchedulerTest, SpilledArgumentsAreLoadedForTheWorkerAndDeletedOnAck) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  InMemoryBlobStore blobs;
  auto submitter = Submitter::Create(&queue, &blobs, &clock,
                                     {.max_batch_calls = 1, .spill_threshold_bytes = 100});
  ASSERT_TRUE(submitter.ok());
  CallFactory f;
  Call big = f.Make("f", kT0, absl::Hours(1));
  big.id = CallId();
  big.args = Value::Bytes(std::string(1000, 'z'));
  ASSERT_TRUE((*submitter)->Submit(big).ok());
  EXPECT_EQ(blobs.size(), 1u);
  Value seen;
  auto worker = std::make_shared<FakeWorker>(
      &clock, [](const Call&) { return absl::Milliseconds(1); },
      [&](const Call& c) {
        seen = c.args;
        return CallOutcome::Ok();
      });
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .blobs = &blobs});
  ASSERT_TRUE(s->AddWorker("w", worker, 1).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(1), absl::Milliseconds(10));
  EXPECT_EQ(seen, big.args);
  EXPECT_EQ(blobs.size(), 0u) << "deleted once the call was acked";
}

TEST(CallSchedulerTest, LongCallsKeepTheirLeasesByExtension) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  ASSERT_TRUE(queue
                  .Enqueue(std::vector<Call>{f.Make("slow", kT0, absl::Hours(1)),
                                             f.Make("slow", kT0, absl::Hours(1))})
                  .ok());
  auto worker = OkWorker(&clock, absl::Seconds(45));
  auto s = MakeScheduler({.queue = &queue, .clock = &clock, .lease_duration = absl::Seconds(10)});
  ASSERT_TRUE(s->AddWorker("w", worker, 2).ok());
  // Another scheduler polls the same queue: it must never get these calls.
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(60), absl::Milliseconds(100), [&] {
    auto stolen = queue.Lease({.shard = 0, .now = clock.Now(), .max = 10});
    ASSERT_TRUE(stolen.ok());
    EXPECT_THAT(*stolen, SizeIs(0)) << "at " << clock.Now();
  });
  EXPECT_EQ(s->stats().acked, 2u);
  EXPECT_EQ(s->stats().settle_refused, 0u);
}

TEST(CallSchedulerTest, ALeaseThatExpiredUnderARunningCallIsTakenOverNotRunTwice) {
  VirtualClock clock(kT0);
  // Extend answers OK but extends nothing: every 10 s lease expires under the
  // 45 s call, and the scheduler's polls lease the call again while it runs.
  queue_test::NoExtendQueue queue(std::make_unique<InMemoryQueue>());
  CallFactory f;
  const Call call = f.Make("slow", kT0, absl::Hours(1));
  ASSERT_TRUE(queue.Enqueue({&call, 1}).ok());
  auto worker = OkWorker(&clock, absl::Seconds(45));
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .lease_duration = absl::Seconds(10),
                          .max_poll_interval = absl::Seconds(1)});
  ASSERT_TRUE(s->AddWorker("w", worker, 2).ok());
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(120), absl::Milliseconds(100));
  EXPECT_THAT(worker->started(), SizeIs(1)) << "ran again after its lease expired";
  const SchedulerStats st = s->stats();
  EXPECT_GE(st.leases_adopted, 3u);
  EXPECT_EQ(st.acked, 1u);
  EXPECT_EQ(st.settle_refused, 0u) << "acknowledged under a lease that had expired";
  EXPECT_EQ(queue.Find(call.id, clock.Now()).value(), std::nullopt) << "still queued";
}

TEST(CallSchedulerTest, ASettlementRetriedAfterAQueueFaultUsesTheLeaseTheCallHoldsThen) {
  VirtualClock clock(kT0);
  queue_test::CountingQueue queue(std::make_unique<InMemoryQueue>());
  CallFactory f;
  const Call call = f.Make("f", kT0, absl::Hours(1));
  ASSERT_TRUE(queue.Enqueue({&call, 1}).ok());
  auto worker = OkWorker(&clock, absl::Seconds(1));
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .lease_duration = absl::Seconds(10),
                          .max_poll_interval = absl::Seconds(1)});
  ASSERT_TRUE(s->AddWorker("w", worker, 1).ok());
  // The ACK fails until long after the lease expired: the call is leased
  // again meanwhile, adopted, and the retried ACK goes under that lease.
  queue.FailSettle(true);
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(25), absl::Milliseconds(100));
  EXPECT_EQ(s->stats().acked, 0u);
  EXPECT_GE(s->stats().leases_adopted, 1u);
  queue.FailSettle(false);
  RunUntil(clock, *s, {worker}, kT0 + absl::Seconds(60), absl::Milliseconds(100));
  EXPECT_THAT(worker->started(), SizeIs(1));
  EXPECT_EQ(s->stats().acked, 1u);
  EXPECT_EQ(s->stats().settle_refused, 0u);
  EXPECT_EQ(queue.Find(call.id, clock.Now()).value(), std::nullopt);
}

TEST(CallSchedulerTest, LocalityGroupsKeepEachWorkersFunctionsToItsGroup) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::vector<FunctionFootprint> fns;
  for (int i = 0; i < 30; ++i) fns.push_back({"fn" + std::to_string(i), 10.0 + i});
  auto plan = PlanLocalityGroups(fns, {"g0", "g1", "g2"});
  ASSERT_TRUE(plan.ok()) << plan.status();
  SchedulerConfig config{.version = 1, .locality = *plan};
  for (auto pick :
       {CallScheduler::WorkerPick::kPowerOfTwoChoices, CallScheduler::WorkerPick::kRendezvous}) {
    auto s =
        MakeScheduler({.queue = &queue, .clock = &clock, .worker_pick = pick, .config = config});
    std::vector<std::shared_ptr<FakeWorker>> workers;
    std::map<FakeWorker*, std::string> group_of;
    for (int g = 0; g < 3; ++g) {
      for (int w = 0; w < 3; ++w) {
        workers.push_back(OkWorker(&clock, absl::Milliseconds(50)));
        group_of[workers.back().get()] = "g" + std::to_string(g);
        ASSERT_TRUE(
            s->AddWorker(absl::StrCat(g, "-", w), workers.back(), 2, "g" + std::to_string(g)).ok());
      }
    }
    std::vector<Call> calls;
    for (int i = 0; i < 300; ++i)
      calls.push_back(f.Make(fns[i % 30].function, clock.Now(), absl::Hours(1)));
    ASSERT_TRUE(queue.Enqueue(calls).ok());
    RunUntil(clock, *s, workers, clock.Now() + absl::Seconds(20), absl::Milliseconds(10));
    size_t ran = 0;
    size_t distinct_sum = 0;
    for (const auto& w : workers) {
      std::set<std::string> distinct;
      for (const auto& st : w->started()) {
        EXPECT_EQ(plan->groups[plan->GroupOf(st.call.function)], group_of[w.get()]);
        distinct.insert(st.call.function);
        ++ran;
      }
      distinct_sum += distinct.size();
    }
    EXPECT_EQ(ran, 300u);
    EXPECT_LE(distinct_sum / workers.size(), 14u) << "each worker sees about a third of 30";
  }
}

TEST(LocalityGroupsTest, SpreadsMemoryAndMovesFewFunctionsWhenAGroupIsAdded) {
  std::vector<FunctionFootprint> fns;
  for (int i = 0; i < 400; ++i) {
    fns.push_back({"fn" + std::to_string(i), i % 20 == 0 ? 500.0 : 10.0 + (i % 13)});
  }
  std::vector<std::string> groups;
  for (int g = 0; g < 8; ++g) groups.push_back("g" + std::to_string(g));
  auto plan = PlanLocalityGroups(fns, groups, 0.1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  double total = 0, max = 0;
  for (double m : plan->group_memory) {
    total += m;
    max = std::max(max, m);
  }
  EXPECT_LE(max, 1.1 * total / 8 + 1e-9) << "no group over (1 + slack) x the mean";
  groups.push_back("g8");
  auto grown = PlanLocalityGroups(fns, groups, 0.1);
  ASSERT_TRUE(grown.ok());
  int moved = 0;
  for (const auto& f : fns) {
    if (plan->GroupOf(f.function) != grown->GroupOf(f.function)) ++moved;
  }
  // About 1/9 move to the new group, plus a few the load bound displaces;
  // placing by hash modulo the group count would move about 8/9 (355).
  EXPECT_LT(moved, 120) << "a reshuffle, not a rebalance";
  // Bad inputs.
  EXPECT_EQ(PlanLocalityGroups(fns, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanLocalityGroups(fns, {"a", "a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanLocalityGroups({{"x", -1}}, {"a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanLocalityGroups({{"x", 1}, {"x", 2}}, {"a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Each finite, their sum not: the bound would be infinite and every group "fit".
  const absl::StatusOr<LocalityPlan> huge = PlanLocalityGroups({{"x", 1e308}, {"y", 1e308}}, {"a"});
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(huge.status().message()), HasSubstr("adds up"));
}

// The controller publishes once and disappears: half an hour later the
// scheduler still enforces that config (a concurrency limit of 2).
TEST(CallSchedulerTest, KeepsTheLastConfigAndRunsWhenTheControllerIsGone) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  int polls = 0;
  auto source = [&]() -> absl::StatusOr<SchedulerConfig> {
    if (polls++ == 0) {
      SchedulerConfig c{.version = 7};
      c.functions["f"] = {.concurrency_limit = 2};
      return c;
    }
    return absl::UnavailableError("controller unreachable");
  };
  auto worker = OkWorker(&clock, absl::Seconds(1));
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .config_source = source,
                          .config_poll_interval = absl::Seconds(30)});
  ASSERT_TRUE(s->AddWorker("w", worker, 10).ok());
  int64_t minute = -1;
  RunUntil(clock, *s, {worker}, kT0 + absl::Minutes(30), absl::Milliseconds(250), [&] {
    const int64_t m = absl::ToInt64Minutes(clock.Now() - kT0);
    if (m == minute) return;
    minute = m;
    std::vector<Call> batch;
    for (int i = 0; i < 60; ++i) batch.push_back(f.Make("f", clock.Now(), absl::Hours(2)));
    ASSERT_TRUE(queue.Enqueue(batch).ok());
  });
  const SchedulerStats st = s->stats();
  EXPECT_EQ(st.config_version, 7u);
  EXPECT_GT(st.config_failures, 50u);
  EXPECT_EQ(worker->max_running(), 2u) << "the limit of the last good config held";
  EXPECT_GT(st.acked, 29u * 60u) << "and calls kept running";
  // A bad or stale config is refused, the one in force kept.
  SchedulerConfig bad{.version = 8};
  bad.functions["f"] = {.concurrency_limit = -1};
  EXPECT_EQ(s->ApplyConfig(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s->ApplyConfig({.version = 7}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->stats().config_version, 7u);
}

TEST(CallSchedulerTest, DrainHandsBufferedCallsBackToTheQueue) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  CallFactory f;
  std::vector<Call> calls;
  for (int i = 0; i < 10; ++i) calls.push_back(f.Make("f", kT0, absl::Hours(1)));
  ASSERT_TRUE(queue.Enqueue(calls).ok());
  auto worker = OkWorker(&clock, absl::Hours(1));  // never finishes in this test
  auto s = MakeScheduler({.queue = &queue, .clock = &clock});
  ASSERT_TRUE(s->AddWorker("w", worker, 2).ok());
  s->Tick();
  EXPECT_EQ(s->stats().in_flight, 2u);
  s->Drain();
  EXPECT_EQ(s->stats().released, 8u);
  auto back = queue.Lease({.shard = 0, .now = clock.Now(), .max = 100});
  ASSERT_TRUE(back.ok());
  ASSERT_THAT(*back, SizeIs(8));
  EXPECT_EQ((*back)[0].call.attempt, 0) << "an unstarted call keeps its attempts";
  clock.Advance(absl::Seconds(1));
  const absl::Time next = s->Tick();
  EXPECT_EQ(s->stats().leased, 10u) << "a drained scheduler leases nothing more";
  EXPECT_GT(next, clock.Now()) << "a drained scheduler's host would spin";
}

TEST(CallSchedulerTest, EveryBadInputIsRefusedByName) {
  VirtualClock clock(kT0);
  InMemoryQueue queue({.shards = 2});
  auto expect_bad = [](const absl::Status& s, const char* what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(what));
  };
  expect_bad(CallScheduler::Create({.clock = &clock}).status(), "queue");
  expect_bad(CallScheduler::Create({.queue = &queue}).status(), "clock");
  expect_bad(CallScheduler::Create({.queue = &queue, .clock = &clock, .shards = {2}}).status(),
             "shard 2");
  expect_bad(CallScheduler::Create({.queue = &queue, .clock = &clock, .lease_batch = 0}).status(),
             "lease_batch");
  expect_bad(CallScheduler::Create({.queue = &queue, .clock = &clock, .max_buffered = 0}).status(),
             "max_buffered");
  expect_bad(CallScheduler::Create(
                 {.queue = &queue, .clock = &clock, .lease_duration = absl::ZeroDuration()})
                 .status(),
             "lease_duration");
  expect_bad(CallScheduler::Create({.queue = &queue, .clock = &clock, .utilization = {.target = 2}})
                 .status(),
             "target");
  expect_bad(CallScheduler::Create({.queue = &queue,
                                    .clock = &clock,
                                    .release_delay = absl::Minutes(10),
                                    .max_release_delay = absl::Minutes(5)})
                 .status(),
             "max_release_delay");
  expect_bad(
      CallScheduler::Create({.queue = &queue, .clock = &clock, .release_delay = absl::Seconds(-1)})
          .status(),
      "release_delay");

  auto s = MakeScheduler({.queue = &queue, .clock = &clock});
  expect_bad(s->AddWorker("", OkWorker(&clock, absl::Seconds(1)), 1), "id");
  expect_bad(s->AddWorker("w", nullptr, 1), "null");
  expect_bad(s->AddWorker("w", OkWorker(&clock, absl::Seconds(1)), 0), "slots");
  ASSERT_TRUE(s->AddWorker("w", OkWorker(&clock, absl::Seconds(1)), 1).ok());
  EXPECT_EQ(s->AddWorker("w", OkWorker(&clock, absl::Seconds(1)), 1).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(s->RemoveWorker("nope").code(), absl::StatusCode::kNotFound);

  SchedulerConfig c{.version = 1};
  c.functions["bad name"] = {};
  expect_bad(s->ApplyConfig(c), "function name");
  c = {.version = 1};
  c.functions["f"] = {.reserved_cpu_quota = -1};
  expect_bad(s->ApplyConfig(c), "reserved_cpu_quota");
  c = {.version = 1};
  c.functions["f"] = {.opportunistic_rate = std::nan("")};
  expect_bad(s->ApplyConfig(c), "opportunistic_rate");
  c = {.version = 1};
  c.functions["f"] = {.downstreams = {""}};
  expect_bad(s->ApplyConfig(c), "downstream");
  c = {.version = 1};
  c.downstreams["db"] = {.multiplicative_decrease = 2};
  expect_bad(s->ApplyConfig(c), "multiplicative_decrease");
  c = {.version = 1};
  c.locality.groups = {"g0"};
  c.locality.function_group["f"] = 3;
  expect_bad(s->ApplyConfig(c), "group 3");
  EXPECT_EQ(s->stats().config_version, 0u);
}

// Workers finish calls on their own threads while the scheduler ticks:
// every call is acked exactly once (run under ThreadSanitizer).
TEST(CallSchedulerStressTest, WorkersCompletingOnOtherThreadsSettleEveryCallOnce) {
  VirtualClock clock(kT0);
  InMemoryQueue queue({.shards = 2});
  CallFactory f;
  constexpr int kCalls = 3000;
  for (int i = 0; i < kCalls; i += 100) {
    std::vector<Call> batch;
    for (int j = 0; j < 100; ++j)
      batch.push_back(f.Make("f" + std::to_string(j % 5), kT0, absl::Hours(1)));
    ASSERT_TRUE(queue.Enqueue(batch).ok());
  }
  // A worker that hands each call to one of two threads, which finish it.
  class ThreadedWorker final : public Worker {
   public:
    ThreadedWorker() {
      for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { Loop(); });
    }
    ~ThreadedWorker() override {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
      }
      cv_.notify_all();
      for (auto& t : threads_) t.join();
    }
    void Run(const Call& call, Done done) override {
      {
        std::lock_guard<std::mutex> lock(mu_);
        work_.push_back(std::move(done));
        ++runs_[call.id];
      }
      cv_.notify_one();
    }
    int duplicates() {
      std::lock_guard<std::mutex> lock(mu_);
      int d = 0;
      for (const auto& [id, n] : runs_) d += n > 1;
      return d;
    }

   private:
    void Loop() {
      std::unique_lock<std::mutex> lock(mu_);
      while (true) {
        cv_.wait(lock, [&] { return stop_ || !work_.empty(); });
        if (work_.empty()) return;
        Done d = std::move(work_.front());
        work_.pop_front();
        lock.unlock();
        std::move(d)(CallOutcome::Ok());
        lock.lock();
      }
    }
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Done> work_;
    std::map<CallId, int> runs_;
    bool stop_ = false;
    std::vector<std::thread> threads_;
  };
  auto worker = std::make_shared<ThreadedWorker>();
  std::atomic<int> wakeups{0};
  auto s = MakeScheduler({.queue = &queue,
                          .clock = &clock,
                          .lease_batch = 64,
                          .max_buffered = 256,
                          .run_queue_target = 32,
                          .wakeup = [&] { ++wakeups; }});
  ASSERT_TRUE(s->AddWorker("w", worker, 16).ok());
  std::thread observer([&] {
    for (int i = 0; i < 200; ++i) {
      (void)s->stats();
      s->ReportUtilization(0.5);
      std::this_thread::yield();
    }
  });
  // Bounded by wall time, not ticks: on a loaded machine the worker threads
  // may get little CPU, and the loop waits for them instead of spinning.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (s->stats().acked < static_cast<uint64_t>(kCalls) &&
         std::chrono::steady_clock::now() < give_up) {
    const int before = wakeups.load();
    clock.Advance(absl::Milliseconds(1));
    s->Tick();
    if (wakeups.load() == before && s->stats().in_flight > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  observer.join();
  EXPECT_EQ(s->stats().acked, static_cast<uint64_t>(kCalls));
  EXPECT_EQ(worker->duplicates(), 0);
  EXPECT_GT(wakeups.load(), 0);
  EXPECT_EQ(queue.size(), 0u);
}

}  // namespace
}  // namespace txfn
