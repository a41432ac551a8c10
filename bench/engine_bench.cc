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
// BM_EngineMutationHot/threads:{1,32}: the same, one document patched by 1
//   and by 32 threads. Counters commits_per_s and aborted_share (calls that
//   ended Aborted / calls); the 32-thread run's vs_1_thread = its
//   commits_per_s / the 1-thread run's (goal >= 0.8, aborted_share 0).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "txfn/engine.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

constexpr const char* kSchema = R"({"tables": {
  "items": {"fields": {"key": "string", "v": "int64"}, "indexes": {"by_key": ["key"]}},
  "counters": {"fields": {"n": "int64"}}
}})";

constexpr const char* kModule = R"JS(
import { query, mutation } from "txfn/server";
export const get = query(async (ctx, { key }) =>
  ctx.db.query("items").withIndex("by_key", (q) => q.eq("key", key)).unique());
export const put = mutation(async (ctx, { key, v }) => ctx.db.insert("items", { key, v }));
export const putMany = mutation(async (ctx, { prefix, n }) => {
  for (let i = 0; i < n; i++) await ctx.db.insert("items", { key: prefix + i, v: BigInt(i) });
});
export const makeCounter = mutation(async (ctx) => ctx.db.insert("counters", { n: 0n }));
export const bump = mutation(async (ctx, { id }) => {
  const c = await ctx.db.get(id);
  await ctx.db.patch(id, { n: c.n + 1n });
});
)JS";

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
  absl::Status s = f->engine->CreateTenant("bench");
  if (s.ok()) s = f->engine->DeployJson("bench", {{"m.js", kModule}}, kSchema);
  for (int chunk = 0; s.ok() && chunk < 10; ++chunk) {
    s = f->engine
            ->Mutation(
                "bench", "m:putMany",
                Value::FromObject({{"prefix", Value::String("k" + std::to_string(chunk) + "_")},
                                   {"n", Value::Float64(100)}}))
            .status();
  }
  absl::StatusOr<CallResult> counter =
      s.ok() ? f->engine->Mutation("bench", "m:makeCounter", Value::Null()) : s;
  if (!counter.ok()) {
    state.SkipWithError(counter.status().ToString().c_str());
    return nullptr;
  }
  f->counter_id = counter->value.string();
  return f;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

void ReportLatency(benchmark::State& state, std::vector<double>& us) {
  // Per thread; a multi-threaded run reports the mean of its threads'.
  state.counters["p50_us"] =
      benchmark::Counter(Percentile(us, 0.50), benchmark::Counter::kAvgThreads);
  state.counters["p99_us"] =
      benchmark::Counter(Percentile(us, 0.99), benchmark::Counter::kAvgThreads);
}

void BM_EngineQuery(benchmark::State& state, EngineStorage storage) {
  std::unique_ptr<Fixture> f = MakeFixture(storage, state);
  if (f == nullptr) return;
  Value args = Value::FromObject({{"key", Value::String("k3_42")}});
  std::vector<double> us;
  us.reserve(1 << 16);
  for (auto _ : state) {
    absl::Time start = absl::Now();
    absl::StatusOr<CallResult> r = f->engine->Query("bench", "m:get", args);
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!r.ok() || !r->value.is_object()) {
      state.SkipWithError(r.ok() ? "no document" : r.status().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
  ReportLatency(state, us);

  // Baseline: the same indexed read on a Transaction, no scheduler or V8.
  std::vector<double> direct;
  for (int i = 0; i < 2000; ++i) {
    absl::Time start = absl::Now();
    auto latest = f->engine->Latest("bench");
    Transaction txn(*latest, TransactionOptions{.read_only = true});
    auto page = txn.Query(
        {.table = "items", .index = "by_key", .eq = {Value::String("k3_42")}, .limit = 2});
    direct.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!page.ok() || page->documents.size() != 1) {
      state.SkipWithError("direct read failed");
      return;
    }
  }
  const double direct_p50 = Percentile(direct, 0.5);
  state.counters["direct_p50_us"] = direct_p50;
  state.counters["js_overhead_us"] = Percentile(us, 0.50) - direct_p50;
}

size_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long pages = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &pages, &resident);
  std::fclose(f);
  return n == 2 ? resident * 4096 : 0;
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
  const size_t rss_start = ResidentBytes();
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
  const size_t rss = ResidentBytes();
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
  double one_thread_commits_per_s = 0;  // of this benchmark's threads:1 run
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
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  mutation_run.fixture.reset();  // the engines stop before V8's statics go
  contended_run.fixture.reset();
  hot_run.fixture.reset();
  benchmark::Shutdown();
  return 0;
}
