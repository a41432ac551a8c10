// txfn_pg_queue_burndown — a no-op job burn-down on PostgresQueue, the txfn side of
// bench/compare_pg_queues.sh: enqueues --jobs calls in batches of --enqueue-batch, then
// --workers threads lease batches of up to --batch calls and ACK them (no work) until every
// call is done. Prints one line:
//
//   jobs N enqueue_s E work_s W total_s T jobs_per_s J
//
// (jobs_per_s = N / T, T = E + W) and, with --stats, the queue table's row and dead-tuple
// counts from pg_stat_user_tables every second while it works and once at the end (to stderr).
//
// --steady S instead runs for S seconds with a producer thread enqueuing batches (keeping the
// backlog under 20,000 calls) while the workers burn them: the steady state a queue lives in,
// to watch dead tuples and autovacuum with --stats. It prints
//   steady_s S jobs N jobs_per_s J
//
//   txfn_pg_queue_burndown 'postgresql:///bench?host=/tmp/pg/sock' --jobs 100000 --workers 8
//
// The database must exist; the queue's tables are created in it (use a fresh database).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "bench/queue_bench_util.h"
#include "fmt/core.h"
#include "lib/postgres/pg_connection.h"
#include "txfn/postgres_queue.h"

namespace txfn {
namespace {

struct Flags {
  std::string url;
  int64_t jobs = 100'000;
  int workers = 8;
  size_t batch = 100;
  size_t enqueue_batch = 1000;
  int shards = 1;
  bool stats = false;
  int steady_s = 0;
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(
      stderr,
      "txfn_pg_queue_burndown: %s\nusage: txfn_pg_queue_burndown URL [--jobs N] "
      "[--workers W] [--batch B] [--enqueue-batch E] [--shards S] [--stats] [--steady SECONDS]\n",
      why);
  std::exit(2);
}

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> long long {
      if (i + 1 >= argc) Usage("a flag lacks its value");
      return std::atoll(argv[++i]);
    };
    if (a == "--jobs") {
      f.jobs = value();
    } else if (a == "--workers") {
      f.workers = static_cast<int>(value());
    } else if (a == "--batch") {
      f.batch = static_cast<size_t>(value());
    } else if (a == "--enqueue-batch") {
      f.enqueue_batch = static_cast<size_t>(value());
    } else if (a == "--shards") {
      f.shards = static_cast<int>(value());
    } else if (a == "--steady") {
      f.steady_s = static_cast<int>(value());
    } else if (a == "--stats") {
      f.stats = true;
    } else if (!a.starts_with("--") && f.url.empty()) {
      f.url = std::string(a);
    } else {
      Usage("unknown argument");
    }
  }
  if (f.url.empty()) Usage("no URL");
  if (f.jobs < 1 || f.workers < 1 || f.batch < 1 || f.enqueue_batch < 1 || f.shards < 1) {
    Usage("counts must be >= 1");
  }
  return f;
}

// One line of the queue table's statistics (to stderr): live and dead tuples, vacuums, size.
void PrintStats(pg_internal::PgConnection& conn, double at_s) {
  auto r = conn.Exec(
      "SELECT n_live_tup, n_dead_tup, autovacuum_count + vacuum_count, "
      "pg_total_relation_size('txfn_queue_calls') / 1024 "
      "FROM pg_stat_user_tables WHERE relname = 'txfn_queue_calls'");
  if (!r.ok() || r->rows() == 0) return;
  std::fprintf(stderr, "stats t=%.1fs live_tup %lld dead_tup %lld vacuums %lld size_kib %lld\n",
               at_s, static_cast<long long>(r->Int(0, 0)), static_cast<long long>(r->Int(0, 1)),
               static_cast<long long>(r->Int(0, 2)), static_cast<long long>(r->Int(0, 3)));
}

int Main(int argc, char** argv) {
  const Flags f = Parse(argc, argv);
  auto opened =
      PostgresQueue::Open({.url = f.url, .shards = f.shards, .max_connections = f.workers + 2});
  if (!opened.ok()) {
    fmt::print(stderr, "open: {}\n", opened.status().ToString());
    return 1;
  }
  PostgresQueue& q = **opened;
  CallIdGenerator ids;
  using Clock = std::chrono::steady_clock;
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  std::atomic<int64_t> enqueued{0}, completed{0};
  std::atomic<bool> failed{false}, stop{false};
  auto enqueue = [&](size_t n) {
    auto added = q.Enqueue(bench::NoOpCalls(ids, n, absl::Now()));
    if (!added.ok()) {
      fmt::print(stderr, "enqueue: {}\n", added.status().ToString());
      failed = true;
      return;
    }
    enqueued += static_cast<int64_t>(n);
  };

  const auto t0 = Clock::now();
  if (f.steady_s == 0) {
    while (enqueued.load() < f.jobs && !failed.load()) {
      enqueue(static_cast<size_t>(
          std::min<int64_t>(static_cast<int64_t>(f.enqueue_batch), f.jobs - enqueued.load())));
    }
  }
  const auto t1 = Clock::now();
  std::vector<std::thread> threads;
  if (f.steady_s > 0) {
    threads.emplace_back([&] {
      constexpr int64_t kMaxBacklog = 20'000;
      while (!stop.load() && !failed.load()) {
        if (enqueued.load() - completed.load() < kMaxBacklog) {
          enqueue(f.enqueue_batch);
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
    });
  }
  for (int w = 0; w < f.workers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<Settlement> acks;
      int idle = 0;
      while (!stop.load() && !failed.load()) {
        auto leased = q.Lease({.shard = w % q.shard_count(),
                               .now = absl::Now(),
                               .max = f.batch,
                               .lease_duration = absl::Seconds(30)});
        if (!leased.ok()) {
          fmt::print(stderr, "lease: {}\n", leased.status().ToString());
          failed = true;
          return;
        }
        if (leased->empty()) {
          // Others hold the rest: back off (up to 8 ms) until they finish.
          std::this_thread::sleep_for(std::chrono::microseconds(250 << std::min(idle++, 5)));
          continue;
        }
        idle = 0;
        acks.clear();
        for (const LeasedCall& l : *leased) acks.push_back(Settlement::Ack(l.token));
        auto settled = q.Settle(acks, absl::Now());
        if (!settled.ok()) {
          fmt::print(stderr, "settle: {}\n", settled.status().ToString());
          failed = true;
          return;
        }
        int64_t ok = 0;
        for (const absl::Status& s : *settled) ok += s.ok() ? 1 : 0;
        if ((completed += ok) >= f.jobs && f.steady_s == 0) stop = true;
      }
    });
  }
  std::unique_ptr<pg_internal::PgConnection> stats_conn;
  if (f.stats) {
    auto c = pg_internal::PgConnection::Open(f.url);
    if (c.ok()) stats_conn = *std::move(c);
  }
  const auto end = t1 + std::chrono::seconds(f.steady_s);
  auto next_stats = Clock::now() + std::chrono::seconds(1);
  while (!stop.load() && !failed.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (f.steady_s > 0 && Clock::now() >= end) stop = true;
    if (stats_conn != nullptr && Clock::now() >= next_stats) {
      PrintStats(*stats_conn, seconds(Clock::now() - t0));
      next_stats += std::chrono::seconds(1);
    }
  }
  for (std::thread& t : threads) t.join();
  const auto t2 = Clock::now();
  if (failed.load()) return 1;
  if (stats_conn != nullptr) {
    // The server publishes table statistics about once a second: wait for the final ones.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    PrintStats(*stats_conn, seconds(Clock::now() - t0));
  }
  if (f.steady_s > 0) {
    fmt::print("steady_s {:.1f} jobs {} jobs_per_s {:.0f}\n", seconds(t2 - t1), completed.load(),
               static_cast<double>(completed.load()) / seconds(t2 - t1));
    return 0;
  }
  const double total = seconds(t2 - t0);
  fmt::print("jobs {} enqueue_s {:.3f} work_s {:.3f} total_s {:.3f} jobs_per_s {:.0f}\n", f.jobs,
             seconds(t1 - t0), seconds(t2 - t1), total, static_cast<double>(f.jobs) / total);
  return 0;
}

}  // namespace
}  // namespace txfn

int main(int argc, char** argv) { return txfn::Main(argc, argv); }
