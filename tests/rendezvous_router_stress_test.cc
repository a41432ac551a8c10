// Concurrency stress for RendezvousRouter: acquire/release from several
// threads while another thread removes and re-adds nodes. Run under TSan.
//
// Invariant checked: no node state ever has more concurrent holders than its
// max_in_flight. Each node payload is a Slot the test owns; a worker bumps the
// Slot's holder count after Acquire succeeds and drops it before releasing, so
// holders <= the router's in-flight count <= the cap at every instant.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "txfn/rendezvous_router.h"

namespace txfn {
namespace {

struct Slot {
  int limit = 0;
  std::atomic<int> holders{0};
  std::atomic<int> max_holders{0};
};

using Router = RendezvousRouter<Slot*>;

constexpr int kWorkers = 4;
constexpr int kOpsPerWorker = 200000;
constexpr int kNodeIds = 6;
constexpr int kMaxReAdds = 200000;
// Workers keep going until the mutator has churned at least this often, so
// acquire/release always overlaps with add/remove.
constexpr int kMinChurns = 200;

TEST(RendezvousRouterStressTest, CapNeverExceededUnderChurn) {
  // Every Slot the mutator may ever use, allocated up front and owned here, so
  // a payload outlives every lease that points at it.
  std::vector<Slot> slots(kNodeIds + kMaxReAdds);
  Router router;
  for (int i = 0; i < kNodeIds; ++i) {
    slots[i].limit = 1 + i % 3;
    ASSERT_TRUE(router.AddNode(absl::StrCat("n", i), &slots[i], 1.0 + i % 2, slots[i].limit).ok());
  }

  std::atomic<bool> stop{false};
  std::atomic<int> violations{0};
  std::atomic<int64_t> granted{0};
  std::atomic<int64_t> exhausted{0};
  std::atomic<int> churns{0};
  std::atomic<bool> mutator_done{false};

  auto worker = [&](int seed) {
    std::mt19937 rng(seed);
    std::vector<Router::Lease> held;
    for (int op = 0; op < kOpsPerWorker || (churns.load() < kMinChurns && !mutator_done.load());
         ++op) {
      if (held.size() < 3 && rng() % 3 != 0) {
        absl::StatusOr<Router::Lease> lease = router.Acquire(absl::StrCat("tenant-", rng() % 16));
        if (!lease.ok()) {
          if (lease.status().code() != absl::StatusCode::kResourceExhausted) ++violations;
          ++exhausted;
          continue;
        }
        Slot* slot = lease->node();
        const int now = slot->holders.fetch_add(1) + 1;
        if (now > slot->limit) ++violations;
        int seen = slot->max_holders.load();
        while (now > seen && !slot->max_holders.compare_exchange_weak(seen, now)) {
        }
        held.push_back(*std::move(lease));
        ++granted;
      } else if (!held.empty()) {
        const size_t i = rng() % held.size();
        held[i].node()->holders.fetch_sub(1);
        held[i] = std::move(held.back());  // releases held[i]'s slot
        held.pop_back();
      }
    }
    for (auto& lease : held) lease.node()->holders.fetch_sub(1);
  };

  auto mutator = [&] {
    std::mt19937 rng(7);
    int next_slot = kNodeIds;
    while (!stop.load() && next_slot < static_cast<int>(slots.size())) {
      const std::string id = absl::StrCat("n", rng() % kNodeIds);
      if (router.size() > 1) {
        absl::Status removed = router.RemoveNode(id);
        if (!removed.ok() && removed.code() != absl::StatusCode::kNotFound) ++violations;
        if (removed.ok()) ++churns;
      }
      if (rng() % 2 == 0) {
        Slot& slot = slots[next_slot++];
        slot.limit = 1 + static_cast<int>(rng() % 3);
        absl::Status added = router.AddNode(id, &slot, 1.0 + rng() % 3, slot.limit);
        if (!added.ok() && added.code() != absl::StatusCode::kAlreadyExists) ++violations;
      }
      std::this_thread::yield();
    }
    mutator_done = true;
  };

  auto reader = [&] {
    while (!stop.load()) {
      const std::vector<std::string> ids = router.RankIds("tenant-3", kNodeIds);
      if (ids.empty() || ids.size() > static_cast<size_t>(kNodeIds)) ++violations;
      for (const auto& id : ids) {
        absl::StatusOr<int> in_flight = router.InFlight(id);
        if (in_flight.ok() && (*in_flight < 0 || *in_flight > 3)) ++violations;
      }
    }
  };

  std::vector<std::thread> threads;
  threads.reserve(kWorkers);
  for (int i = 0; i < kWorkers; ++i) threads.emplace_back(worker, 100 + i);
  std::thread churn(mutator);
  std::thread observe(reader);
  for (auto& t : threads) t.join();
  stop = true;
  churn.join();
  observe.join();

  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(granted.load(), 0);
  for (const Slot& slot : slots) {
    EXPECT_LE(slot.max_holders.load(), slot.limit);
    EXPECT_EQ(slot.holders.load(), 0);
  }
  // Every lease is gone, so every live node is back at zero.
  for (const auto& id : router.RankIds("x", kNodeIds)) EXPECT_EQ(*router.InFlight(id), 0);
  EXPECT_GE(churns.load(), kMinChurns);
  RecordProperty("churns", churns.load());
  RecordProperty("granted", static_cast<int>(granted.load()));
  RecordProperty("exhausted", static_cast<int>(exhausted.load()));
}

}  // namespace
}  // namespace txfn
