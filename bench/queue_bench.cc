// The queue side's throughput, each against a baseline in the same run.
//
//   BM_QueueEnqueueLeaseAck/storage:memory, /storage:sqlite
//       no-op calls through DurableQueue: Enqueue in batches of 256 (the
//       scheduler's default lease batch), Lease in batches of 256, Ack in
//       batches (one Settle); counter jobs_per_s (wall clock).
//       SQLite with its default synchronous=FULL.
//   BM_NaiveSqliteQueue
//       the baseline: one SQLite transaction per job (insert; select the
//       oldest due; delete), synchronous=FULL, on the same disk.
//   BM_CallSchedulerDispatch
//       calls/s through the CallScheduler's FuncBuffers, RunQ and limiters
//       (reserved quota, concurrency limit, one downstream's AIMD limiter),
//       InMemoryQueue, 1,000 functions, a worker that finishes each call
//       inline; one thread. Includes enqueueing the calls. calls_per_s is
//       wall time; calls_per_cpu_s is per CPU-second of the benchmark's one
//       thread (the "one core" figure when other processes share the cores).
//   BM_QueueOnlyDispatch
//       its baseline: the same calls through the same queue with no
//       scheduler (enqueue, lease, ack), so the ratio is the scheduler's cost.
//   BM_InMemoryQueueBytesPerCall
//       heap bytes per queued call (counter bytes_per_call, from mallinfo2)
//       with 200,000 pending calls of 1,000 functions: what a backlog costs.
//   BM_NaiveCallMapBytesPerCall
//       its baseline: the same calls kept whole (a hash map of id -> Call and
//       the due orders), as InMemoryQueue stored them before it pooled names.
//   BM_LeaseSkippingABacklog/storage:memory|sqlite/backlog:100000/due:1
//       a scheduler's poll (enqueue, lease, ack 16 calls of 16 tenants) that
//       skips one tenant's 100,000 due calls; counter polls_per_s. Baselines:
//       /backlog:100000/due:0 (the same backlog, not due yet: what its size
//       alone costs) and /backlog:0/due:0 (no backlog).
//   BM_PollWhileCounting/storage:memory|sqlite/counting:1
//       that poll past 100,000 calls not due while another thread runs TenantDepths
//       without pause; counter polls_per_s. Baseline: /counting:0 (no count beside it).
//   BM_TenantDepths/storage:memory|sqlite/calls:100000
//       the engine's recount for max_pending_calls_per_tenant: DurableQueue::TenantDepths
//       over 100,000 pending calls of 100 tenants; counter calls_per_s. Baseline:
//       BM_TenantDepthsViaListCalls (the interface's default, pages of ListCalls).
//   BM_TokenBucketAcquire, BM_AimdLimiterUpdate
//       ns per operation, against BM_MutexCounter (a mutex-guarded counter:
//       the floor of any shared admission check).
//
// After the table the binary prints each ratio. SQLite files live in a fresh
// directory under $TMPDIR (default /tmp): FULL's cost is that disk's fsync.
#include <malloc.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "bench/lease_skip_bench.h"
#include "bench/queue_bench_util.h"
#include "benchmark/benchmark.h"
#include "fmt/core.h"
#include "txfn/call_scheduler.h"
#include "txfn/clock.h"
#include "txfn/in_memory_queue.h"
#include "txfn/limiters.h"
#include "txfn/sqlite_queue.h"

namespace txfn {
namespace {

using bench::NoOpCalls;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
constexpr int kBatch = 256;

class TempDir {
 public:
  TempDir() {
    const char* tmp = getenv("TMPDIR");
    std::string pattern = fmt::format("{}/txfn_queue_bench_XXXXXX", tmp != nullptr ? tmp : "/tmp");
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  std::string File(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

void BM_QueueEnqueueLeaseAck(benchmark::State& state, bool sqlite) {
  TempDir dir;
  std::unique_ptr<DurableQueue> queue;
  if (!sqlite) {
    queue = std::make_unique<InMemoryQueue>();
  } else {
    auto q = SqliteQueue::Open(dir.File("queue.db"));  // synchronous=FULL
    if (!q.ok()) {
      state.SkipWithError(std::string(q.status().message()).c_str());
      return;
    }
    queue = *std::move(q);
  }
  CallIdGenerator ids(1);
  int64_t jobs = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<Call> calls = NoOpCalls(ids, kBatch, kT0, 10);
    state.ResumeTiming();
    if (!queue->Enqueue(calls).ok()) state.SkipWithError("Enqueue failed");
    auto leased = queue->Lease({.shard = 0, .now = kT0, .max = kBatch});
    if (!leased.ok() || leased->size() != kBatch) state.SkipWithError("Lease failed");
    std::vector<Settlement> acks;
    acks.reserve(leased->size());
    for (const LeasedCall& l : *leased) acks.push_back(Settlement::Ack(l.token));
    auto r = queue->Settle(acks, kT0);
    if (!r.ok()) state.SkipWithError("Settle failed");
    jobs += kBatch;
  }
  state.counters["jobs_per_s"] = benchmark::Counter(static_cast<double>(jobs) / Seconds(start));
}
// Registered in main() under the names "/storage:memory" and "/storage:sqlite".

// One SQLite transaction per job: insert it; select the oldest due job;
// delete that one. What a queue built on a database without batching does.
void BM_NaiveSqliteQueue(benchmark::State& state) {
  TempDir dir;
  sqlite3* db = nullptr;
  const std::string path = dir.File("naive.db");
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    state.SkipWithError("open failed");
    return;
  }
  sqlite3_exec(db,
               "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
               "CREATE TABLE jobs (id INTEGER PRIMARY KEY, run_at INTEGER NOT NULL, "
               "payload BLOB NOT NULL);"
               "CREATE INDEX jobs_run_at ON jobs (run_at, id);",
               nullptr, nullptr, nullptr);
  sqlite3_stmt *begin, *insert, *select, *del, *commit;
  sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, nullptr);
  sqlite3_prepare_v2(db, "INSERT INTO jobs (run_at, payload) VALUES (?1, ?2)", -1, &insert,
                     nullptr);
  sqlite3_prepare_v2(db,
                     "SELECT id, payload FROM jobs WHERE run_at <= ?1 ORDER BY run_at, id LIMIT 1",
                     -1, &select, nullptr);
  sqlite3_prepare_v2(db, "DELETE FROM jobs WHERE id = ?1", -1, &del, nullptr);
  sqlite3_prepare_v2(db, "COMMIT", -1, &commit, nullptr);
  CallIdGenerator ids(2);
  const int64_t now = absl::ToUnixNanos(kT0);
  int64_t jobs = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    // The same encoded no-op call the txfn queue stores.
    const std::string payload = EncodeCall(NoOpCalls(ids, 1, kT0, 10)[0]);
    bool ok = sqlite3_step(begin) == SQLITE_DONE;
    sqlite3_reset(begin);
    sqlite3_bind_int64(insert, 1, now);
    sqlite3_bind_blob(insert, 2, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
    ok = ok && sqlite3_step(insert) == SQLITE_DONE;
    sqlite3_reset(insert);
    sqlite3_bind_int64(select, 1, now);
    ok = ok && sqlite3_step(select) == SQLITE_ROW;
    const int64_t id = sqlite3_column_int64(select, 0);
    benchmark::DoNotOptimize(sqlite3_column_blob(select, 1));
    sqlite3_reset(select);
    sqlite3_bind_int64(del, 1, id);
    ok = ok && sqlite3_step(del) == SQLITE_DONE;
    sqlite3_reset(del);
    ok = ok && sqlite3_step(commit) == SQLITE_DONE;
    sqlite3_reset(commit);
    if (!ok) state.SkipWithError(sqlite3_errmsg(db));
    ++jobs;
  }
  state.counters["jobs_per_s"] = benchmark::Counter(static_cast<double>(jobs) / Seconds(start));
  for (sqlite3_stmt* s : {begin, insert, select, del, commit}) sqlite3_finalize(s);
  sqlite3_close(db);
}
BENCHMARK(BM_NaiveSqliteQueue);

// A worker that finishes every call at once.
class NoOpWorker final : public Worker {
 public:
  void Run(const Call& call, Done done) override { std::move(done)(CallOutcome::Ok()); }
};

constexpr int kFunctions = 1000;
constexpr int kRound = 2000;  // calls per iteration

void BM_CallSchedulerDispatch(benchmark::State& state) {
  VirtualClock clock(kT0);
  InMemoryQueue queue;
  SchedulerConfig config{.version = 1};
  config.default_function = {
      .reserved_cpu_quota = 1e9, .concurrency_limit = 1'000'000, .downstreams = {"db"}};
  config.default_downstream = {.slow_start_calls = 1e11, .max_calls_per_window = 1e12};
  auto scheduler = CallScheduler::Create({.queue = &queue,
                                          .clock = &clock,
                                          .lease_batch = 1024,
                                          .max_buffered = 4096,
                                          .run_queue_target = 2048,
                                          .poll_interval = absl::Milliseconds(1),
                                          .config = config});
  if (!scheduler.ok()) {
    state.SkipWithError(std::string(scheduler.status().message()).c_str());
    return;
  }
  CallScheduler& s = **scheduler;
  (void)s.AddWorker("w", std::make_shared<NoOpWorker>(), 4096);
  CallIdGenerator ids(3);
  uint64_t target = 0;
  int64_t calls = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    std::vector<Call> batch = NoOpCalls(ids, kRound, clock.Now(), kFunctions);
    for (size_t i = 0; i < batch.size(); i += 500) {
      const size_t end = std::min(batch.size(), i + 500);
      (void)queue.Enqueue(absl::MakeConstSpan(batch.data() + i, end - i));
    }
    target += kRound;
    while (s.stats().acked < target) {
      clock.Advance(absl::Milliseconds(1));
      s.Tick();
    }
    calls += kRound;
  }
  state.counters["calls_per_s"] = benchmark::Counter(static_cast<double>(calls) / Seconds(start));
  state.counters["calls_per_cpu_s"] =
      benchmark::Counter(static_cast<double>(calls), benchmark::Counter::kIsRate);
  state.counters["functions"] = kFunctions;
}
BENCHMARK(BM_CallSchedulerDispatch);

void BM_QueueOnlyDispatch(benchmark::State& state) {
  InMemoryQueue queue;
  CallIdGenerator ids(3);
  int64_t calls = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    std::vector<Call> batch = NoOpCalls(ids, kRound, kT0, kFunctions);
    for (size_t i = 0; i < batch.size(); i += 500) {
      const size_t end = std::min(batch.size(), i + 500);
      (void)queue.Enqueue(absl::MakeConstSpan(batch.data() + i, end - i));
    }
    size_t done = 0;
    while (done < kRound) {
      auto leased = queue.Lease({.shard = 0, .now = kT0, .max = 1024});
      if (!leased.ok()) break;
      std::vector<Settlement> acks;
      acks.reserve(leased->size());
      for (const LeasedCall& l : *leased) acks.push_back(Settlement::Ack(l.token));
      (void)queue.Settle(acks, kT0);
      done += leased->size();
    }
    calls += kRound;
  }
  state.counters["calls_per_s"] = benchmark::Counter(static_cast<double>(calls) / Seconds(start));
  state.counters["calls_per_cpu_s"] =
      benchmark::Counter(static_cast<double>(calls), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_QueueOnlyDispatch);

// A poll of a scheduler that skips one tenant at its share: 16 calls of 16
// other tenants, enqueued, leased past the skipped tenant's backlog of
// `backlog` calls, acked. due:1, the backlog is due (an hour earlier, so
// first in due order); due:0, it is not due yet (an hour later), so it
// costs only its size (a bigger table and indexes). Baselines: backlog:0,
// and due:0 for the same size (SQLite with synchronous=NORMAL, so the cost
// is the lease's walk, not the disk's fsync).
// An InMemoryQueue, or a SqliteQueue (synchronous=NORMAL) in `dir`; null (the state skipped
// with the error) if it cannot be opened.
std::unique_ptr<DurableQueue> OpenQueue(benchmark::State& state, bool sqlite, const TempDir& dir) {
  if (!sqlite) return std::make_unique<InMemoryQueue>();
  auto q = SqliteQueue::Open(dir.File("queue.db"),
                             {.synchronous = SqliteQueueOptions::Synchronous::kNormal});
  if (!q.ok()) {
    state.SkipWithError(std::string(q.status().message()).c_str());
    return nullptr;
  }
  return *std::move(q);
}

void BM_LeaseSkippingABacklog(benchmark::State& state, bool sqlite) {
  const int64_t backlog = state.range(0);
  const absl::Time backlog_due = state.range(1) != 0 ? kT0 - absl::Hours(1) : kT0 + absl::Hours(1);
  TempDir dir;
  std::unique_ptr<DurableQueue> queue = OpenQueue(state, sqlite, dir);
  if (queue == nullptr) return;
  bench::PollPastABacklog(state, *queue, backlog, backlog_due, kT0);
}
// Registered in main() as "/storage:memory" and "/storage:sqlite".

// A scheduler's poll (as BM_LeaseSkippingABacklog: 100,000 calls of one tenant not due yet)
// while another thread counts the queue per tenant without pause (TenantDepths: the
// pending-calls cap's recount, what a tenant pressing on its cap asks for every second or so);
// counter polls_per_s. Baseline: /counting:0, the same polls with no count beside them.
void BM_PollWhileCounting(benchmark::State& state, bool sqlite) {
  const bool counting = state.range(0) != 0;
  TempDir dir;
  std::unique_ptr<DurableQueue> queue = OpenQueue(state, sqlite, dir);
  if (queue == nullptr) return;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> counts{0};
  std::thread counter;
  if (counting) {
    counter = std::thread([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (queue->TenantDepths(kT0).ok()) counts.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  bench::PollPastABacklog(state, *queue, 100'000, kT0 + absl::Hours(1), kT0);
  stop = true;
  if (counter.joinable()) counter.join();
  state.counters["counts"] = static_cast<double>(counts.load());
}
// Registered in main() as "/storage:memory|sqlite/counting:0|1".

// The engine's recount for max_pending_calls_per_tenant: TenantDepths over `calls` pending
// calls of 100 tenants; counter calls_per_s (calls counted per second of CPU). With
// `via_list_calls`, the baseline: DurableQueue's default TenantDepths (pages of ListCalls),
// what an adapter without its own count does.
void BM_TenantDepths(benchmark::State& state, bool sqlite, bool via_list_calls) {
  const size_t n = static_cast<size_t>(state.range(0));
  TempDir dir;
  std::unique_ptr<DurableQueue> queue = OpenQueue(state, sqlite, dir);
  if (queue == nullptr) return;
  CallIdGenerator ids(13);
  std::vector<Call> calls = NoOpCalls(ids, n, kT0);
  for (size_t i = 0; i < n; ++i) calls[i].tenant = fmt::format("t{}", i % 100);
  for (size_t i = 0; i < n; i += DurableQueue::kMaxEnqueueBatch) {
    const size_t end = std::min(n, i + DurableQueue::kMaxEnqueueBatch);
    if (!queue->Enqueue(absl::MakeConstSpan(calls).subspan(i, end - i)).ok()) {
      state.SkipWithError("enqueue failed");
      return;
    }
  }
  for (auto _ : state) {
    absl::StatusOr<std::vector<TenantDepth>> depths =
        via_list_calls ? queue->DurableQueue::TenantDepths(kT0) : queue->TenantDepths(kT0);
    if (!depths.ok() || depths->size() != 100) {
      state.SkipWithError("TenantDepths failed");
      return;
    }
    benchmark::DoNotOptimize(depths->data());
  }
  state.counters["calls_per_s"] =
      benchmark::Counter(static_cast<double>(n) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}
// Registered in main() as "/storage:memory|sqlite" and "BM_TenantDepthsViaListCalls/...".

constexpr size_t kBacklogCalls = 200'000;

// Heap in use, with the large blocks malloc maps apart (a big table's array).
// (Under a sanitizer's allocator glibc's counts stay 0.)
double HeapInUse() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd);
}

// A backlog like the simulator's: calls of 1,000 functions with an int
// argument, one client, and a retry policy.
std::vector<Call> BacklogCalls() {
  CallIdGenerator ids(11);
  std::vector<Call> calls = NoOpCalls(ids, kBacklogCalls, kT0, kFunctions);
  for (size_t i = 0; i < calls.size(); ++i) {
    calls[i].args = Value::Int64(static_cast<int64_t>(i));
    calls[i].client = "bench";
    calls[i].quota = i % 3 == 0 ? QuotaClass::kReserved : QuotaClass::kOpportunistic;
    calls[i].retry.max_attempts = 50;
  }
  return calls;
}

void BM_InMemoryQueueBytesPerCall(benchmark::State& state) {
  const std::vector<Call> calls = BacklogCalls();
  double bytes = 0;
  for (auto _ : state) {
    const double before = HeapInUse();
    InMemoryQueue queue;
    for (size_t i = 0; i < calls.size(); i += DurableQueue::kMaxEnqueueBatch) {
      const size_t n = std::min(DurableQueue::kMaxEnqueueBatch, calls.size() - i);
      if (!queue.Enqueue(absl::MakeConstSpan(calls).subspan(i, n)).ok()) {
        state.SkipWithError("Enqueue failed");
        return;
      }
    }
    bytes = (HeapInUse() - before) / static_cast<double>(calls.size());
  }
  state.counters["bytes_per_call"] = bytes;
}
BENCHMARK(BM_InMemoryQueueBytesPerCall)->Iterations(2)->Unit(benchmark::kMillisecond);

void BM_NaiveCallMapBytesPerCall(benchmark::State& state) {
  // InMemoryQueue's entry and orders before it pooled names (65da821).
  struct Entry {
    Call call;
    uint64_t seq = 0;
    uint8_t state = 0;
    absl::Time due, expires, dead_at;
    uint64_t token = 0;
    std::string reason;
  };
  struct Due {
    absl::Time due;
    uint64_t seq;
    CallId id;
    bool operator<(const Due& o) const { return due != o.due ? due < o.due : seq < o.seq; }
  };
  const std::vector<Call> calls = BacklogCalls();
  double bytes = 0;
  for (auto _ : state) {
    const double before = HeapInUse();
    absl::flat_hash_map<CallId, Entry> by_id;
    absl::btree_set<Due> by_quota[2];
    absl::flat_hash_map<std::string, absl::btree_set<Due>> by_function[2];
    uint64_t seq = 0;
    for (const Call& c : calls) {
      Entry& e = by_id[c.id];
      e.call = c;
      e.seq = seq++;
      e.due = c.start_after;
      const int q = static_cast<int>(c.quota);
      by_quota[q].insert({e.due, e.seq, c.id});
      by_function[q][c.function].insert({e.due, e.seq, c.id});
    }
    bytes = (HeapInUse() - before) / static_cast<double>(calls.size());
    benchmark::DoNotOptimize(by_id);
  }
  state.counters["bytes_per_call"] = bytes;
}
BENCHMARK(BM_NaiveCallMapBytesPerCall)->Iterations(2)->Unit(benchmark::kMillisecond);

void BM_TokenBucketAcquire(benchmark::State& state) {
  auto bucket = TokenBucket::Create(1e6, 100, kT0);
  absl::Time now = kT0;
  int64_t admitted = 0;
  for (auto _ : state) {
    now += absl::Nanoseconds(500);  // time moves: every call refills
    admitted += bucket->TryAcquire(now) ? 1 : 0;
  }
  benchmark::DoNotOptimize(admitted);
  state.counters["admitted_share"] =
      benchmark::Counter(static_cast<double>(admitted) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_TokenBucketAcquire);

void BM_AimdLimiterUpdate(benchmark::State& state) {
  AimdOptions options{.window = absl::Milliseconds(10)};
  auto aimd = AimdLimiter::Create(options, kT0);
  absl::Time now = kT0;
  uint64_t i = 0;
  for (auto _ : state) {
    now += absl::Nanoseconds(200);  // a window closes every 50,000 operations
    if (aimd->TryAcquire(now)) aimd->Release();
    if ((++i & 1023) == 0) aimd->RecordBackPressure(now);
  }
  state.counters["decreases"] = static_cast<double>(aimd->decreases());
}
BENCHMARK(BM_AimdLimiterUpdate);

void BM_MutexCounter(benchmark::State& state) {
  std::mutex mu;
  int64_t n = 0;
  for (auto _ : state) {
    std::lock_guard<std::mutex> lock(mu);
    benchmark::DoNotOptimize(++n);
  }
}
BENCHMARK(BM_MutexCounter);

// The console table, then the ratios against the baselines.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  RatioReporter() : ConsoleReporter(OO_None) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;
      const std::string name = run.benchmark_name();
      for (const char* c :
           {"jobs_per_s", "calls_per_s", "calls_per_cpu_s", "bytes_per_call", "polls_per_s"}) {
        auto it = run.counters.find(c);
        if (it != run.counters.end()) rate_[name + "|" + c] = it->second.value;
      }
      ns_[name] = run.GetAdjustedCPUTime();
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::ostream& out = GetOutputStream();
    auto ratio = [&](const std::string& a, const std::string& b, const std::string& counter,
                     const char* note) {
      const std::string ka = a + "|" + counter, kb = b + "|" + counter;
      if (rate_.count(ka) && rate_.count(kb) && rate_[kb] > 0) {
        out << a << " / " << b << " (" << counter << note << "): " << rate_[ka] / rate_[kb]
            << "x\n";
      }
    };
    ratio("BM_QueueEnqueueLeaseAck/storage:sqlite", "BM_NaiveSqliteQueue", "jobs_per_s",
          "; goal >= 20");
    ratio("BM_QueueEnqueueLeaseAck/storage:memory", "BM_NaiveSqliteQueue", "jobs_per_s", "");
    ratio("BM_CallSchedulerDispatch", "BM_QueueOnlyDispatch", "calls_per_s", "");
    ratio("BM_CallSchedulerDispatch", "BM_QueueOnlyDispatch", "calls_per_cpu_s", "");
    ratio("BM_NaiveCallMapBytesPerCall/iterations:2", "BM_InMemoryQueueBytesPerCall/iterations:2",
          "bytes_per_call", "; the baseline's over InMemoryQueue's");
    for (const char* storage : {"memory", "sqlite"}) {
      const std::string name = fmt::format("BM_LeaseSkippingABacklog/storage:{}/backlog:", storage);
      ratio(name + "100000/due:1", name + "100000/due:0", "polls_per_s",
            "; skipping a due backlog vs one not due; goal: about 1");
      ratio(name + "100000/due:1", name + "0/due:0", "polls_per_s", "; vs no backlog at all");
      ratio(fmt::format("BM_PollWhileCounting/storage:{}/counting:1", storage),
            fmt::format("BM_PollWhileCounting/storage:{}/counting:0", storage), "polls_per_s",
            "; polls beside a count without pause vs none; goal: about 1");
      ratio(fmt::format("BM_TenantDepths/storage:{}/calls:100000", storage),
            fmt::format("BM_TenantDepthsViaListCalls/storage:{}/calls:100000", storage),
            "calls_per_s", "; the adapter's count vs pages of ListCalls");
    }
    if (rate_.count("BM_CallSchedulerDispatch|calls_per_cpu_s")) {
      out << "BM_CallSchedulerDispatch calls per CPU-second (goal >= 500k on one core): "
          << rate_["BM_CallSchedulerDispatch|calls_per_cpu_s"] << "\n";
    }
    for (const char* n : {"BM_TokenBucketAcquire", "BM_AimdLimiterUpdate"}) {
      if (ns_.count(n) && ns_.count("BM_MutexCounter") && ns_["BM_MutexCounter"] > 0) {
        out << n << " / BM_MutexCounter (ns per op): " << ns_[n] / ns_["BM_MutexCounter"] << "x\n";
      }
    }
  }

 private:
  std::map<std::string, double> rate_;
  std::map<std::string, double> ns_;
};

}  // namespace
}  // namespace txfn

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("BM_QueueEnqueueLeaseAck/storage:memory",
                               txfn::BM_QueueEnqueueLeaseAck, false);
  benchmark::RegisterBenchmark("BM_QueueEnqueueLeaseAck/storage:sqlite",
                               txfn::BM_QueueEnqueueLeaseAck, true);
  for (const bool sqlite : {false, true}) {
    benchmark::RegisterBenchmark(sqlite ? "BM_LeaseSkippingABacklog/storage:sqlite"
                                        : "BM_LeaseSkippingABacklog/storage:memory",
                                 txfn::BM_LeaseSkippingABacklog, sqlite)
        ->ArgNames({"backlog", "due"})
        ->Args({0, 0})
        ->Args({100'000, 0})
        ->Args({100'000, 1});
  }
  for (const bool sqlite : {false, true}) {
    benchmark::RegisterBenchmark(
        sqlite ? "BM_PollWhileCounting/storage:sqlite" : "BM_PollWhileCounting/storage:memory",
        txfn::BM_PollWhileCounting, sqlite)
        ->ArgName("counting")
        ->Arg(0)
        ->Arg(1)
        ->UseRealTime();
  }
  for (const bool sqlite : {false, true}) {
    for (const bool via_list_calls : {false, true}) {
      benchmark::RegisterBenchmark(
          fmt::format("{}/storage:{}",
                      via_list_calls ? "BM_TenantDepthsViaListCalls" : "BM_TenantDepths",
                      sqlite ? "sqlite" : "memory")
              .c_str(),
          txfn::BM_TenantDepths, sqlite, via_list_calls)
          ->ArgName("calls")
          ->Arg(100'000)
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  txfn::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
