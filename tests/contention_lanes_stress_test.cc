// Contention lanes under many threads (run under ThreadSanitizer): a lane's
// turn is exclusive, and predictions stay consistent while calls switch lanes
// and predictions are dropped under them.
#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lib/contention_lanes.h"

namespace txfn::internal {
namespace {

TEST(ContentionLanesStressTest, TurnsAreExclusiveWhileCallsSwitchLanesAndPredictionsAreDropped) {
  constexpr int kThreads = 8;
  constexpr int kRanges = 3;
  constexpr int kCalls = 2000;
  // 32 call keys over a bound of 8: predictions are dropped all the time;
  // the 3 lanes stay (fewer than the bound), so each range has one lane.
  ContentionLanes lanes(absl::Milliseconds(5), /*max_entries=*/8);
  std::vector<std::atomic<int>> inside(kRanges);
  std::vector<int64_t> counters(kRanges, 0);  // touched only inside the lane
  std::atomic<int> overlaps{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kCalls; ++i) {
        const int range = static_cast<int>(rng() % kRanges);
        const uint64_t key = rng() % 32;
        LaneSlot slot;
        EXPECT_TRUE(slot.Enter(lanes.Predicted(key, absl::Now())));  // maybe another range's lane
        EXPECT_TRUE(slot.Enter(lanes.OnConflict(
            key, ReadRange{.index = 1, .range = KeyRange::Point("r" + std::to_string(range))},
            absl::Now())));
        if (inside[range].fetch_add(1) != 0) overlaps.fetch_add(1);
        ++counters[range];
        inside[range].fetch_sub(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(counters[0] + counters[1] + counters[2], int64_t{kThreads} * kCalls);
  EXPECT_LE(lanes.keys(), 8u);
  EXPECT_EQ(lanes.lanes(), 3u);
}

// One lane, many threads: the turn is a mutual exclusion (a non-atomic
// counter incremented inside it ends exact; TSan sees no race).
TEST(ContentionLanesStressTest, OneLaneIsAMutualExclusion) {
  auto lane = std::make_shared<Lane>();
  int64_t counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        LaneSlot slot;
        EXPECT_TRUE(slot.Enter(lane));
        ++counter;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter, 8 * 5000);
  EXPECT_EQ(lane->occupants(), 0u);
}

// Callers that give up at their deadlines leave the queue under the others: the turn stays a
// mutual exclusion, every caller that was not given up on gets a turn, and nothing is left
// queued or held.
TEST(ContentionLanesStressTest, WaitersGivingUpAtTheirDeadlinesLeaveTheTurnsExclusive) {
  auto lane = std::make_shared<Lane>();
  int64_t counter = 0;  // touched only inside a turn
  std::atomic<int64_t> turns{0};
  std::atomic<int64_t> gave_up{0};
  constexpr int kThreads = 8;
  constexpr int kCalls = 1500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kCalls; ++i) {
        // Half wait for ever; the rest give up within 50 us (a sixth of them have already passed
        // theirs).
        const absl::Time deadline =
            rng() % 2 == 0 ? absl::InfiniteFuture()
                           : absl::Now() + absl::Microseconds(static_cast<int>(rng() % 60) - 10);
        LaneSlot slot;
        if (!slot.Enter(lane, deadline)) {
          EXPECT_EQ(slot.held(), nullptr);
          EXPECT_NE(deadline, absl::InfiniteFuture());
          gave_up.fetch_add(1);
          continue;
        }
        ++counter;
        turns.fetch_add(1);
        if (i % 8 == 0) std::this_thread::yield();  // hold the turn a little: queues form
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter, turns.load());
  EXPECT_EQ(turns.load() + gave_up.load(), int64_t{kThreads} * kCalls);
  EXPECT_EQ(lane->occupants(), 0u);
  // The other way round works too: a lane given up on is free for the next caller at once.
  LaneSlot after;
  EXPECT_TRUE(after.Enter(lane, absl::InfinitePast()));
}

}  // namespace
}  // namespace txfn::internal
