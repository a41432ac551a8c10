// Commit throughput of the committer on PostgresStorage, against the server in TXFN_TEST_PG
// (scripts/pg-cluster; synchronous_commit on: every Write waits for its WAL flush).
//
//   BM_PgCommitUnbatched/threads:N       the baseline: each transaction (insert one small
//                                        document) commits in its own Write — one round
//                                        trip and one WAL flush per commit
//                                        (CommitterOptions::max_batch_commits = 1).
//   BM_PgCommitNonConflicting/threads:N  the same transactions with group commit (the
//                                        default options): a batch of commits is one
//                                        Write, one round trip (SELECT txfn_write(...)).
// Counters: commits_per_s (wall clock, all threads), commits_per_round_trip (commits per
// Storage::Write), and on the batched runs vs_unbatched = commits_per_s / the baseline's at
// the same thread count (the baseline runs first).
// Without TXFN_TEST_PG every benchmark is skipped with a message.

#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "bench/pg_bench_util.h"
#include "benchmark/benchmark.h"
#include "txfn/committer.h"
#include "txfn/postgres_storage.h"
#include "txfn/schema.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

// A schema of its own on the server (dropped last), its storage and a committer.
struct PgFixture {
  std::unique_ptr<bench::PgBenchSchema> schema;
  std::shared_ptr<PostgresStorage> storage;
  std::unique_ptr<Committer> committer;
};

PgFixture* fixture = nullptr;  // set up by thread 0 before the timed loop
std::map<int, double>* unbatched_rate = new std::map<int, double>;  // by thread count

std::string SetUp(size_t max_batch_commits) {
  auto f = std::make_unique<PgFixture>();
  auto schema = bench::PgBenchSchema::Create();
  if (!schema.ok()) return std::string(schema.status().message());
  f->schema = *std::move(schema);
  auto storage = PostgresStorage::Open({.url = f->schema->url(), .max_connections = 4});
  if (!storage.ok()) return std::string(storage.status().message());
  f->storage = *std::move(storage);
  auto committer = Committer::Open(f->storage, "bench", {.max_batch_commits = max_batch_commits});
  if (!committer.ok()) return std::string(committer.status().message());
  f->committer = *std::move(committer);
  Transaction deploy(f->committer->Latest());
  if (!deploy
           .DeploySchema(*Schema::FromJson(R"({"tables": {"events": {
            "fields": {"n": "int64", "thread": "int64"}, "indexes": {"by_n": ["n"]}}}})"))
           .ok() ||
      !f->committer->Commit(deploy.Prepare()).ok()) {
    return "deploy failed";
  }
  fixture = f.release();
  return "";
}

void RunCommits(benchmark::State& state, size_t max_batch_commits) {
  // Every thread skips (a thread leaving its loop early without an error aborts the run).
  if (const char* server = std::getenv("TXFN_TEST_PG"); server == nullptr || *server == '\0') {
    state.SkipWithError("TXFN_TEST_PG is not set: start a server with scripts/pg-cluster");
    return;
  }
  if (state.thread_index() == 0) {
    if (std::string error = SetUp(max_batch_commits); !error.empty()) {
      state.SkipWithError(error.c_str());
    }
  }
  int64_t n = 0;
  absl::Time start = absl::Now();
  for (auto _ : state) {
    if (fixture == nullptr) {  // thread 0's set-up failed
      state.SkipWithError("set-up failed");
      break;
    }
    Transaction txn(fixture->committer->Latest());
    auto id =
        txn.Insert("events", Value::FromObject({{"n", Value::Int64(n++)},
                                                {"thread", Value::Int64(state.thread_index())}}));
    if (!id.ok() || !fixture->committer->Commit(txn.Prepare()).ok()) {
      state.SkipWithError("commit failed");
      break;
    }
  }
  absl::Duration elapsed = absl::Now() - start;
  if (state.thread_index() == 0 && fixture != nullptr) {
    const double rate =
        static_cast<double>(state.iterations()) * state.threads() / absl::ToDoubleSeconds(elapsed);
    state.counters["commits_per_s"] = rate;
    CommitterStats stats = fixture->committer->stats();
    state.counters["commits_per_round_trip"] =
        static_cast<double>(stats.commits) /
        static_cast<double>(std::max<uint64_t>(1, stats.batches));
    if (max_batch_commits == 1) {
      (*unbatched_rate)[state.threads()] = rate;
    } else if (auto it = unbatched_rate->find(state.threads()); it != unbatched_rate->end()) {
      state.counters["vs_unbatched"] = rate / it->second;
    }
    delete fixture;
    fixture = nullptr;
  }
}

void BM_PgCommitUnbatched(benchmark::State& state) { RunCommits(state, 1); }
void BM_PgCommitNonConflicting(benchmark::State& state) { RunCommits(state, 64); }

// Each batched run right after its baseline: the server's fsync latency drifts with the
// machine's load.
BENCHMARK(BM_PgCommitUnbatched)->Threads(1)->UseRealTime();
BENCHMARK(BM_PgCommitNonConflicting)->Threads(1)->UseRealTime();
BENCHMARK(BM_PgCommitUnbatched)->Threads(4)->UseRealTime();
BENCHMARK(BM_PgCommitNonConflicting)->Threads(4)->UseRealTime();
BENCHMARK(BM_PgCommitUnbatched)->Threads(16)->UseRealTime();
BENCHMARK(BM_PgCommitNonConflicting)->Threads(16)->UseRealTime();

}  // namespace
}  // namespace txfn
