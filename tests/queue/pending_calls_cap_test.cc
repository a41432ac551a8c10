// PendingCallsCap on an InMemoryQueue and a virtual clock: it admits up to the cap and refuses
// past it only on a fresh count, recounts at most once per interval (longer after a slow
// count), keeps calls added while it counted, and holds its cap under concurrent callers.
#include "lib/queue/pending_calls_cap.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "queue_test_util.h"
#include "txfn/clock.h"
#include "txfn/in_memory_queue.h"

namespace txfn::internal {
namespace {

using queue_test::ForwardingQueue;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// Counts TenantDepths and runs `during_count` inside it (a recount's window).
class CountedQueue final : public ForwardingQueue {
 public:
  CountedQueue() : ForwardingQueue(std::make_shared<InMemoryQueue>()) {}
  absl::StatusOr<std::vector<TenantDepth>> TenantDepths(absl::Time now) override {
    ++counts;
    if (during_count) during_count();
    if (!fail.ok()) return fail;
    return ForwardingQueue::TenantDepths(now);
  }
  // Enqueues `n` calls of `tenant` due at kT0; their ids.
  std::vector<CallId> Add(const std::string& tenant, int n, const std::string& arg = "") {
    std::vector<Call> calls;
    for (int i = 0; i < n; ++i) {
      Call c;
      {
        std::lock_guard<std::mutex> lock(ids_mu_);
        c.id = ids_.Next();
      }
      c.tenant = tenant;
      c.function = "f";
      if (!arg.empty()) c.args = Value::FromObject({{"a", Value::String(arg)}});
      c.start_after = kT0;
      c.deadline = kT0 + absl::Hours(1);
      calls.push_back(std::move(c));
    }
    EXPECT_TRUE(Enqueue(calls).ok());
    std::vector<CallId> out;
    for (const Call& c : calls) out.push_back(c.id);
    return out;
  }

  std::atomic<int> counts{0};
  std::function<void()> during_count;
  absl::Status fail;

 private:
  std::mutex ids_mu_;
  CallIdGenerator ids_{5};
};

TEST(PendingCallsCapTest, AdmitsUpToTheCapAndRefusesPastItOnAFreshCount) {
  CountedQueue queue;
  VirtualClock clock(kT0);
  PendingCallsCap cap(queue, clock, {.calls = 4});
  queue.Add("hog", 3);
  queue.Add("other", 1);
  // The first Admit counts the queue (it may hold calls of an earlier process).
  EXPECT_TRUE(cap.Admit("hog", {.calls = 1}).ok());
  EXPECT_EQ(queue.counts, 1);
  queue.Add("hog", 1);
  cap.Added("hog", {.calls = 1});
  const absl::Status refused = cap.Admit("hog", {.calls = 1});
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("tenant hog has 4 calls waiting"));
  EXPECT_THAT(refused.message(), HasSubstr("at most 4 (max_pending_calls_per_tenant)"));
  EXPECT_EQ(queue.counts, 1) << "within the interval: no recount";
  // Other tenants are not held back by the hog.
  EXPECT_TRUE(cap.Admit("other", {.calls = 3}).ok());
  EXPECT_FALSE(cap.Admit("other", {.calls = 4}).ok());
  EXPECT_TRUE(cap.Admit("new", {.calls = 4}).ok());
  EXPECT_FALSE(cap.Admit("new", {.calls = std::numeric_limits<size_t>::max()}).ok())
      << "no overflow";
  EXPECT_EQ(cap.refused(), 3u);
  EXPECT_EQ(cap.recounts(), 1u);
}

TEST(PendingCallsCapTest, ARecountAfterTheIntervalSeesTheCallsThatEnded) {
  CountedQueue queue;
  VirtualClock clock(kT0);
  PendingCallsCap cap(queue, clock, {.calls = 3});
  std::vector<CallId> ids = queue.Add("t", 3);
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());
  // Two of them run (removed from the queue, as an ACK does): the estimate still errs high
  // until the interval has passed and a refused call counts again.
  ASSERT_TRUE(queue.RemovePending({ids.data(), 2}, kT0).ok());
  clock.Advance(absl::Milliseconds(999));
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());
  EXPECT_EQ(queue.counts, 1);
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(cap.Admit("t", {.calls = 2}).ok());
  EXPECT_EQ(queue.counts, 2);
  // Admitted calls count once Added, without a recount.
  cap.Added("t", {.calls = 2});
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());
  EXPECT_EQ(queue.counts, 2);
}

TEST(PendingCallsCapTest, ASlowCountWaitsTenTimesAsLongForTheNextUpToAMinute) {
  CountedQueue queue;
  VirtualClock clock(kT0);
  PendingCallsCap cap(queue, clock, {.calls = 1});
  queue.Add("t", 1);
  queue.during_count = [&] { clock.Advance(absl::Seconds(2)); };  // a count that takes 2 s
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());
  EXPECT_EQ(queue.counts, 1);
  clock.Advance(absl::Seconds(19));
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());
  EXPECT_EQ(queue.counts, 1) << "20 s after the slow count ended, not 1 s";
  // A count during which the clock jumped an hour: the next waits a minute, not ten hours.
  queue.during_count = [&] { clock.Advance(absl::Hours(1)); };
  clock.Advance(absl::Seconds(1));
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());
  EXPECT_EQ(queue.counts, 2);
  queue.during_count = nullptr;
  clock.Advance(absl::Minutes(1));
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());
  EXPECT_EQ(queue.counts, 3);
}

TEST(PendingCallsCapTest, CallsAddedWhileItCountsAreKeptAndFailedCountsAdmit) {
  CountedQueue queue;
  VirtualClock clock(kT0);
  PendingCallsCap cap(queue, clock, {.calls = 5});
  queue.Add("t", 2);
  // Two calls enqueued and announced while the count runs: the count may have missed them.
  queue.during_count = [&] { cap.Added("t", {.calls = 2}); };
  EXPECT_TRUE(cap.Admit("t", {.calls = 1}).ok());  // 2 counted + 2 added meanwhile + 1 <= 5
  queue.during_count = nullptr;
  EXPECT_FALSE(cap.Admit("t", {.calls = 2}).ok());  // 4 + 2 > 5
  // The cap is enforced on counts only: while they fail (the queue is down, an adapter that
  // cannot count), calls are admitted, and counted again each interval.
  queue.fail = absl::UnimplementedError("this queue adapter cannot list its calls");
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(cap.Admit("t", {.calls = 2}).ok());
  EXPECT_EQ(queue.counts, 2);
  EXPECT_TRUE(cap.Admit("t", {.calls = 100}).ok());
  EXPECT_EQ(queue.counts, 2);
  queue.fail = absl::OkStatus();
  clock.Advance(absl::Seconds(1));
  EXPECT_FALSE(cap.Admit("t", {.calls = 4}).ok());  // counted: 2 in the queue + 4 > 5
  EXPECT_EQ(queue.counts, 3);
  EXPECT_TRUE(cap.Admit("t", {.calls = 3}).ok());
}

// Until the first count is in, an Admit beside it waits for it rather than admitting: a
// tenant at its cap went past it by ~5,000 calls at each start of `txfn serve` (a hunt).
TEST(PendingCallsCapTest, AdmitsBesideTheFirstCountWaitForIt) {
  CountedQueue queue;
  VirtualClock clock(kT0);
  PendingCallsCap cap(queue, clock, {.calls = 3});
  queue.Add("t", 3);
  absl::Status beside;
  std::thread other;
  queue.during_count = [&] {
    if (other.joinable()) return;
    other = std::thread([&] { beside = cap.Admit("t", {.calls = 1}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // it reaches the count's wait
  };
  EXPECT_EQ(cap.Admit("t", {.calls = 1}).code(), absl::StatusCode::kResourceExhausted);
  other.join();
  EXPECT_EQ(beside.code(), absl::StatusCode::kResourceExhausted) << beside;
  EXPECT_EQ(queue.counts, 1) << "the caller beside used the first count";
}

// Bytes are capped beside calls: a tenant with few calls of big arguments is refused on its
// bytes (counted by the queue), and a cap of calls alone, or of bytes alone, holds alone.
TEST(PendingCallsCapTest, BytesAreCappedBesideCalls) {
  CountedQueue queue;
  VirtualClock clock(kT0);
  queue.Add("big", 2, std::string(10'000, 'x'));
  queue.Add("small", 2);
  PendingCallsCap cap(queue, clock, {.calls = 100, .bytes = 25'000});
  EXPECT_TRUE(cap.Admit("big", {.calls = 1, .bytes = 4'000}).ok());  // ~20,200 + 4,000
  const absl::Status refused = cap.Admit("big", {.calls = 1, .bytes = 6'000});
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("tenant big has 2 calls of 20"));
  EXPECT_THAT(refused.message(),
              HasSubstr("at most 25000 bytes (max_pending_bytes_per_tenant): 1 more (6000 bytes) "
                        "is refused"));
  EXPECT_TRUE(cap.Admit("small", {.calls = 50, .bytes = 20'000}).ok());
  cap.Added("small", {.calls = 50, .bytes = 20'000});
  EXPECT_FALSE(cap.Admit("small", {.calls = 1, .bytes = 5'000}).ok()) << "added bytes count";

  PendingCallsCap bytes_only(queue, clock, {.bytes = 25'000});
  EXPECT_TRUE(bytes_only.Admit("small", {.calls = 1'000'000, .bytes = 1}).ok());
  EXPECT_FALSE(bytes_only.Admit("big", {.calls = 1, .bytes = 6'000}).ok());
  PendingCallsCap calls_only(queue, clock, {.calls = 3});
  EXPECT_TRUE(calls_only.Admit("big", {.calls = 1, .bytes = 1'000'000'000}).ok());
  EXPECT_FALSE(calls_only.Admit("big", {.calls = 2}).ok());
}

TEST(PendingCallsCapTest, ZeroMeansNoCapAndNeverReadsTheQueue) {
  CountedQueue queue;
  VirtualClock clock(kT0);
  PendingCallsCap cap(queue, clock, {.calls = 0});
  cap.Added("t", {.calls = 1'000'000});
  EXPECT_TRUE(cap.Admit("t", {.calls = std::numeric_limits<size_t>::max()}).ok());
  EXPECT_EQ(queue.counts, 0);
}

TEST(PendingCallsCapTest, AClockSetBackDoesNotStopTheRecounts) {
  CountedQueue queue;
  queue_test::SteppedClock clock(kT0);
  PendingCallsCap cap(queue, clock, {.calls = 1});
  std::vector<CallId> ids = queue.Add("t", 1);
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());
  ASSERT_TRUE(queue.RemovePending(ids, kT0).ok());
  clock.Set(kT0 - absl::Hours(1));
  EXPECT_FALSE(cap.Admit("t", {.calls = 1}).ok());  // within the interval, as seen after the step
  clock.Set(kT0 - absl::Hours(1) + absl::Seconds(1));
  EXPECT_TRUE(cap.Admit("t", {.calls = 1}).ok());
  EXPECT_EQ(queue.counts, 2);
}

// Threads admitting calls of three tenants, enqueueing and announcing each they were let add:
// the estimate is off by at most the calls between an Admit and its Added (one per thread), so
// every tenant ends within that of its cap, while recounts run beside them.
TEST(PendingCallsCapStressTest, ConcurrentCallersStayWithinTheCap) {
  CountedQueue queue;
  VirtualClock clock(kT0);
  constexpr size_t kCap = 300;
  constexpr int kThreads = 4;
  PendingCallsCap cap(queue, clock, {.calls = kCap});
  // The first count, before the callers start. Until a count succeeded, the cap admits (the
  // queue may hold an earlier process's calls): with the first count made by one of them,
  // another three could run all their calls while its thread waited for a core (a loaded CI
  // machine: 600 of each tenant admitted, in 2 ms).
  ASSERT_TRUE(cap.Admit("warm-up", {.calls = 1}).ok());
  ASSERT_EQ(cap.recounts(), 1u);
  std::atomic<bool> stop{false};
  std::thread ticker([&] {
    while (!stop.load()) {
      clock.Advance(absl::Milliseconds(50));  // recounts come due now and then
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  std::mutex mu;
  std::map<std::string, size_t> admitted;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 600; ++i) {
        const std::string tenant = "t" + std::to_string((i + t) % 3);
        if (!cap.Admit(tenant, {.calls = 1}).ok()) continue;
        queue.Add(tenant, 1);
        cap.Added(tenant, {.calls = 1});
        std::lock_guard<std::mutex> lock(mu);
        ++admitted[tenant];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  stop = true;
  ticker.join();
  ASSERT_EQ(admitted.size(), 3u);
  for (const auto& [tenant, n] : admitted) {
    EXPECT_GE(n, kCap - kThreads) << tenant;
    EXPECT_LE(n, kCap + kThreads - 1) << tenant;
  }
  EXPECT_GT(cap.refused(), 0u);
}

}  // namespace
}  // namespace txfn::internal
