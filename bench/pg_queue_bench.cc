// PostgresQueue's enqueue + lease + ACK cycle against a naive baseline in the same run: the
// usual single-row queue on PostgreSQL (one INSERT per job, one `UPDATE .. WHERE id = (SELECT
// .. FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING` per lease, one DELETE per ACK, each its own
// transaction). Both move `batch` jobs per iteration through an empty queue; items/s is jobs.
//
// BM_LeaseSkippingABacklog/storage:postgres: a poll past a skipped tenant's due backlog, against
// the same backlog not due and no backlog (see below).
//
// Needs a server: TXFN_TEST_PG (scripts/test sets it); each benchmark gets a fresh database.
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/lease_skip_bench.h"
#include "bench/queue_bench_util.h"
#include "benchmark/benchmark.h"
#include "lib/postgres/pg_connection.h"
#include "txfn/internal/strings.h"
#include "txfn/postgres_queue.h"

namespace txfn {
namespace {

using bench::NoOpCalls;
using internal::StrCat;
using pg_internal::PgConnection;
using pg_internal::PgParam;

// A database of its own on TXFN_TEST_PG's server, dropped when this goes away; url() is empty
// (and the benchmark skipped) without a server.
class BenchDatabase {
 public:
  explicit BenchDatabase(benchmark::State& state) {
    const char* server = std::getenv("TXFN_TEST_PG");
    if (server == nullptr) {
      state.SkipWithError("no PostgreSQL server: set TXFN_TEST_PG (scripts/pg-cluster url DIR)");
      return;
    }
    static std::atomic<int> counter{0};
    name_ = StrCat("txfn_bench_", getpid(), "_", counter.fetch_add(1));
    admin_url_ = server;
    auto admin = PgConnection::Open(admin_url_);
    if (!admin.ok() || !(*admin)->Exec(StrCat("CREATE DATABASE ", name_)).ok()) {
      state.SkipWithError("cannot create a database");
      return;
    }
    auto url = pg_internal::WithDatabase(admin_url_, name_);
    if (url.ok()) url_ = *url;
  }
  ~BenchDatabase() {
    if (url_.empty()) return;
    auto admin = PgConnection::Open(admin_url_);
    if (admin.ok()) (void)(*admin)->Exec(StrCat("DROP DATABASE ", name_, " WITH (FORCE)"));
  }
  const std::string& url() const { return url_; }

 private:
  std::string name_, admin_url_, url_;
};

void BM_PostgresQueueCycle(benchmark::State& state) {
  const int64_t batch = state.range(0);
  BenchDatabase db(state);
  if (db.url().empty()) return;
  auto q = PostgresQueue::Open({.url = db.url()});
  if (!q.ok()) return state.SkipWithError("cannot open the queue");
  CallIdGenerator ids;
  std::vector<Settlement> acks;
  for (auto _ : state) {
    const absl::Time now = absl::Now();
    if (!(*q)->Enqueue(NoOpCalls(ids, static_cast<size_t>(batch), now)).ok())
      return state.SkipWithError("enqueue");
    auto leased = (*q)->Lease({.shard = 0, .now = now, .max = static_cast<size_t>(batch)});
    if (!leased.ok() || leased->size() != static_cast<size_t>(batch)) {
      return state.SkipWithError("lease");
    }
    acks.clear();
    for (const LeasedCall& l : *leased) acks.push_back(Settlement::Ack(l.token));
    if (!(*q)->Settle(acks, now).ok()) return state.SkipWithError("settle");
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_PostgresQueueCycle)->ArgName("batch")->Arg(1)->Arg(100)->UseRealTime();

// The baseline: the same table shape as PostgresQueue's (so indexes cost the same), one row per
// statement.
void BM_NaiveSingleRowQueueCycle(benchmark::State& state) {
  const int64_t batch = state.range(0);
  BenchDatabase db(state);
  if (db.url().empty()) return;
  auto conn = PgConnection::Open(db.url());
  if (!conn.ok() ||
      !(*conn)
           ->Exec("CREATE TABLE jobs (id bytea PRIMARY KEY, seq bigint GENERATED ALWAYS AS "
                  "IDENTITY, due bigint NOT NULL, token bigint NOT NULL DEFAULT 0, "
                  "state smallint NOT NULL DEFAULT 0, call bytea NOT NULL); "
                  "CREATE INDEX jobs_due ON jobs (due, seq) WHERE state < 2; "
                  "CREATE SEQUENCE tokens")
           .ok()) {
    return state.SkipWithError("cannot create the table");
  }
  CallIdGenerator ids;
  struct Held {
    std::string id;
    int64_t token;
  };
  std::vector<Held> held;
  for (auto _ : state) {
    const int64_t now = absl::ToUnixNanos(absl::Now());
    for (const Call& c : NoOpCalls(ids, static_cast<size_t>(batch), absl::FromUnixNanos(now))) {
      if (!(*conn)
               ->Exec(
                   "INSERT INTO jobs (id, due, call) VALUES ($1::bytea, $2::bigint, $3::bytea)",
                   {PgParam::Bytes(c.id.Bytes()), PgParam::Int(now), PgParam::Bytes(EncodeCall(c))})
               .ok()) {
        return state.SkipWithError("insert");
      }
    }
    held.clear();
    for (int64_t i = 0; i < batch; ++i) {
      auto r = (*conn)->Exec(
          "UPDATE jobs SET state = 1, due = $2::bigint, token = nextval('tokens') WHERE id = "
          "(SELECT id FROM jobs WHERE state < 2 AND due <= $1::bigint ORDER BY due, seq LIMIT 1 "
          "FOR UPDATE SKIP LOCKED) RETURNING id, token, call",
          {PgParam::Int(now), PgParam::Int(now + 30'000'000'000)}, true);
      if (!r.ok() || r->rows() != 1) return state.SkipWithError("lease");
      held.push_back({r->Bytes(0, 0), r->Int(0, 1)});
    }
    for (const Held& h : held) {
      if (!(*conn)
               ->Exec("DELETE FROM jobs WHERE id = $1::bytea AND state = 1 AND token = $2::bigint",
                      {PgParam::Bytes(h.id), PgParam::Int(h.token)})
               .ok()) {
        return state.SkipWithError("ack");
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_NaiveSingleRowQueueCycle)->ArgName("batch")->Arg(100)->UseRealTime();

// BM_LeaseSkippingABacklog/storage:postgres, as txfn_bench_queue's for the embedded queues: a
// scheduler's poll of 16 calls of 16 tenants past one skipped tenant's `backlog` calls, due (an
// hour earlier: first in due order) or not (an hour later: only a bigger table). Baselines in the
// same run: /backlog:100000/due:0 and /backlog:0/due:0; goal, due:1 about as fast as due:0.
void BM_LeaseSkippingABacklog(benchmark::State& state) {
  BenchDatabase db(state);
  if (db.url().empty()) return;
  auto q = PostgresQueue::Open({.url = db.url()});
  if (!q.ok()) return state.SkipWithError("cannot open the queue");
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  const absl::Time backlog_due = state.range(1) != 0 ? t0 - absl::Hours(1) : t0 + absl::Hours(1);
  bench::PollPastABacklog(state, **q, state.range(0), backlog_due, t0);
}
BENCHMARK(BM_LeaseSkippingABacklog)
    ->Name("BM_LeaseSkippingABacklog/storage:postgres")
    ->ArgNames({"backlog", "due"})
    ->Args({0, 0})
    ->Args({100'000, 0})
    ->Args({100'000, 1})
    ->UseRealTime();

}  // namespace
}  // namespace txfn
