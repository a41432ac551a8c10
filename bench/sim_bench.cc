// The simulator's own speed (part of txfn_bench_queue; see queue_bench.cc for
// the rest of the binary).
//
//   BM_SimulatedEventsPerSecond
//       events/s of txfn-sim's event loop driving one region of 10,000 model
//       workers x 8 slots through txfn's real Submitter, InMemoryQueue and
//       CallScheduler: the XFaaS workload mix (5,000 functions) offered at
//       70% of the region's capacity, each iteration 5 s of virtual time.
//       Counter events_per_s (wall clock, like the other *_per_s counters).
//       After the timed iterations it runs its baseline: the bare event loop
//       with the same number of pending events, each a no-op that only
//       re-arms itself at a drawn time (the heap work without the scheduler).
//       Counters bare_events_per_s and bare_over_sim (how many times faster
//       the bare loop is: the cost the scheduler, queue and model add per
//       event). Both live in one benchmark because the binary's ratio report
//       is queue_bench.cc's.
//
// The region is built and warmed up (60 virtual seconds) before timing, so
// the figure is the steady loop, not the set-up of 10,000 workers.
#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "tools/sim/scenario_util.h"
#include "tools/sim/sim.h"

namespace txfn::sim {
namespace {

constexpr int kWorkers = 10'000;
constexpr int kSlots = 8;
constexpr double kLoad = 0.7;
const absl::Duration kStep = absl::Seconds(5);     // virtual time per iteration
const absl::Duration kWarmUp = absl::Seconds(60);  // before timing

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The bare loop's events/s with `pending` events in flight, for `events`.
double BareEventsPerSecond(size_t pending, uint64_t events) {
  VirtualClock clock(Start());
  EventLoop loop(&clock);
  // Durations drawn up front so the handlers do no more than re-arm.
  std::mt19937_64 rng(1);
  std::exponential_distribution<double> exp(1.0 / 20);
  std::vector<absl::Duration> d(4096);
  for (absl::Duration& x : d) x = absl::Seconds(exp(rng));
  struct Rearm {
    EventLoop* loop;
    const std::vector<absl::Duration>* d;
    size_t i;
    void operator()() { loop->After((*d)[i % d->size()], Rearm{loop, d, i + 7919}); }
  };
  for (size_t i = 0; i < pending; ++i) loop.After(d[i % d.size()], Rearm{&loop, &d, i});
  const auto start = std::chrono::steady_clock::now();
  absl::Time until = clock.Now();
  while (loop.events_run() < events) {
    until += absl::Seconds(1);
    loop.RunUntil(until);
  }
  return static_cast<double>(loop.events_run()) / Since(start);
}

void BM_SimulatedEventsPerSecond(benchmark::State& state) {
  VirtualClock clock(Start());
  EventLoop loop(&clock);
  WorkloadOptions wo;
  wo.functions = 5000;
  Workload w(wo, 1);
  // The received rate that offers kLoad of the region's slots.
  w.set_calls_per_second(kLoad * kWorkers * kSlots / w.MeanCostSeconds());
  RegionOptions ro;
  ro.workers = kWorkers;
  ro.slots = kSlots;
  ro.config = QuotaConfig(w, w.options().calls_per_second, 3, 3);
  ro.release_delay = absl::Minutes(30);
  // Lease enough per tick for ~2,000 calls/s: the defaults (one shard, 64 a
  // poll) admit at most a few hundred a second and would leave the region idle.
  ro.shards = 4;
  ro.lease_batch = 1000;
  ro.max_buffered = 20'000;
  ro.max_buffered_per_function = 512;
  Region region(&loop, &clock, ro, nullptr, 1);
  ScheduleArrivals(&loop, &w, &region, absl::Seconds(1), absl::InfiniteFuture(), nullptr, nullptr);
  region.Start();
  loop.RunUntil(clock.Now() + kWarmUp);

  const uint64_t events0 = loop.events_run();
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) loop.RunUntil(clock.Now() + kStep);
  const double wall = Since(start);
  const uint64_t events = loop.events_run() - events0;
  const double sim = static_cast<double>(events) / wall;
  state.counters["events_per_s"] = benchmark::Counter(sim);
  state.counters["busy_slots"] = benchmark::Counter(region.Utilization() * region.slots());
  state.counters["calls_per_s_offered"] = benchmark::Counter(w.options().calls_per_second);
  // The baseline: as many events as the timed part ran (at least 100k, so a
  // smoke run still measures something), at the same heap size.
  const auto pending = static_cast<size_t>(std::max(1.0, region.Utilization() * region.slots()));
  const double bare = BareEventsPerSecond(pending, std::max<uint64_t>(events, 100'000));
  state.counters["bare_events_per_s"] = benchmark::Counter(bare);
  state.counters["bare_over_sim"] = benchmark::Counter(sim > 0 ? bare / sim : 0);
}
BENCHMARK(BM_SimulatedEventsPerSecond)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace txfn::sim
