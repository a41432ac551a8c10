// Concurrency stress for the IsolateScheduler's policy (IsolatePool), without
// V8: submitter threads push requests of several tenants while worker threads
// acquire, "run" and release (sometimes disposing) isolates. Run under TSan.
//
// Invariants checked at every step:
//   - an isolate only ever serves the tenant it was created for;
//   - no isolate is held by two workers at once;
//   - live isolates never exceed max_isolates (counted by the test itself:
//     created minus disposed, as the workers do it);
//   - a tenant never has more than its running cap running, plus one request queued ahead
//     (SubmitAhead: one in 16 is);
//   - every admitted request runs exactly once, or, if its caller gave up on it (every
//     tenth does, at once or a moment after its submit), runs once or is dropped unrun.
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "txfn/internal/isolate_pool.h"

namespace txfn::internal {
namespace {

constexpr int kWorkers = 4;
constexpr int kSubmitters = 3;
constexpr int kTenants = 7;
constexpr int kMaxIsolates = 5;
constexpr int kCap = 3;      // in flight per tenant
constexpr int kRunning = 2;  // running per tenant
constexpr int kRequestsPerSubmitter = 20000;

struct FakeIsolate {
  std::string tenant;
  std::atomic<int> holders{0};
};

// Some requests are queued ahead (IsolatePool::SubmitAhead); none of those gives up.
bool IsAhead(int request) { return request % 16 == 1; }

TEST(IsolatePoolPolicyStressTest, InvariantsHoldUnderConcurrency) {
  // A memory budget too: isolates report 1 to 4 units; 12 fit.
  IsolatePool<int, FakeIsolate> pool({.max_isolates = kMaxIsolates,
                                      .queue_capacity = 64,
                                      .max_in_flight_per_tenant = kCap,
                                      .max_running_per_tenant = kRunning,
                                      .memory_budget_bytes = 12,
                                      .new_isolate_bytes = 2});
  const int total = kSubmitters * kRequestsPerSubmitter;
  std::vector<std::atomic<int>> runs(total);
  std::vector<std::atomic<bool>> given_up(total);
  std::vector<std::atomic<int>> running_per_tenant(kTenants);
  std::atomic<int> live{0};
  std::atomic<int> violations{0};
  std::atomic<int> admitted{0};
  std::atomic<int> executed{0};

  auto worker = [&](int seed) {
    std::mt19937 rng(seed);
    while (auto a = pool.Acquire()) {
      if (a->evicted) {
        if (a->evicted->holders.load() != 0) violations.fetch_add(1);
        a->evicted.reset();
        live.fetch_sub(1);
      }
      if (!a->isolate) {
        // (Isolates a Release evicts are counted out only once it returned,
        // so another worker may count a new one in first: up to one each.)
        if (live.fetch_add(1) + 1 > kMaxIsolates + kWorkers) violations.fetch_add(1);
        a->isolate = std::make_unique<FakeIsolate>();
        a->isolate->tenant = a->tenant;
      }
      if (a->isolate->holders.fetch_add(1) != 0) violations.fetch_add(1);
      if (a->isolate->tenant != a->tenant) violations.fetch_add(1);
      const int t = a->tenant[1] - '0';
      if (running_per_tenant[t].fetch_add(1) + 1 > kRunning + 1) violations.fetch_add(1);
      runs[a->request].fetch_add(1);
      if (rng() % 8 == 0) std::this_thread::yield();
      running_per_tenant[t].fetch_sub(1);
      a->isolate->holders.fetch_sub(1);
      executed.fetch_add(1);
      if (rng() % 50 == 0) {  // e.g. a heap limit hit: dispose it
        a->isolate.reset();
        live.fetch_sub(1);
      }
      for (auto& gone : pool.Release(a->isolate_id, std::move(a->isolate), 1 + rng() % 4)) {
        if (gone->holders.load() != 0) violations.fetch_add(1);
        live.fetch_sub(1);
      }
    }
  };

  auto submitter = [&](int s) {
    std::mt19937 rng(1000 + s);
    for (int i = 0; i < kRequestsPerSubmitter; ++i) {
      const int request = s * kRequestsPerSubmitter + i;
      const std::string tenant = "t" + std::to_string(rng() % kTenants);
      const bool gives_up = request % 10 == 0;
      for (;;) {
        absl::Status st =
            IsAhead(request) ? pool.SubmitAhead(tenant, request)
            : gives_up       ? pool.Submit(tenant, request,
                                           [&given_up, request] { return given_up[request].load(); })
                             : pool.Submit(tenant, request);
        if (st.ok()) {
          admitted.fetch_add(1);
          if (gives_up) {
            if (rng() % 2 == 0) std::this_thread::yield();
            given_up[request] = true;
          }
          break;
        }
        if (!absl::IsResourceExhausted(st)) {
          violations.fetch_add(1);
          return;
        }
        std::this_thread::yield();  // backpressure: try again
      }
    }
  };

  std::vector<std::thread> workers, submitters;
  for (int i = 0; i < kWorkers; ++i) workers.emplace_back(worker, i);
  for (int i = 0; i < kSubmitters; ++i) submitters.emplace_back(submitter, i);
  for (auto& t : submitters) t.join();
  pool.Shutdown();
  for (auto& t : workers) t.join();

  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(admitted.load(), total);
  IsolatePoolStats s = pool.stats();
  EXPECT_EQ(executed.load() + static_cast<int>(s.given_up), total);
  EXPECT_GT(s.given_up, 0u);
  int wrong = 0;
  for (int r = 0; r < total; ++r) wrong += runs[r].load() > 1 || (r % 10 != 0 && runs[r] != 1);
  EXPECT_EQ(wrong, 0) << "requests run twice, or not given up and not run";

  EXPECT_EQ(s.queue_length, 0u);
  EXPECT_EQ(s.busy_isolates, 0);
  EXPECT_TRUE(s.in_flight.empty());
  EXPECT_EQ(s.live_isolates, live.load());
  EXPECT_LE(s.live_isolates, kMaxIsolates);
  EXPECT_EQ(s.created - s.disposed, static_cast<uint64_t>(live.load()));
  EXPECT_GT(s.reused, 0u);
  EXPECT_GT(s.evicted, 0u);
  EXPECT_GT(s.evicted_for_memory, 0u);
  EXPECT_GT(s.waited_for_own, 0u) << "the patience path (policy step 3) should be exercised";
  auto idle = pool.TakeIdle();
  EXPECT_EQ(static_cast<int>(idle.size()), live.load());
}

}  // namespace
}  // namespace txfn::internal
