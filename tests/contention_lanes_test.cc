// Contention lanes (lib/contention_lanes.h): predictions, their expiry, the
// bounds, and turns in arrival order.
#include "lib/contention_lanes.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace txfn::internal {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

ReadRange Point(const std::string& key) {
  return ReadRange{.index = 1, .range = KeyRange::Point(key)};
}

TEST(ContentionLanesTest, AKeyThatConflictedIsPredictedIntoTheLaneOfItsRange) {
  ContentionLanes lanes(absl::Seconds(1));
  EXPECT_EQ(lanes.Predicted(7, kT0), nullptr);
  std::shared_ptr<Lane> a = lanes.OnConflict(7, Point("doc"), kT0);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(lanes.Predicted(7, kT0 + absl::Milliseconds(500)), a);
  // Another key that loses on the same range shares the lane; another range
  // gets its own.
  EXPECT_EQ(lanes.OnConflict(8, Point("doc"), kT0), a);
  EXPECT_NE(lanes.OnConflict(9, Point("other"), kT0), a);
  EXPECT_NE(lanes.OnConflict(9, ReadRange{.index = 2, .range = KeyRange::Point("doc")}, kT0), a);
  EXPECT_EQ(lanes.Predicted(1234, kT0), nullptr);
}

TEST(ContentionLanesTest, APredictionLapsesUnlessItsLaneIsBusy) {
  ContentionLanes lanes(absl::Seconds(1));
  std::shared_ptr<Lane> lane = lanes.OnConflict(7, Point("doc"), kT0);
  EXPECT_EQ(lanes.Predicted(7, kT0 + absl::Seconds(2)), nullptr);
  EXPECT_EQ(lanes.keys(), 0u);  // the lapsed prediction is gone

  // While a call holds the lane, a prediction is extended as it is used.
  (void)lanes.OnConflict(7, Point("doc"), kT0);
  LaneSlot holder;
  EXPECT_TRUE(holder.Enter(lane));
  EXPECT_EQ(lanes.Predicted(7, kT0 + absl::Milliseconds(900)), lane);
  EXPECT_EQ(lanes.Predicted(7, kT0 + absl::Milliseconds(1800)), lane);
  holder.Leave();
  EXPECT_EQ(lanes.Predicted(7, kT0 + absl::Milliseconds(2500)), lane);  // extended to 2.8 s
  EXPECT_EQ(lanes.Predicted(7, kT0 + absl::Milliseconds(3900)), nullptr);
}

TEST(ContentionLanesTest, BothMapsStayWithinTheirBoundAndHeldLanesSurvive) {
  ContentionLanes lanes(absl::Seconds(1), /*max_entries=*/64);
  LaneSlot holder;
  EXPECT_TRUE(holder.Enter(lanes.OnConflict(0, Point("held"), kT0)));
  for (uint64_t key = 1; key < 10'000; ++key) {
    (void)lanes.OnConflict(key, Point("doc" + std::to_string(key)), kT0);
    ASSERT_LE(lanes.keys(), 64u);
    ASSERT_LE(lanes.lanes(), 64u);
  }
  // The held lane is still usable by its holder and released cleanly.
  EXPECT_NE(holder.held(), nullptr);
  holder.Leave();
  EXPECT_EQ(holder.held(), nullptr);
}

TEST(ContentionLanesTest, ASlotHoldsOneLaneAtATime) {
  ContentionLanes lanes;
  std::shared_ptr<Lane> a = lanes.OnConflict(1, Point("a"), kT0);
  std::shared_ptr<Lane> b = lanes.OnConflict(2, Point("b"), kT0);
  LaneSlot slot;
  EXPECT_TRUE(slot.Enter(nullptr));
  EXPECT_EQ(slot.held(), nullptr);
  EXPECT_TRUE(slot.Enter(a));
  EXPECT_TRUE(slot.Enter(a));  // already there: no self-deadlock
  EXPECT_EQ(a->occupants(), 1u);
  EXPECT_TRUE(slot.Enter(b));  // leaves a first
  EXPECT_EQ(a->occupants(), 0u);
  EXPECT_EQ(b->occupants(), 1u);
  LaneSlot other;
  EXPECT_TRUE(other.Enter(a));  // free: does not wait
  EXPECT_EQ(other.held(), a.get());
}

// Waiters get their turns in the order they arrived.
TEST(ContentionLanesTest, TurnsAreTakenInArrivalOrder) {
  auto lane = std::make_shared<Lane>();
  LaneSlot first;
  EXPECT_TRUE(first.Enter(lane));
  std::vector<int> order;
  std::vector<std::thread> waiters;
  for (int i = 0; i < 6; ++i) {
    waiters.emplace_back([&, i] {
      LaneSlot slot;
      EXPECT_TRUE(slot.Enter(lane));
      order.push_back(i);  // inside the turn: exclusive
    });
    // The next waiter starts only once this one holds its ticket.
    while (lane->occupants() < static_cast<size_t>(i) + 2) std::this_thread::yield();
  }
  first.Leave();
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(lane->occupants(), 0u);
}

// A caller that may not block queues a callback; it gets its turn in arrival
// order with blocked callers, on the releasing thread, and releases it later.
TEST(ContentionLanesTest, QueuedCallbacksTakeTheirTurnsInOrderWithBlockedCallers) {
  Lane lane;
  ASSERT_TRUE(lane.AcquireOrQueue([] { ADD_FAILURE() << "the free turn is taken at once"; }));
  std::vector<std::string> order;
  bool second_holds = false;
  EXPECT_FALSE(lane.AcquireOrQueue([&] {
    order.push_back("queued 1");
    second_holds = true;
  }));
  std::thread blocked([&] {
    EXPECT_TRUE(lane.Acquire());
    order.push_back("blocked");
    lane.Release();
  });
  while (lane.occupants() < 3) std::this_thread::yield();
  EXPECT_FALSE(lane.AcquireOrQueue([&] { order.push_back("queued 2"); }));
  EXPECT_EQ(lane.occupants(), 4u);
  lane.Release();  // to "queued 1", run here
  EXPECT_TRUE(second_holds);
  EXPECT_EQ(order, std::vector<std::string>{"queued 1"});
  lane.Release();  // its release: to the blocked thread, which hands on to "queued 2"
  blocked.join();
  EXPECT_EQ(order, (std::vector<std::string>{"queued 1", "blocked", "queued 2"}));
  EXPECT_EQ(lane.occupants(), 1u);  // "queued 2" holds it
  lane.Release();
  EXPECT_EQ(lane.occupants(), 0u);
}

// A queued callback withdrawn before its turn never runs (it is destroyed at once) and the turn
// passes over it; one whose turn came cannot be withdrawn.
TEST(ContentionLanesTest, AWithdrawnCallbackNeverTakesItsTurn) {
  Lane lane;
  ASSERT_TRUE(lane.AcquireOrQueue([] {}));
  std::vector<std::string> order;
  auto held = std::make_shared<int>(0);
  uint64_t first = 0, second = 0;
  EXPECT_FALSE(lane.AcquireOrQueue([&, held] { order.push_back("first"); }, &first));
  EXPECT_FALSE(lane.AcquireOrQueue([&] { order.push_back("second"); }, &second));
  EXPECT_NE(first, second);
  EXPECT_EQ(held.use_count(), 2);
  EXPECT_TRUE(lane.Withdraw(first));
  EXPECT_EQ(held.use_count(), 1) << "destroyed by Withdraw";
  EXPECT_FALSE(lane.Withdraw(first)) << "once";
  EXPECT_EQ(lane.occupants(), 2u);
  lane.Release();  // to "second"
  EXPECT_EQ(order, std::vector<std::string>{"second"});
  EXPECT_FALSE(lane.Withdraw(second)) << "its turn came";
  lane.Release();
  EXPECT_EQ(lane.occupants(), 0u);
}

// A caller waiting for a turn gives up at its deadline: it leaves the queue without holding
// anything, and the turn passes over it to the callers behind it. A free turn is taken even
// past the deadline (the caller checks its deadline itself; taking a free turn holds nobody).
TEST(ContentionLanesTest, AWaiterGivesUpAtItsDeadlineAndTheTurnPassesOverIt) {
  auto lane = std::make_shared<Lane>();
  LaneSlot holder;
  ASSERT_TRUE(holder.Enter(lane, absl::InfinitePast()));  // free: taken
  std::vector<std::string> order;
  std::thread patient([&] {
    LaneSlot slot;
    EXPECT_TRUE(slot.Enter(lane));
    order.push_back("patient");
  });
  while (lane->occupants() < 2) std::this_thread::yield();
  LaneSlot late;
  EXPECT_FALSE(late.Enter(lane, absl::Now() - absl::Milliseconds(1)));  // already past
  EXPECT_EQ(late.held(), nullptr);
  const absl::Time start = absl::Now();
  LaneSlot hurried;
  EXPECT_FALSE(hurried.Enter(lane, start + absl::Milliseconds(30)));
  EXPECT_GE(absl::Now(), start + absl::Milliseconds(30));
  EXPECT_EQ(hurried.held(), nullptr);
  EXPECT_EQ(lane->occupants(), 2u) << "the holder and the patient waiter";
  std::thread behind([&] {
    LaneSlot slot;
    EXPECT_TRUE(slot.Enter(lane, absl::Now() + absl::Hours(1)));
    order.push_back("behind");
  });
  while (lane->occupants() < 3) std::this_thread::yield();
  holder.Leave();
  patient.join();
  behind.join();
  EXPECT_EQ(order, (std::vector<std::string>{"patient", "behind"}));
  EXPECT_EQ(lane->occupants(), 0u);
}

}  // namespace
}  // namespace txfn::internal
