// DeadlineTimer: callbacks run at their deadlines, in order, once; cancelled ones never; the
// destructor drops the rest. The stress test (STRESS, run under ThreadSanitizer) schedules and
// cancels from many threads while callbacks schedule more.
#include "lib/deadline_timer.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "txfn/internal/mutex.h"

namespace txfn::internal {
namespace {

// Waits (up to 10 s) for `done`.
template <typename Predicate>
bool Eventually(Predicate done) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (!done() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(1));
  return done();
}

TEST(DeadlineTimerTest, RunsCallbacksAtTheirDeadlinesInOrder) {
  DeadlineTimer timer;
  Mutex mu;
  std::vector<int> order;
  std::vector<absl::Time> ran_at;
  const absl::Time start = absl::Now();
  auto record = [&](int i) {
    return [&, i] {
      MutexLock lock(&mu);
      order.push_back(i);
      ran_at.push_back(absl::Now());
    };
  };
  // Far enough apart that a stall between two Schedules does not reorder them.
  const absl::Time deadlines[] = {start + absl::Milliseconds(600), start + absl::Milliseconds(200),
                                  start + absl::Milliseconds(400), start + absl::Milliseconds(400)};
  for (int i = 0; i < 4; ++i) (void)timer.Schedule(deadlines[i], record(i));
  ASSERT_TRUE(Eventually([&] {
    MutexLock lock(&mu);
    return order.size() == 4;
  }));
  MutexLock lock(&mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 0})) << "by deadline, ties in the order scheduled";
  for (int i = 0; i < 4; ++i) EXPECT_GE(ran_at[i], deadlines[order[i]]) << "not before it";
  EXPECT_EQ(timer.pending(), 0u);
}

TEST(DeadlineTimerTest, AnEarlierDeadlineWakesATimerWaitingForALaterOne) {
  DeadlineTimer timer;
  std::atomic<bool> late{false}, early{false};
  (void)timer.Schedule(absl::Now() + absl::Hours(1), [&] { late = true; });
  absl::SleepFor(absl::Milliseconds(20));  // the thread now waits for the hour
  (void)timer.Schedule(absl::Now() + absl::Milliseconds(10), [&] { early = true; });
  EXPECT_TRUE(Eventually([&] { return early.load(); }));
  EXPECT_FALSE(late);
  EXPECT_EQ(timer.pending(), 1u);
}

TEST(DeadlineTimerTest, ACancelledCallbackNeverRunsAndIsDestroyedAtOnce) {
  DeadlineTimer timer;
  std::atomic<int> ran{0};
  auto held = std::make_shared<int>(1);
  DeadlineTimer::Handle cancelled =
      timer.Schedule(absl::Now() + absl::Hours(1), [&, held] { ++ran; });
  DeadlineTimer::Handle kept = timer.Schedule(absl::Now() + absl::Milliseconds(30), [&] { ++ran; });
  EXPECT_EQ(held.use_count(), 2);
  EXPECT_TRUE(timer.Cancel(cancelled));
  EXPECT_EQ(held.use_count(), 1) << "destroyed by Cancel";
  EXPECT_FALSE(timer.Cancel(cancelled)) << "once";
  ASSERT_TRUE(Eventually([&] { return ran == 1; }));
  EXPECT_EQ(timer.pending(), 0u);
  EXPECT_FALSE(timer.Cancel(kept)) << "it ran";
}

TEST(DeadlineTimerTest, NeverRunsAtTheInfiniteFutureAndCostsNothing) {
  DeadlineTimer timer;
  DeadlineTimer::Handle never = timer.Schedule(absl::InfiniteFuture(), [] { FAIL(); });
  EXPECT_EQ(timer.pending(), 0u);
  EXPECT_FALSE(timer.Cancel(never));
  EXPECT_FALSE(timer.Cancel(DeadlineTimer::Handle{}));
}

TEST(DeadlineTimerTest, APassedDeadlineRunsAtOnceAndCallbacksMayScheduleMore) {
  DeadlineTimer timer;
  std::atomic<int> ran{0};
  (void)timer.Schedule(absl::Now() - absl::Seconds(1), [&] {
    ++ran;
    (void)timer.Schedule(absl::Now(), [&] { ++ran; });
  });
  EXPECT_TRUE(Eventually([&] { return ran == 2; }));
}

TEST(DeadlineTimerTest, TheDestructorDropsWhatIsPendingAndWaitsForWhatRuns) {
  auto held = std::make_shared<int>(1);
  std::atomic<bool> running{false}, finished{false};
  {
    DeadlineTimer timer;
    (void)timer.Schedule(absl::Now(), [&] {
      running = true;
      absl::SleepFor(absl::Milliseconds(50));
      finished = true;
    });
    (void)timer.Schedule(absl::Now() + absl::Hours(1), [held] {});
    ASSERT_TRUE(Eventually([&] { return running.load(); }));
  }
  EXPECT_TRUE(finished) << "waited for";
  EXPECT_EQ(held.use_count(), 1) << "dropped";
}

// A callback that drops the timer's last owner (a runner whose last reference was in a request
// the timer answered) does not join its own thread: the thread finishes the callback and ends;
// what was still pending is dropped.
TEST(DeadlineTimerTest, ACallbackMayDropTheTimersLastOwner) {
  auto timer = std::make_unique<DeadlineTimer>();
  auto held = std::make_shared<int>(1);
  std::atomic<bool> dropped_it{false};
  (void)timer->Schedule(absl::Now() + absl::Hours(1), [held] {});
  (void)timer->Schedule(absl::Now(), [&] {
    timer.reset();
    dropped_it = true;
  });
  ASSERT_TRUE(Eventually([&] { return dropped_it.load(); }));
  EXPECT_TRUE(Eventually([&] { return held.use_count() == 1; })) << "the pending one dropped";
}

// Many threads schedule callbacks due within a few milliseconds and cancel half of them at
// once; callbacks schedule more. Every callback runs exactly once unless its Cancel succeeded.
TEST(DeadlineTimerStressTest, EachCallbackRunsOnceUnlessCancelled) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::atomic<int>> runs(kThreads * kPerThread * 2);
  std::atomic<int> cancelled{0}, scheduled{0};
  DeadlineTimer timer;  // last: gone before what its callbacks touch
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int slot = (t * kPerThread + i) * 2;
        ++scheduled;
        DeadlineTimer::Handle h =
            timer.Schedule(absl::Now() + absl::Microseconds(i % 3000), [&, slot] {
              ++runs[slot];
              ++scheduled;
              (void)timer.Schedule(absl::Now(), [&, slot] { ++runs[slot + 1]; });
            });
        if (i % 2 == 0 && timer.Cancel(h)) ++cancelled;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  auto ran = [&] {
    int n = 0;
    for (std::atomic<int>& r : runs) n += r.load();
    return n;
  };
  ASSERT_TRUE(Eventually([&] { return ran() + cancelled == scheduled; }))
      << ran() << " ran, " << cancelled << " cancelled, " << scheduled << " scheduled";
  absl::SleepFor(absl::Milliseconds(20));  // nothing runs twice, late
  for (std::atomic<int>& r : runs) ASSERT_LE(r.load(), 1);
  EXPECT_EQ(ran() + cancelled, scheduled);
  EXPECT_EQ(timer.pending(), 0u);
  EXPECT_GT(cancelled, 0);
}

}  // namespace
}  // namespace txfn::internal
