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
        slot.Enter(lanes.Predicted(key, absl::Now()));  // maybe another range's lane
        slot.Enter(lanes.OnConflict(
            key, ReadRange{.index = 1, .range = KeyRange::Point("r" + std::to_string(range))},
            absl::Now()));
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
        slot.Enter(lane);
        ++counter;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter, 8 * 5000);
  EXPECT_EQ(lane->occupants(), 0u);
}

}  // namespace
}  // namespace txfn::internal
