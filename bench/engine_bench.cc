// The embedded engine end to end: Engine::Query / Engine::Mutation, from the
// caller's thread through the scheduler, V8, the transaction, the committer
// and the storage.
//
// BM_EngineQuery/storage:{memory,sqlite}: a one-document indexed query
//   (withIndex(...).unique()) on a 1,000-document table. Counters: p50_us,
//   p99_us (goal: p50 < 1 ms). Baseline in the same run: direct_p50_us, the
//   same read done directly on a Transaction at the engine's latest snapshot
//   (no scheduler, no V8); js_overhead_us = p50_us - direct_p50_us.
// BM_EngineMutation/storage:sqlite/threads:{1,2}: non-conflicting inserts on
//   SQLite with synchronous=FULL (each Storage::Write is one fsync).
//   Counter commits_per_fsync = committer commits / batches during the run
//   (goal > 1.5 at 2 threads; threads:1 is the baseline, ~1 by
//   construction), plus p50_us/p99_us and, at 2 and 8 threads,
//   vs_1_thread (commits/s over the 1-thread run's).
// BM_EngineQueryManyTenants/tenants:{8,1000}: the same kind of query spread
//   uniformly over N tenants (each with its own module and data) from one
//   thread, on the memory storage with the scheduler's default bounds.
//   Counters: p50_us, p99_us; for 1000 vs_8_p50 = its p50 / the 8-tenant
//   run's (goal <= 2), live_isolates and rss_mib_per_isolate (resident
//   memory added by the tenants' isolates, per live isolate).
// BM_EngineRotatingTenants/idle_timeout:{1s,infinite}: 10,000 tenants used
//   in turn on SQLite (created, then one SetEnabled commit each), 10 ms of the
//   committer's (fake) clock apart, then each opened again (Latest); a tenant
//   sweep every 50. Baseline: infinite, today's behaviour before issue 19
//   (nothing is closed). Counters: max_open (open tenants at any sweep),
//   closed_idle, rss_kib_per_tenant (resident memory added over the run per
//   tenant used), history_keys at the end.
// BM_EngineMutationContended/threads:2: every mutation increments one counter
//   document (SQLite, synchronous=FULL). Counters conflicts_per_commit,
//   retries_per_commit, aborted (calls that gave up after the retry limit).
// BM_EngineDeployLargeTable/docs:{1000,100000}: deploys over a table of N
//   documents on SQLite (synchronous=NORMAL). Iteration time (manual): a
//   code-only deploy (same schema, one module changed); counter
//   code_only_vs_1000 = its mean / the 1,000-document run's (goal ~1:
//   independent of the table's size). add_index_ms: a deploy adding an
//   index on the table (a backfill of every document), and
//   backfill_docs_per_s = N / that time.
// BM_EngineScheduledMutation/storage:sqlite/threads:{1,2,8}: the same trivial
//   insert as BM_EngineMutation, submitted with Engine::Submit (durable in
//   the engine's SqliteQueue, synchronous=FULL) and run, committed
//   with its call record and acknowledged by the engine's scheduler; each
//   thread submits, and the run ends when every call has ended. Counters
//   calls_per_s and vs_direct = calls_per_s / BM_EngineMutation's
//   commits_per_s at the same thread count in this run (goal >= 0.5); p50_us
//   and p99_us are Submit's latency (until the call is durable).
// BM_EngineScheduledBacklog/calls:{2000,100000}: the time to drain N trivial
//   mutations already in the queue (SQLite, synchronous=NORMAL), from the
//   engine's opening. Counters drain_s, calls_per_s, and the baseline
//   direct_calls_per_s (N/10 of the same mutations through MutationAsync,
//   64 in flight) with vs_direct.
// BM_EngineMutationHot/threads:{1,32}: the same, one document patched by 1
//   and by 32 threads. Counters commits_per_s and aborted_share (calls that
//   ended Aborted / calls); the 32-thread run's vs_1_thread = its
//   commits_per_s / the 1-thread run's (goal >= 0.8, aborted_share 0).
// BM_EngineHotBurst/calls:32: a burst on a hot document, as a server sees one: 32 threads
//   each make one blocking call of a mutation that reads the counter, computes for a few
//   milliseconds and increments it, all at once. Iteration time (manual): the burst's wall time.
//   Baseline in the same iteration: the same 32 calls one after another on one thread
//   (serial_ms); vs_serial = burst / serial (goal ~1: contention degrades to serial
//   throughput, no run is wasted on a snapshot that was stale before it began). Counters
//   conflicts_per_call and aborted.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "bench/engine_query_bench.h"
#include "benchmark/benchmark.h"
#include "tests/resident_memory.h"
#include "txfn/engine.h"
#include "txfn/sqlite_engine.h"
#include "txfn/sqlite_queue.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

using bench::kModule;
using bench::kSchema;

// A scratch directory on disk (not tmpfs, so fsync costs what it costs).
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::current_path() / "txfn_engine_bench_XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  std::string File(const char* name) const { return path_ + "/" + name; }
  bool ok() const { return !path_.empty(); }

 private:
  std::string path_;
};

struct Fixture {
  ScratchDir dir;
  std::unique_ptr<Engine> engine;
  std::string counter_id;
  std::atomic<uint64_t> next_key{0};
  // Set by thread 0 around the timed loop.
  EngineStats before;
};

std::unique_ptr<Fixture> MakeFixture(EngineStorage storage, benchmark::State& state) {
  auto f = std::make_unique<Fixture>();
  EngineOptions options;
  options.storage = storage;
  options.path = f->dir.File("engine.db");
  options.sqlite.synchronous = SqliteOptions::Synchronous::kFull;
  options.scheduler.workers = 2;
  auto engine = Engine::Open(options);
  if (!engine.ok()) {
    state.SkipWithError(engine.status().ToString().c_str());
    return nullptr;
  }
  f->engine = *std::move(engine);
  absl::StatusOr<std::string> counter = bench::SeedEngineBench(*f->engine);
  if (!counter.ok()) {
    state.SkipWithError(counter.status().ToString().c_str());
    return nullptr;
  }
  f->counter_id = *std::move(counter);
  return f;
}

// m:slowBump's loop: a few milliseconds of JavaScript (serial_ms / 32 is a call's whole cost,
// the fsync of its commit included).
constexpr int64_t kHotBurstSpins = 400'000;

using bench::Percentile;
using bench::ReportLatency;

void BM_EngineQuery(benchmark::State& state, EngineStorage storage) {
  std::unique_ptr<Fixture> f = MakeFixture(storage, state);
  if (f == nullptr) return;
  bench::RunEngineQuery(state, *f->engine);
}

constexpr const char* kTenantModule = R"JS(
import { query, mutation } from "txfn/server";
export const get = query(async (ctx, { key }) =>
  ctx.db.query("items").withIndex("by_key", (q) => q.eq("key", key)).unique());
export const put = mutation(async (ctx, { key, v }) => ctx.db.insert("items", { key, v }));
)JS";

double eight_tenants_p50_us = 0;  // set by /tenants:8, registered first

void BM_EngineQueryManyTenants(benchmark::State& state) {
  const int tenants = static_cast<int>(state.range(0));
  const size_t rss_start = testing::ResidentBytes();
  EngineOptions options;
  options.storage = EngineStorage::kMemory;
  options.scheduler.workers = 2;
  auto engine = Engine::Open(options);
  if (!engine.ok()) return state.SkipWithError(engine.status().ToString().c_str());
  std::vector<std::string> names;
  for (int i = 0; i < tenants; ++i) {
    names.push_back("tenant" + std::to_string(i));
    absl::Status s = (*engine)->CreateTenant(names.back());
    if (s.ok()) s = (*engine)->DeployJson(names.back(), {{"m.js", kTenantModule}}, kSchema);
    for (int k = 0; s.ok() && k < 3; ++k) {
      s = (*engine)
              ->Mutation(names.back(), "m:put",
                         Value::FromObject({{"key", Value::String("k" + std::to_string(k))},
                                            {"v", Value::Int64(k)}}))
              .status();
    }
    if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
  }
  const Value args = Value::FromObject({{"key", Value::String("k1")}});
  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  std::vector<double> us;
  us.reserve(1 << 16);
  for (auto _ : state) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    const std::string& tenant = names[rng % names.size()];
    absl::Time start = absl::Now();
    absl::StatusOr<CallResult> r = (*engine)->Query(tenant, "m:get", args);
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
  ReportLatency(state, us);
  const double p50 = Percentile(us, 0.5);
  if (tenants == 8) eight_tenants_p50_us = p50;
  if (tenants != 8 && eight_tenants_p50_us > 0) {
    state.counters["vs_8_p50"] = p50 / eight_tenants_p50_us;
  }
  const IsolateSchedulerStats stats = (*engine)->stats().scheduler;
  state.counters["live_isolates"] = stats.live_isolates;
  state.counters["isolates_created"] = static_cast<double>(stats.isolates_created);
  const size_t rss = testing::ResidentBytes();
  if (stats.live_isolates > 0 && rss > rss_start) {
    state.counters["rss_mib_per_isolate"] =
        static_cast<double>(rss - rss_start) / stats.live_isolates / (1 << 20);
  }
}

constexpr const char* kLargeTableModule = R"JS(
import { mutation } from "txfn/server";
export const fill = mutation(async (ctx, { from, n }) => {
  for (let i = from; i < from + n; i++) {
    await ctx.db.insert("items", { key: "k" + i, v: BigInt(i) });
  }
});
)JS";

std::string LargeTableSchema(bool with_index) {
  return std::string(R"({"tables": {"items": {"fields": {"key": "string", "v": "int64"})") +
         (with_index ? R"(, "indexes": {"by_v": ["v"]})" : "") + "}}}";
}

void BM_EngineDeployLargeTable(benchmark::State& state, double* code_only_1000_ms) {
  const int docs = static_cast<int>(state.range(0));
  ScratchDir dir;
  EngineOptions options;
  options.storage = EngineStorage::kSqlite;
  options.path = dir.File("engine.db");
  options.sqlite.synchronous = SqliteOptions::Synchronous::kNormal;
  auto engine = Engine::Open(options);
  absl::Status s = engine.ok() ? (*engine)->CreateTenant("big") : engine.status();
  const std::map<std::string, std::string> modules = {{"m.js", kLargeTableModule}};
  if (s.ok()) s = (*engine)->DeployJson("big", modules, LargeTableSchema(false));
  for (int from = 0; s.ok() && from < docs; from += 5000) {
    s = (*engine)
            ->Mutation("big", "m:fill",
                       Value::FromObject({{"from", Value::Float64(from)},
                                          {"n", Value::Float64(std::min(5000, docs - from))}}))
            .status();
  }
  if (!s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  double code_only_total_ms = 0;
  double add_index_total_ms = 0;
  int version = 0;
  for (auto _ : state) {
    // A code-only change: the same schema, a module edited.
    std::map<std::string, std::string> edited = modules;
    edited["m.js"] += "// edit " + std::to_string(++version) + "\n";
    absl::Time start = absl::Now();
    s = (*engine)->DeployJson("big", edited, LargeTableSchema(false));
    const double code_only_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    state.SetIterationTime(code_only_ms / 1e3);
    code_only_total_ms += code_only_ms;
    // Adding an index backfills it; dropping it again (untimed) resets.
    start = absl::Now();
    if (s.ok()) s = (*engine)->DeployJson("big", edited, LargeTableSchema(true));
    add_index_total_ms += absl::ToDoubleMilliseconds(absl::Now() - start);
    if (s.ok()) s = (*engine)->DeployJson("big", edited, LargeTableSchema(false));
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
  }
  const double n = static_cast<double>(state.iterations());
  const double code_only_ms = code_only_total_ms / n;
  const double add_index_ms = add_index_total_ms / n;
  if (docs == 1000) *code_only_1000_ms = code_only_ms;
  state.counters["code_only_ms"] = code_only_ms;
  if (*code_only_1000_ms > 0)
    state.counters["code_only_vs_1000"] = code_only_ms / *code_only_1000_ms;
  state.counters["add_index_ms"] = add_index_ms;
  state.counters["backfill_docs_per_s"] = add_index_ms > 0 ? docs / (add_index_ms / 1e3) : 0;
}

// Shared by the threads of one run (created by thread 0 before the loop; the
// loop's start is a barrier).
struct MutationRun {
  std::unique_ptr<Fixture> fixture;
  double one_thread_commits_per_s = 0;             // of this benchmark's threads:1 run
  std::map<int, double> commits_per_s_by_threads;  // of each thread count's run
};

void BM_EngineMutation(benchmark::State& state, MutationRun* run, bool contended) {
  if (state.thread_index() == 0) {
    run->fixture = MakeFixture(EngineStorage::kSqlite, state);
    if (run->fixture != nullptr) run->fixture->before = run->fixture->engine->stats();
  }
  std::vector<double> us;
  us.reserve(1 << 14);
  int64_t aborted = 0;
  absl::Time start_all = absl::InfiniteFuture();
  for (auto _ : state) {
    if (start_all == absl::InfiniteFuture()) start_all = absl::Now();
    Fixture* f = run->fixture.get();
    if (f == nullptr) {
      state.SkipWithError("no fixture");
      break;
    }
    absl::Time start = absl::Now();
    absl::StatusOr<CallResult> r =
        contended
            ? f->engine->Mutation("bench", "m:bump",
                                  Value::FromObject({{"id", Value::String(f->counter_id)}}))
            : f->engine->Mutation(
                  "bench", "m:put",
                  Value::FromObject({{"key", Value::String("n" + std::to_string(f->next_key++))},
                                     {"v", Value::Int64(1)}}));
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!r.ok()) {
      if (contended && absl::IsAborted(r.status())) {
        ++aborted;
        continue;
      }
      state.SkipWithError(r.status().ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  ReportLatency(state, us);  // per thread; averaged over threads by the library
  state.counters["aborted"] = benchmark::Counter(static_cast<double>(aborted));
  if (contended) {  // averaged over the threads: each thread's share
    state.counters["aborted_share"] = benchmark::Counter(
        state.iterations() > 0 ? static_cast<double>(aborted) / state.iterations() : 0,
        benchmark::Counter::kAvgThreads);
  }
  if (state.thread_index() == 0 && run->fixture != nullptr) {
    EngineStats after = run->fixture->engine->stats();
    const EngineStats& b = run->fixture->before;
    const double commits = static_cast<double>(after.committer.commits - b.committer.commits);
    const double batches = static_cast<double>(after.committer.batches - b.committer.batches);
    const double threads = state.threads();
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start_all);
    // Only thread 0 reports these; kAvgThreads divides by the thread count,
    // so they are scaled by it to print the plain ratio.
    const double commits_per_s = seconds > 0 ? commits / seconds : 0;
    state.counters["commits_per_s"] =
        benchmark::Counter(commits_per_s * threads, benchmark::Counter::kAvgThreads);
    run->commits_per_s_by_threads[state.threads()] = commits_per_s;
    if (state.threads() == 1) {
      run->one_thread_commits_per_s = commits_per_s;
    } else if (run->one_thread_commits_per_s > 0) {
      state.counters["vs_1_thread"] = benchmark::Counter(
          commits_per_s / run->one_thread_commits_per_s * threads, benchmark::Counter::kAvgThreads);
    }
    state.counters["commits_per_fsync"] = benchmark::Counter(
        batches > 0 ? commits / batches * threads : 0, benchmark::Counter::kAvgThreads);
    if (contended) {
      const double conflicts = static_cast<double>(after.conflicts - b.conflicts);
      const double retries = static_cast<double>(after.retries - b.retries);
      state.counters["conflicts_per_commit"] = benchmark::Counter(
          commits > 0 ? conflicts / commits * threads : 0, benchmark::Counter::kAvgThreads);
      state.counters["retries_per_commit"] = benchmark::Counter(
          commits > 0 ? retries / commits * threads : 0, benchmark::Counter::kAvgThreads);
    }
  }
}

// Calls/s of trivial mutations submitted to the queue and run by the
// engine's scheduler, against the direct rate of the same thread count.
struct ScheduledRun {
  std::unique_ptr<Fixture> fixture;
  const MutationRun* direct = nullptr;  // BM_EngineMutation's, for vs_direct
  std::atomic<int> threads_done{0};
};

// Waits until the engine has ended `calls` queued calls since `before`
// (or `limit` passed); false on timeout.
bool WaitForQueuedCalls(Engine& engine, const EngineStats& before, uint64_t calls,
                        absl::Duration limit = absl::Minutes(1)) {
  const absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    const QueuedCallStats q = engine.stats().queued;
    if (q.succeeded + q.failed - before.queued.succeeded - before.queued.failed >= calls) {
      return true;
    }
    absl::SleepFor(absl::Microseconds(200));
  }
  return false;
}

void BM_EngineScheduledMutation(benchmark::State& state, ScheduledRun* run) {
  if (state.thread_index() == 0) {
    run->fixture = MakeFixture(EngineStorage::kSqlite, state);
    run->threads_done = 0;
    if (run->fixture != nullptr) run->fixture->before = run->fixture->engine->stats();
  }
  std::vector<double> us;
  us.reserve(1 << 14);
  absl::Time start_all = absl::InfiniteFuture();
  for (auto _ : state) {
    if (start_all == absl::InfiniteFuture()) start_all = absl::Now();
    Fixture* f = run->fixture.get();
    if (f == nullptr) {
      state.SkipWithError("no fixture");
      break;
    }
    const absl::Time start = absl::Now();
    absl::StatusOr<CallId> id = f->engine->Submit(
        "bench", "m:put",
        Value::FromObject(
            {{"key", Value::String("s" + std::to_string(f->next_key++))}, {"v", Value::Int64(1)}}));
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!id.ok()) {
      state.SkipWithError(id.status().ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  ReportLatency(state, us);  // of Submit (until the call is durable in the queue)
  ++run->threads_done;
  if (state.thread_index() != 0 || run->fixture == nullptr) return;
  // Thread 0: once every thread submitted its calls, the time until the
  // engine has run them all.
  while (run->threads_done.load() < state.threads()) absl::SleepFor(absl::Microseconds(100));
  Engine& engine = *run->fixture->engine;
  const EngineStats& before = run->fixture->before;
  const uint64_t calls = engine.stats().queued.submitted - before.queued.submitted;
  if (!WaitForQueuedCalls(engine, before, calls)) {
    state.SkipWithError("the queued calls did not all end within a minute");
    return;
  }
  const EngineStats after = engine.stats();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start_all);
  const double threads = state.threads();
  const double calls_per_s = seconds > 0 ? static_cast<double>(calls) / seconds : 0;
  state.counters["calls_per_s"] =
      benchmark::Counter(calls_per_s * threads, benchmark::Counter::kAvgThreads);
  const double failed = static_cast<double>(after.queued.failed - before.queued.failed);
  state.counters["failed"] = benchmark::Counter(failed * threads, benchmark::Counter::kAvgThreads);
  auto direct = run->direct->commits_per_s_by_threads.find(state.threads());
  if (direct != run->direct->commits_per_s_by_threads.end() && direct->second > 0) {
    state.counters["vs_direct"] =
        benchmark::Counter(calls_per_s / direct->second * threads, benchmark::Counter::kAvgThreads);
  }
  const double commits = static_cast<double>(after.committer.commits - before.committer.commits);
  const double batches = static_cast<double>(after.committer.batches - before.committer.batches);
  state.counters["commits_per_fsync"] = benchmark::Counter(
      batches > 0 ? commits / batches * threads : 0, benchmark::Counter::kAvgThreads);
}

// The time the engine takes to drain N trivial calls already in its queue
// (SQLite, synchronous=NORMAL: no fsync per commit, so this measures the
// scheduler, the runs and the queue's own work). Baseline in the same run:
// direct_calls_per_s, N/10 of the same mutations through
// Engine::MutationAsync, 64 in flight.
void BM_EngineScheduledBacklog(benchmark::State& state) {
  const int calls = static_cast<int>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    ScratchDir dir;
    const std::string path = dir.File("backlog.db");
    EngineOptions options;
    options.scheduler.workers = 2;
    options.sqlite.synchronous = SqliteOptions::Synchronous::kNormal;
    SqliteOptions sqlite;
    sqlite.synchronous = SqliteOptions::Synchronous::kNormal;
    double direct_calls_per_s = 0;
    {
      // Set up the tenant, and measure the direct baseline.
      auto engine = OpenSqliteEngine(path, options, sqlite);
      absl::Status s = engine.ok() ? (*engine)->CreateTenant("bench") : engine.status();
      if (s.ok()) s = (*engine)->DeployJson("bench", {{"m.js", kModule}}, kSchema);
      if (!s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        return;
      }
      const int direct = std::max(calls / 10, 100);
      std::atomic<int> left{direct};
      std::atomic<int> in_flight{0};
      const absl::Time start = absl::Now();
      for (int i = 0; i < direct; ++i) {
        while (in_flight.load() >= 64) absl::SleepFor(absl::Microseconds(50));
        ++in_flight;
        absl::Status submitted = (*engine)->MutationAsync(
            "bench", "m:put",
            Value::FromObject(
                {{"key", Value::String("d" + std::to_string(i))}, {"v", Value::Int64(1)}}),
            [&](absl::StatusOr<CallResult>) {
              --in_flight;
              --left;
            });
        if (!submitted.ok()) {
          --in_flight;
          --left;
        }
      }
      while (left.load() > 0) absl::SleepFor(absl::Microseconds(100));
      direct_calls_per_s = direct / absl::ToDoubleSeconds(absl::Now() - start);
      (void)(*engine)->StopQueuedCalls(absl::Seconds(1));
    }
    // N calls straight into the engine's queue (ids of the tenant, as
    // Engine::Submit makes them), in batches.
    {
      auto queue = SqliteQueue::Open(SqliteQueuePath(path),
                                     {.synchronous = SqliteQueueOptions::Synchronous::kNormal});
      if (!queue.ok()) {
        state.SkipWithError(queue.status().ToString().c_str());
        return;
      }
      CallIdGenerator ids(7);
      const absl::Time now = absl::Now();
      std::vector<Call> batch;
      for (int i = 0; i < calls; ++i) {
        const CallId r = ids.Next();
        batch.push_back(
            Call{.id = TenantCallId("bench", r.hi(), r.lo()),
                 .tenant = "bench",
                 .function = "m:put",
                 .args = Value::FromObject(
                     {{"key", Value::String("q" + std::to_string(i))}, {"v", Value::Int64(1)}}),
                 .start_after = now,
                 .deadline = now + absl::Hours(1)});
        if (batch.size() == 10'000 || i + 1 == calls) {
          if (absl::StatusOr<size_t> n = (*queue)->Enqueue(batch); !n.ok()) {
            state.SkipWithError(n.status().ToString().c_str());
            return;
          }
          batch.clear();
        }
      }
    }
    state.ResumeTiming();
    const absl::Time start = absl::Now();
    auto engine = OpenSqliteEngine(path, options, sqlite);
    if (!engine.ok()) {
      state.SkipWithError(engine.status().ToString().c_str());
      return;
    }
    const EngineStats none;
    if (!WaitForQueuedCalls(**engine, none, static_cast<uint64_t>(calls), absl::Minutes(10))) {
      state.SkipWithError("the backlog did not drain within ten minutes");
      return;
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    state.PauseTiming();
    const QueuedCallStats q = (*engine)->stats().queued;
    engine->reset();
    state.counters["drain_s"] = seconds;
    state.counters["calls_per_s"] = calls / seconds;
    state.counters["direct_calls_per_s"] = direct_calls_per_s;
    state.counters["vs_direct"] = calls / seconds / direct_calls_per_s;
    state.counters["failed"] = static_cast<double>(q.failed);
    state.ResumeTiming();
  }
}

void BM_EngineRotatingTenants(benchmark::State& state, bool closes) {
  constexpr int kTenants = 10'000;
  constexpr int kSweepEvery = 50;
  for (auto _ : state) {
    ScratchDir dir;
    std::atomic<Timestamp> now{1'000'000'000};
    EngineOptions options;
    options.path = dir.File("engine.db");
    options.sqlite.synchronous = SqliteOptions::Synchronous::kOff;
    options.scheduler.workers = 2;
    options.committer.clock = [&now] { return now.fetch_add(1000) + 1000; };
    options.tenant_idle_timeout = closes ? absl::Seconds(1) : absl::InfiniteDuration();
    options.tenant_sweep_interval = absl::Hours(1);  // sweeps below
    auto engine = Engine::Open(options);
    if (!engine.ok()) return state.SkipWithError(engine.status().ToString().c_str());
    const size_t rss_start = testing::ResidentBytes();
    uint64_t max_open = 0;
    auto step = [&](int i) {
      now.fetch_add(absl::ToInt64Nanoseconds(absl::Milliseconds(10)));
      if (i % kSweepEvery == kSweepEvery - 1) {
        (void)(*engine)->SweepTenants();
        max_open = std::max(max_open, (*engine)->stats().tenants_open);
      }
    };
    for (int i = 0; i < kTenants; ++i) {
      const std::string tenant = "t" + std::to_string(i);
      absl::Status s = (*engine)->CreateTenant(tenant);
      if (s.ok()) s = (*engine)->SetEnabled(tenant, i % 2 == 0);
      if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
      step(i);
    }
    for (int i = 0; i < kTenants; ++i) {
      absl::Status s = (*engine)->Latest("t" + std::to_string(i)).status();
      if (!s.ok()) return state.SkipWithError(s.ToString().c_str());
      step(i);
    }
    const EngineStats stats = (*engine)->stats();
    const size_t rss = testing::ResidentBytes();
    state.counters["max_open"] = static_cast<double>(max_open);
    state.counters["closed_idle"] = static_cast<double>(stats.tenants_closed_idle);
    state.counters["history_keys"] = static_cast<double>(stats.committer.history_keys);
    state.counters["rss_kib_per_tenant"] =
        static_cast<double>(rss > rss_start ? rss - rss_start : 0) / kTenants / 1024;
  }
}

[[maybe_unused]] const bool kRotatingTenantsRegistered = [] {
  for (bool closes : {true, false}) {
    benchmark::RegisterBenchmark(closes ? "BM_EngineRotatingTenants/idle_timeout:1s"
                                        : "BM_EngineRotatingTenants/idle_timeout:infinite",
                                 BM_EngineRotatingTenants, closes)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

// A burst of `calls` blocking calls of m:slowBump on the counter, from as many threads; its
// wall time, or an error.
absl::StatusOr<absl::Duration> HotBurst(Engine& engine, const Value& args, int calls) {
  std::vector<absl::Status> failed(calls);
  std::vector<std::thread> threads;
  threads.reserve(calls);
  absl::Notification go;
  for (int i = 0; i < calls; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      failed[i] = engine.Mutation("bench", "m:slowBump", args).status();
    });
  }
  const absl::Time start = absl::Now();
  go.Notify();
  for (std::thread& t : threads) t.join();
  const absl::Duration took = absl::Now() - start;
  for (const absl::Status& s : failed) {
    if (!s.ok() && !absl::IsAborted(s)) return s;
  }
  return took;
}

void BM_EngineHotBurst(benchmark::State& state) {
  std::unique_ptr<Fixture> f = MakeFixture(EngineStorage::kSqlite, state);
  if (f == nullptr) return;
  const int calls = static_cast<int>(state.range(0));
  const Value args = Value::FromObject(
      {{"id", Value::String(f->counter_id)}, {"spins", Value::Int64(kHotBurstSpins)}});
  double burst_ms = 0, serial_ms = 0;
  const EngineStats before = f->engine->stats();
  for (auto _ : state) {
    const absl::Time start = absl::Now();
    for (int i = 0; i < calls; ++i) {
      absl::Status s = f->engine->Mutation("bench", "m:slowBump", args).status();
      if (!s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        return;
      }
    }
    serial_ms += absl::ToDoubleMilliseconds(absl::Now() - start);
    absl::StatusOr<absl::Duration> burst = HotBurst(*f->engine, args, calls);
    if (!burst.ok()) {
      state.SkipWithError(burst.status().ToString().c_str());
      return;
    }
    state.SetIterationTime(absl::ToDoubleSeconds(*burst));
    burst_ms += absl::ToDoubleMilliseconds(*burst);
  }
  const EngineStats after = f->engine->stats();
  const double bursts = static_cast<double>(state.iterations());
  state.counters["serial_ms"] = serial_ms / bursts;
  state.counters["vs_serial"] = serial_ms > 0 ? burst_ms / serial_ms : 0;
  // The serial calls never conflict: every conflict is the bursts'.
  state.counters["conflicts_per_call"] =
      static_cast<double>(after.conflicts - before.conflicts) / (bursts * calls);
  state.counters["aborted"] = static_cast<double>(after.conflicts - before.conflicts) -
                              static_cast<double>(after.retries - before.retries);
}

}  // namespace
}  // namespace txfn

int main(int argc, char** argv) {
  using txfn::EngineStorage;
  benchmark::RegisterBenchmark("BM_EngineQuery/storage:memory", txfn::BM_EngineQuery,
                               EngineStorage::kMemory)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_EngineQuery/storage:sqlite", txfn::BM_EngineQuery,
                               EngineStorage::kSqlite)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_EngineQueryManyTenants", txfn::BM_EngineQueryManyTenants)
      ->ArgName("tenants")
      ->Arg(8)
      ->Arg(1000)
      ->Unit(benchmark::kMicrosecond);
  txfn::MutationRun mutation_run;  // outlives the runs
  benchmark::RegisterBenchmark("BM_EngineMutation/storage:sqlite", txfn::BM_EngineMutation,
                               &mutation_run, false)
      ->Threads(1)
      ->Threads(2)
      ->Threads(8)
      ->Unit(benchmark::kMicrosecond);
  txfn::ScheduledRun scheduled_run{.direct = &mutation_run};
  benchmark::RegisterBenchmark("BM_EngineScheduledMutation/storage:sqlite",
                               txfn::BM_EngineScheduledMutation, &scheduled_run)
      ->Threads(1)
      ->Threads(2)
      ->Threads(8)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_EngineScheduledBacklog", txfn::BM_EngineScheduledBacklog)
      ->ArgName("calls")
      ->Arg(2000)
      ->Arg(100'000)
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  txfn::MutationRun contended_run;
  benchmark::RegisterBenchmark("BM_EngineMutationContended", txfn::BM_EngineMutation,
                               &contended_run, true)
      ->Threads(2)
      ->Unit(benchmark::kMicrosecond);
  double code_only_1000_ms = 0;  // the docs:1000 run's, for the 100,000 run's ratio
  benchmark::RegisterBenchmark("BM_EngineDeployLargeTable", txfn::BM_EngineDeployLargeTable,
                               &code_only_1000_ms)
      ->ArgName("docs")
      ->Arg(1000)
      ->Arg(100'000)
      ->UseManualTime()
      ->Iterations(5)
      ->Unit(benchmark::kMillisecond);
  txfn::MutationRun hot_run;
  benchmark::RegisterBenchmark("BM_EngineMutationHot", txfn::BM_EngineMutation, &hot_run, true)
      ->Threads(1)
      ->Threads(32)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_EngineHotBurst", txfn::BM_EngineHotBurst)
      ->ArgName("calls")
      ->Arg(32)
      ->Iterations(3)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  mutation_run.fixture.reset();  // the engines stop before V8's statics go
  scheduled_run.fixture.reset();
  contended_run.fixture.reset();
  hot_run.fixture.reset();
  benchmark::Shutdown();
  return 0;
}
