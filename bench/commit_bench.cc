// Commit throughput of the OCC committer on InMemoryStorage.
//
// BM_CommitNonConflicting: each iteration runs a whole transaction (begin at
// the latest snapshot, insert one small document, prepare, commit). Threads
// insert distinct documents, so nothing conflicts; with 2 threads, commits
// group into shared storage batches.
// Baseline in the same run: BM_CommitBaselineRawWrite writes the same one-key
// commit records straight to Storage::Write, with no transaction, validation
// or snapshot publication — the floor the committer's overhead adds to.
#include <atomic>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "txfn/committer.h"
#include "txfn/in_memory_storage.h"
#include "txfn/schema.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

struct CommitFixture {
  std::shared_ptr<InMemoryStorage> storage = std::make_shared<InMemoryStorage>();
  std::unique_ptr<Committer> committer;
};

CommitFixture* fixture = nullptr;  // set up by thread 0 before the timed loop

void BM_CommitNonConflicting(benchmark::State& state) {
  if (state.thread_index() == 0) {
    fixture = new CommitFixture;
    fixture->committer = *Committer::Open(fixture->storage, "bench");
    Transaction deploy(fixture->committer->Latest());
    if (!deploy
             .DeploySchema(*Schema::FromJson(R"({"tables": {"events": {
            "fields": {"n": "int64", "thread": "int64"},
            "indexes": {"by_n": ["n"]}}}})"))
             .ok() ||
        !fixture->committer->Commit(deploy.Prepare()).ok()) {
      state.SkipWithError("deploy failed");
    }
  }
  int64_t n = 0;
  absl::Time start = absl::Now();
  for (auto _ : state) {
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
  if (state.thread_index() == 0) {
    // Wall-clock commits per second of all threads together (threads run
    // about the same number of iterations).
    state.counters["commits_per_s"] =
        static_cast<double>(state.iterations()) * state.threads() / absl::ToDoubleSeconds(elapsed);
    CommitterStats stats = fixture->committer->stats();
    state.counters["commits_per_batch"] = static_cast<double>(stats.commits) /
                                          static_cast<double>(std::max<uint64_t>(1, stats.batches));
    delete fixture;
    fixture = nullptr;
  }
}
BENCHMARK(BM_CommitNonConflicting)->Threads(1)->Threads(2);

std::shared_ptr<InMemoryStorage>* raw_storage = nullptr;
std::atomic<Timestamp> raw_ts{0};

void BM_CommitBaselineRawWrite(benchmark::State& state) {
  if (state.thread_index() == 0) {
    raw_storage = new std::shared_ptr<InMemoryStorage>(std::make_shared<InMemoryStorage>());
    raw_ts = 0;
  }
  int64_t n = 0;
  absl::Time start = absl::Now();
  std::string doc = EncodeBinary(Value::FromObject({{"n", Value::Int64(0)}}));
  for (auto _ : state) {
    // Timestamps must increase per tenant: one tenant per thread.
    CommitRecord record{.tenant = "bench" + std::to_string(state.thread_index()),
                        .ts = static_cast<Timestamp>(++n),
                        .writes = {{.index = 1, .key = std::to_string(n), .value = doc}}};
    if (!(*raw_storage)->Write({&record, 1}).ok()) {
      state.SkipWithError("write failed");
      break;
    }
  }
  absl::Duration elapsed = absl::Now() - start;
  if (state.thread_index() == 0) {
    state.counters["commits_per_s"] =
        static_cast<double>(state.iterations()) * state.threads() / absl::ToDoubleSeconds(elapsed);
    delete raw_storage;
    raw_storage = nullptr;
  }
}
BENCHMARK(BM_CommitBaselineRawWrite)->Threads(1)->Threads(2);

}  // namespace
}  // namespace txfn
