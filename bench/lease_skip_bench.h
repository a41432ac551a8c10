// bench/lease_skip_bench.h — the body of BM_LeaseSkippingABacklog, which txfn_bench_queue
// (in memory, SQLite) and txfn_bench_pg_queue (PostgreSQL) both run on their queues.
#ifndef TXFN_BENCH_LEASE_SKIP_BENCH_H_
#define TXFN_BENCH_LEASE_SKIP_BENCH_H_

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "bench/queue_bench_util.h"
#include "benchmark/benchmark.h"
#include "fmt/core.h"
#include "txfn/durable_queue.h"

namespace txfn::bench {

// Enqueues `backlog` calls of tenant "hog" due at `backlog_due` (deadline 20 hours after `t0`),
// then times a scheduler's poll per iteration: 16 calls of 16 other tenants enqueued, leased past
// "hog" (skipped; at most 8 a tenant) and ACKed, at virtual times from `t0` on. Sets the counter
// polls_per_s (wall clock); skips the benchmark with an error if the queue fails.
inline void PollPastABacklog(benchmark::State& state, DurableQueue& queue, int64_t backlog,
                             absl::Time backlog_due, absl::Time t0) {
  CallIdGenerator ids(5);
  for (int64_t done = 0; done < backlog;) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(backlog - done, 50'000));
    std::vector<Call> hog = NoOpCalls(ids, n, backlog_due, 10);
    for (Call& c : hog) {
      c.tenant = "hog";
      c.deadline = t0 + absl::Hours(20);
    }
    if (!queue.Enqueue(hog).ok()) return state.SkipWithError("Enqueue failed");
    done += static_cast<int64_t>(n);
  }
  constexpr size_t kPollCalls = 16;
  absl::Time now = t0;
  int64_t polls = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    now += absl::Milliseconds(1);
    std::vector<Call> calls = NoOpCalls(ids, kPollCalls, now, 10);
    for (size_t i = 0; i < calls.size(); ++i) calls[i].tenant = fmt::format("t{}", i);
    if (!queue.Enqueue(calls).ok()) return state.SkipWithError("Enqueue failed");
    auto leased = queue.Lease(
        {.shard = 0, .skip_tenants = {"hog"}, .now = now, .max = kPollCalls, .max_per_tenant = 8});
    if (!leased.ok() || leased->size() != kPollCalls) return state.SkipWithError("Lease failed");
    std::vector<Settlement> acks;
    for (const LeasedCall& l : *leased) acks.push_back(Settlement::Ack(l.token));
    if (!queue.Settle(acks, now).ok()) return state.SkipWithError("Settle failed");
    ++polls;
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  state.counters["polls_per_s"] = benchmark::Counter(static_cast<double>(polls) / elapsed.count());
}

}  // namespace txfn::bench

#endif  // TXFN_BENCH_LEASE_SKIP_BENCH_H_
