// The concurrent DurableQueue conformance tests; see
// txfn/testing/durable_queue_conformance.h. Sized to stay within a few
// seconds under ThreadSanitizer on two cores.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"
#include "lib/testing/queue_test_util.h"
#include "txfn/durable_queue.h"
#include "txfn/testing/durable_queue_conformance.h"

namespace txfn::testing {

namespace internal {
int LinkDurableQueueConcurrencyConformanceTests() { return 0; }
}  // namespace internal

void DurableQueueConcurrencyConformanceTest::SetUp() {
  ASSERT_TRUE(GetParam().make) << "QueueFactory::make is empty";
  queue_ = GetParam().make();
  ASSERT_NE(queue_, nullptr) << "QueueFactory::make returned nullptr";
}

void DurableQueueConcurrencyConformanceTest::TearDown() { queue_.reset(); }

namespace {

using internal::CallMaker;
using internal::kT0;

constexpr int kLessees = 4;

// A registry of who holds which call over which interval of (virtual) time:
// two lessees' lease intervals of one call must never overlap.
class Holders {
 public:
  // False if another lessee holds `id` over an interval that meets [from, until).
  bool Claim(const CallId& id, int lessee, absl::Time from, absl::Time until) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = held_.try_emplace(id, Hold{lessee, from, until});
    if (inserted) return true;
    Hold& h = it->second;
    const bool overlap = h.lessee != lessee && h.from < until && from < h.until;
    if (from >= h.from) h = Hold{lessee, from, until};  // keep the latest lease
    return !overlap;
  }

 private:
  struct Hold {
    int lessee;
    absl::Time from;
    absl::Time until;
  };
  std::mutex mu_;
  absl::flat_hash_map<CallId, Hold> held_;
};

// Lessees lease, sometimes "crash" (drop a lease without settling), ack or
// nack, concurrently. Time moves in phases: within a phase every lessee uses
// the same `now` (so the queue never sees time go backwards), between phases
// it moves on by 7 s (leases last 10 s). Every call must end acked exactly
// once, no two lessees may hold a call under overlapping leases, and stale
// tokens must be refused.
TEST_P(DurableQueueConcurrencyConformanceTest, LeasesAreExclusiveAndEveryCallIsAckedOnce) {
  DurableQueue& q = queue();
  constexpr int kCalls = 400;
  constexpr int kRoundsPerPhase = 6;
  constexpr int kMaxPhases = 300;
  constexpr absl::Duration kLease = absl::Seconds(10);
  constexpr absl::Duration kPhase = absl::Seconds(7);
  CallMaker maker(7);
  std::vector<Call> calls;
  for (int i = 0; i < kCalls; ++i) {
    Call c = maker.Make(i % 3 == 0 ? "a" : "b", kT0, absl::Hours(20));
    c.retry.max_attempts = 100;
    calls.push_back(std::move(c));
  }
  for (size_t i = 0; i < calls.size(); i += 50) {
    std::vector<Call> batch(calls.begin() + i, calls.begin() + std::min(calls.size(), i + 50));
    auto r = q.Enqueue(batch);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  std::atomic<int> acked{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> stale_accepted{0};
  std::atomic<int> errors{0};
  Holders holders;
  std::mutex acked_mu;
  absl::flat_hash_set<CallId> acked_ids;
  // Written only by the barrier's completion step, read after it.
  absl::Time phase_now = kT0;
  int phase = 0;
  bool done = false;
  std::barrier sync(kLessees, [&]() noexcept {
    ++phase;
    phase_now += kPhase;
    done = acked.load() == kCalls || phase >= kMaxPhases;
  });

  auto lessee = [&](int me) {
    std::mt19937 rng(me);
    std::vector<LeasedCall> dropped;  // leases this lessee "forgot" (crashed on)
    while (true) {
      const absl::Time now = phase_now;
      for (int round = 0; round < kRoundsPerPhase; ++round) {
        const int shard = static_cast<int>(rng() % q.shard_count());
        auto got = q.Lease({.shard = shard,
                            .functions = rng() % 4 == 0 ? std::vector<std::string>{"a"}
                                                        : std::vector<std::string>{},
                            .now = now,
                            .max = 1 + rng() % 8,
                            .lease_duration = kLease});
        if (!got.ok()) {
          ++errors;
          continue;
        }
        std::vector<Settlement> settle;
        for (const LeasedCall& l : *got) {
          if (!holders.Claim(l.call.id, me, now, l.expires)) ++overlaps;
          const uint32_t dice = rng() % 10;
          if (dice == 0) {
            dropped.push_back(l);  // crash: never settled by this lessee
          } else if (dice == 1) {
            // Due again only after the lease would have expired, so lease
            // intervals of one call never overlap legitimately.
            settle.push_back(Settlement::Nack(l.token, now + 2 * kLease));
          } else {
            settle.push_back(Settlement::Ack(l.token));
          }
        }
        if (settle.empty()) continue;
        auto results = q.Settle(settle, now);
        if (!results.ok()) {
          ++errors;
          continue;
        }
        for (size_t i = 0; i < settle.size(); ++i) {
          if (!(*results)[i].ok()) {
            ++errors;  // a live lease of this phase must settle
            continue;
          }
          if (settle[i].kind == Settlement::Kind::kAck) {
            ++acked;
            std::lock_guard<std::mutex> lock(acked_mu);
            if (!acked_ids.insert(settle[i].lease.id).second) ++overlaps;
          }
        }
      }
      // Forgotten leases are settled long after they expired: the queue must
      // refuse them (whether or not another lessee has the call by now).
      if (!dropped.empty()) {
        std::vector<Settlement> late;
        late.reserve(dropped.size());
        for (const LeasedCall& d : dropped) late.push_back(Settlement::Ack(d.token));
        auto r = q.Settle(late, dropped.back().expires + kLease);
        if (r.ok()) {
          for (const absl::Status& st : *r) {
            if (st.ok()) ++stale_accepted;
          }
        }
        dropped.clear();
      }
      sync.arrive_and_wait();
      if (done) break;
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(kLessees);
  for (int i = 0; i < kLessees; ++i) threads.emplace_back(lessee, i);
  for (auto& t : threads) t.join();

  // Drain what the lessees left (expired leases included).
  const absl::Time end = phase_now + absl::Hours(1);
  for (int s = 0; s < q.shard_count(); ++s) {
    while (true) {
      auto got = q.Lease({.shard = s, .now = end, .max = 100, .lease_duration = kLease});
      ASSERT_TRUE(got.ok()) << got.status();
      if (got->empty()) break;
      for (const LeasedCall& l : *got) {
        ASSERT_TRUE(q.Ack(l.token, end).ok());
        ++acked;
        if (!acked_ids.insert(l.call.id).second) ++overlaps;
      }
    }
  }
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(overlaps.load(), 0) << "a call was held by two lessees, or acked twice";
  EXPECT_EQ(stale_accepted.load(), 0) << "an expired lease's ACK was accepted";
  EXPECT_EQ(acked.load(), kCalls);
  EXPECT_EQ(acked_ids.size(), static_cast<size_t>(kCalls));
  auto dead = q.ListDeadLetters(CallId(), 100);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(dead->empty());
}

// Producers enqueue while consumers lease and ack: every call is delivered,
// none twice (leases are long: no expiry in this test).
TEST_P(DurableQueueConcurrencyConformanceTest, ProducersAndConsumersRaceWithoutLossOrDuplicates) {
  DurableQueue& q = queue();
  constexpr int kProducers = 2;
  constexpr int kPerProducer = 300;
  std::atomic<int> produced_batches_done{0};
  std::atomic<int> errors{0};
  std::mutex mu;
  absl::flat_hash_set<CallId> delivered;
  int duplicates = 0;

  std::vector<std::thread> threads;
  threads.reserve(kProducers + 2);
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      CallMaker maker(100 + p);
      for (int i = 0; i < kPerProducer; i += 10) {
        std::vector<Call> batch;
        batch.reserve(10);
        for (int j = 0; j < 10; ++j) batch.push_back(maker.Make("f"));
        if (!q.Enqueue(batch).ok()) ++errors;
      }
      ++produced_batches_done;
    });
  }
  for (int consumer = 0; consumer < 2; ++consumer) {
    threads.emplace_back([&] {
      while (true) {
        const bool producers_done = produced_batches_done.load() == kProducers;
        size_t got_total = 0;
        for (int s = 0; s < q.shard_count(); ++s) {
          auto got = q.Lease({.shard = s, .now = kT0, .max = 16, .lease_duration = absl::Hours(1)});
          if (!got.ok()) {
            ++errors;
            continue;
          }
          got_total += got->size();
          std::vector<Settlement> acks;
          for (const LeasedCall& l : *got) {
            acks.push_back(Settlement::Ack(l.token));
            std::lock_guard<std::mutex> lock(mu);
            if (!delivered.insert(l.call.id).second) ++duplicates;
          }
          if (!acks.empty() && !q.Settle(acks, kT0).ok()) ++errors;
        }
        if (producers_done && got_total == 0) break;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(duplicates, 0);
  EXPECT_EQ(delivered.size(), static_cast<size_t>(kProducers * kPerProducer));
}

}  // namespace
}  // namespace txfn::testing
