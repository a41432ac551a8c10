// Throughput of the IsolateScheduler against running the same work directly.
//
// The work: a request of one of 16 tenants (Zipfian, s = 1), which creates a
// fresh v8::Context and compiles and runs a trivial script in it.
//
//   BM_DirectIsolatePerTenant            baseline: one thread, no scheduler, one
//                                        isolate per tenant created up front
//                                        (all 16 fit: no eviction, no hand-off)
//   BM_SchedulerThroughput/threads:2     two client threads submit requests and
//                                        wait for each (closed loop) to a scheduler
//                                        with 2 workers and its default bound of
//                                        8 isolates (so cold tenants get evicted)
//   BM_SchedulerThroughputAllFit/threads:2  the same with 16 isolates: every
//                                        tenant keeps its isolate (scheduler
//                                        overhead and 2-worker parallelism only)
//
//   BM_VictimLatencyUnderAttack/attack:0 a victim tenant's requests one at a time
//                                        on a scheduler with 2 workers: p50/p99
//   BM_VictimLatencyUnderAttack/attack:1 the same while an attacker tenant keeps
//                                        4 requests that spin into their CPU
//                                        limit (100 ms) queued; reports the
//                                        victim's p50/p99 and their ratios to
//                                        attack:0's in the same run
//
// Counters: req_per_s (wall clock, all threads) and cpu_us_per_req (process
// CPU time per request, steadier on a shared machine); for the scheduler
// ratio_vs_direct = its req_per_s / the baseline's and cpu_ratio_vs_direct =
// its CPU per request / the baseline's (when both ran), the
// isolates created/evicted and the share of requests served by a reused
// isolate.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "txfn/isolate_scheduler.h"
#include "v8-array-buffer.h"
#include "v8-context.h"
#include "v8-isolate.h"
#include "v8-locker.h"
#include "v8-primitive.h"
#include "v8-script.h"

namespace txfn {
namespace {

constexpr int kTenants = 16;
constexpr char kScript[] = "let x = 0; for (let i = 0; i < 10; ++i) x += i; x";

// Zipfian (s = 1) over tenant indexes 0..kTenants-1.
class Zipf {
 public:
  explicit Zipf(uint32_t seed) : rng_(seed) {
    double sum = 0;
    for (int i = 1; i <= kTenants; ++i) sum += 1.0 / i;
    double acc = 0;
    for (int i = 1; i <= kTenants; ++i) {
      acc += 1.0 / i / sum;
      cdf_.push_back(acc);
    }
  }
  int Next() {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    for (int i = 0; i < kTenants; ++i) {
      if (u <= cdf_[i]) return i;
    }
    return kTenants - 1;
  }

 private:
  std::mt19937 rng_;
  std::vector<double> cdf_;
};

// The request body: fresh context, compile, run. Requires the isolate locked,
// entered and a HandleScope open.
void RunTrivialScript(v8::Isolate* isolate) {
  v8::HandleScope scope(isolate);
  v8::Local<v8::Context> context = v8::Context::New(isolate);
  v8::Context::Scope context_scope(context);
  v8::Local<v8::String> source = v8::String::NewFromUtf8Literal(isolate, kScript);
  v8::Local<v8::Script> script = v8::Script::Compile(context, source).ToLocalChecked();
  v8::Local<v8::Value> result = script->Run(context).ToLocalChecked();
  benchmark::DoNotOptimize(result);
}

std::vector<std::string> TenantNames() {
  std::vector<std::string> names;
  for (int i = 0; i < kTenants; ++i) names.push_back("tenant-" + std::to_string(i));
  return names;
}

// CPU time of the whole process (workers, clients, V8's background threads):
// per request, a measure that holds up on a machine shared with other jobs.
double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// State shared by the two benchmarks (for the ratio) and by a benchmark's threads.
struct Shared {
  double direct_req_per_s = 0;       // set by the baseline when it ran
  double direct_cpu_us_per_req = 0;  // likewise
  std::unique_ptr<IsolateScheduler> scheduler;
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> rejected{0};
  std::chrono::steady_clock::time_point start;
  double cpu_start = 0;
  double quiet_p50_ms = 0;  // set by BM_VictimLatencyUnderAttack/attack:0
  double quiet_p99_ms = 0;
};

void DirectIsolatePerTenant(benchmark::State& state, Shared* shared) {
  if (!InitializeV8().ok()) std::abort();
  std::unique_ptr<v8::ArrayBuffer::Allocator> allocator(
      v8::ArrayBuffer::Allocator::NewDefaultAllocator());
  std::vector<v8::Isolate*> isolates;
  for (int i = 0; i < kTenants; ++i) {
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator = allocator.get();
    params.constraints.ConfigureDefaultsFromHeapSize(0, size_t{64} << 20);
    isolates.push_back(v8::Isolate::New(params));
  }
  Zipf zipf(1);
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = ProcessCpuSeconds();
  for (auto _ : state) {
    v8::Isolate* isolate = isolates[zipf.Next()];
    v8::Locker locker(isolate);  // as the scheduler does (uncontended here)
    v8::Isolate::Scope isolate_scope(isolate);
    RunTrivialScript(isolate);
  }
  const double seconds = SecondsSince(start);
  const double cpu = ProcessCpuSeconds() - cpu_start;
  for (v8::Isolate* isolate : isolates) isolate->Dispose();
  shared->direct_req_per_s = static_cast<double>(state.iterations()) / seconds;
  shared->direct_cpu_us_per_req = cpu * 1e6 / static_cast<double>(state.iterations());
  state.counters["req_per_s"] = shared->direct_req_per_s;
  state.counters["cpu_us_per_req"] = shared->direct_cpu_us_per_req;
}

// max_isolates = 0: the scheduler's default bound (4 per worker = 8 < 16 tenants).
void SchedulerThroughput(benchmark::State& state, Shared* shared, int max_isolates) {
  if (state.thread_index() == 0) {
    auto scheduler = IsolateScheduler::Create(
        {.workers = 2,
         .max_isolates = max_isolates,
         // Closed loop: a client's previous request may still be releasing its
         // isolate when it submits the next, so allow two per client thread.
         .max_in_flight_per_tenant = 2 * state.threads()});
    if (!scheduler.ok()) std::abort();
    shared->scheduler = std::move(*scheduler);
    shared->requests = 0;
    shared->rejected = 0;
    shared->start = std::chrono::steady_clock::now();
    shared->cpu_start = ProcessCpuSeconds();
  }
  // The loop starts after every thread reached it (Google Benchmark's barrier).
  const std::vector<std::string> tenants = TenantNames();
  Zipf zipf(100 + state.thread_index());
  for (auto _ : state) {
    std::promise<void> done;
    std::future<void> future = done.get_future();
    absl::Status s = shared->scheduler->Submit(tenants[zipf.Next()], [&done](IsolateLease& lease) {
      RunTrivialScript(lease.isolate());
      done.set_value();
    });
    if (!s.ok()) {
      shared->rejected.fetch_add(1);
      continue;
    }
    future.wait();
    shared->requests.fetch_add(1, std::memory_order_relaxed);
  }
  // ... and ends after every thread left it.
  if (state.thread_index() == 0) {
    const double seconds = SecondsSince(shared->start);
    const double requests = static_cast<double>(shared->requests.load());
    const double req_per_s = requests / seconds;
    const double cpu_us_per_req = (ProcessCpuSeconds() - shared->cpu_start) * 1e6 / requests;
    IsolateSchedulerStats stats = shared->scheduler->stats();
    shared->scheduler.reset();
    state.counters["req_per_s"] = req_per_s;
    state.counters["cpu_us_per_req"] = cpu_us_per_req;
    if (shared->direct_req_per_s > 0) {
      state.counters["ratio_vs_direct"] = req_per_s / shared->direct_req_per_s;
      state.counters["cpu_ratio_vs_direct"] = cpu_us_per_req / shared->direct_cpu_us_per_req;
    }
    state.counters["isolates_created"] = static_cast<double>(stats.isolates_created);
    state.counters["isolates_evicted"] = static_cast<double>(stats.isolates_evicted);
    const double served = static_cast<double>(stats.isolates_created + stats.isolates_reused);
    state.counters["reused_share"] = served > 0 ? stats.isolates_reused / served : 0;
    state.counters["rejected"] = static_cast<double>(shared->rejected.load());
  }
}

// The victim's latency, with or without an attacker on the same scheduler.
void VictimLatencyUnderAttack(benchmark::State& state, Shared* shared) {
  const bool attack = state.range(0) != 0;
  struct AttackLimits : LimitEnforcer {
    absl::Duration CpuLimit(const std::string& tenant) const override {
      return tenant == "attacker" ? absl::Milliseconds(100) : absl::Seconds(1);
    }
  };
  auto scheduler = IsolateScheduler::Create(
      {.workers = 2, .max_in_flight_per_tenant = 8, .limits = std::make_shared<AttackLimits>()});
  if (!scheduler.ok()) std::abort();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> attacks{0};
  std::vector<std::thread> attackers;
  if (attack) {
    for (int i = 0; i < 4; ++i) {
      attackers.emplace_back([&] {
        while (!stop.load()) {
          std::promise<void> done;
          std::future<void> future = done.get_future();
          absl::Status s = (*scheduler)->Submit("attacker", [&done](IsolateLease& lease) {
            v8::HandleScope scope(lease.isolate());
            v8::Local<v8::Context> context = v8::Context::New(lease.isolate());
            v8::Context::Scope context_scope(context);
            v8::Local<v8::Script> script;
            if (v8::Script::Compile(context,
                                    v8::String::NewFromUtf8Literal(lease.isolate(), "for (;;) {}"))
                    .ToLocal(&script)) {
              v8::MaybeLocal<v8::Value> ignored = script->Run(context);  // terminated
              benchmark::DoNotOptimize(ignored);
            }
            done.set_value();
          });
          if (!s.ok()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
          }
          future.wait();
          attacks.fetch_add(1);
        }
      });
    }
    // Let the attack take hold before measuring.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }
  std::vector<double> latencies_ms;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    std::promise<void> done;
    std::future<void> future = done.get_future();
    absl::Status s = (*scheduler)->Submit("victim", [&done](IsolateLease& lease) {
      RunTrivialScript(lease.isolate());
      done.set_value();
    });
    if (!s.ok()) std::abort();
    future.wait();
    latencies_ms.push_back(SecondsSince(start) * 1e3);
  }
  stop = true;
  for (auto& t : attackers) t.join();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto at = [&](double p) {
    return latencies_ms[std::min(
        latencies_ms.size() - 1,
        static_cast<size_t>(p * static_cast<double>(latencies_ms.size())))];
  };
  const double p50 = at(0.5), p99 = at(0.99);
  state.counters["victim_p50_ms"] = p50;
  state.counters["victim_p99_ms"] = p99;
  if (!attack) {
    shared->quiet_p50_ms = p50;
    shared->quiet_p99_ms = p99;
  } else {
    state.counters["attacks"] = static_cast<double>(attacks.load());
    state.counters["terminated_cpu"] = static_cast<double>((*scheduler)->stats().terminated_cpu);
    if (shared->quiet_p50_ms > 0) {
      state.counters["p50_vs_quiet"] = p50 / shared->quiet_p50_ms;
      state.counters["p99_vs_quiet"] = p99 / shared->quiet_p99_ms;
    }
  }
}

// Registered in this order, so the baseline runs first and the scheduler's
// ratio can be computed in the same run.
[[maybe_unused]] const bool registered = [] {
  auto shared = std::make_shared<Shared>();
  benchmark::RegisterBenchmark("BM_DirectIsolatePerTenant", [shared](benchmark::State& state) {
    DirectIsolatePerTenant(state, shared.get());
  });
  benchmark::RegisterBenchmark("BM_SchedulerThroughput", [shared](benchmark::State& state) {
    SchedulerThroughput(state, shared.get(), 0);
  })->Threads(2);
  benchmark::RegisterBenchmark("BM_SchedulerThroughputAllFit", [shared](benchmark::State& state) {
    SchedulerThroughput(state, shared.get(), kTenants);
  })->Threads(2);
  benchmark::RegisterBenchmark(
      "BM_VictimLatencyUnderAttack",
      [shared](benchmark::State& state) { VictimLatencyUnderAttack(state, shared.get()); })
      ->ArgName("attack")
      ->Arg(0)
      ->Arg(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
}  // namespace txfn

BENCHMARK_MAIN();
