// SqliteStorage throughput, against InMemoryStorage as the baseline in the
// same run (the ratio is what durability costs), and across synchronous modes.
//
//   BM_OneDocCommit/<adapter>  one one-document commit per Write (by_id + one
//                              secondary entry): in-memory, SQLite OFF, NORMAL, FULL
//   BM_SixteenCommits/<mode>   16 one-document commits as 16 Writes vs one Write
//                              of 16 (group commit): counter commits_per_txn
//   BM_Get, BM_Scan100         point reads and 100-entry range scans (both
//                              orders) over 50,000 documents with 2 versions each
//   BM_SqliteRetention         ApplyRetention trimming 100,000 old versions (100
//                              documents written 1,001 times, 1,001 commits),
//                              in steps of 1,000 commits as the engine does.
//                              Reported time: the trim. Baseline in the same
//                              iteration: writing those versions (write_ms;
//                              trim_vs_write = trim / write). Counters: file
//                              size before and after (KiB, after a clean close),
//                              versions dropped.
//
// The database lives in a fresh directory under $TMPDIR (default /tmp); put it
// on the disk you care about: FULL's cost is that disk's fsync.
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "fmt/core.h"
#include "txfn/in_memory_storage.h"
#include "txfn/sqlite_storage.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

enum Adapter : int64_t { kInMemory = 0, kSqliteOff = 1, kSqliteNormal = 2, kSqliteFull = 3 };

const char* AdapterName(int64_t a) {
  switch (a) {
    case kInMemory:
      return "in_memory";
    case kSqliteOff:
      return "sqlite_off";
    case kSqliteNormal:
      return "sqlite_normal";
    default:
      return "sqlite_full";
  }
}

// A Storage of the given kind; a SQLite file in a temporary directory removed
// with the object.
class BenchStorage {
 public:
  explicit BenchStorage(int64_t adapter) {
    if (adapter == kInMemory) {
      storage_ = std::make_unique<InMemoryStorage>();
      return;
    }
    const char* tmp = getenv("TMPDIR");
    std::string pattern = fmt::format("{}/txfn_sqlite_bench_XXXXXX", tmp != nullptr ? tmp : "/tmp");
    if (mkdtemp(pattern.data()) == nullptr) return;
    dir_ = pattern;
    SqliteOptions options;
    options.synchronous = adapter == kSqliteOff      ? SqliteOptions::Synchronous::kOff
                          : adapter == kSqliteNormal ? SqliteOptions::Synchronous::kNormal
                                                     : SqliteOptions::Synchronous::kFull;
    auto opened = SqliteStorage::Open(dir_ + "/bench.db", options);
    if (opened.ok()) storage_ = *std::move(opened);
  }
  ~BenchStorage() {
    storage_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  Storage* get() { return storage_.get(); }
  const std::string& dir() const { return dir_; }
  // Closes the database cleanly (checkpointing the WAL into the file).
  void Close() { storage_.reset(); }

 private:
  std::string dir_;
  std::unique_ptr<Storage> storage_;
};

std::string DocKey(uint64_t i) {
  std::string key = "doc/";
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(i >> shift));
  return key;
}

// A one-document commit: the document in by_id plus one secondary index entry.
CommitRecord OneDocCommit(Timestamp ts, uint64_t doc) {
  return CommitRecord{"tenant",
                      ts,
                      {{1, DocKey(doc), std::string(200, static_cast<char>('a' + ts % 26))},
                       {2, "idx/" + DocKey(doc), DocKey(doc)}}};
}

void BM_OneDocCommit(benchmark::State& state) {
  BenchStorage storage(state.range(0));
  if (storage.get() == nullptr) return state.SkipWithError("open failed");
  state.SetLabel(AdapterName(state.range(0)));
  Timestamp ts = 0;
  for (auto _ : state) {
    ++ts;
    CommitRecord c = OneDocCommit(ts, ts * 7919);
    if (!storage.get()->Write({&c, 1}).ok()) state.SkipWithError("Write failed");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OneDocCommit)
    ->ArgName("adapter")
    ->Arg(kInMemory)
    ->Arg(kSqliteOff)
    ->Arg(kSqliteNormal)
    ->Arg(kSqliteFull)
    ->UseRealTime();

// 16 one-document commits per iteration: as 16 single Writes (batched = 0) or
// one Write of 16 (batched = 1). With FULL, each Write is one WAL fsync.
void BM_SixteenCommits(benchmark::State& state) {
  BenchStorage storage(state.range(0));
  if (storage.get() == nullptr) return state.SkipWithError("open failed");
  const bool batched = state.range(1) != 0;
  state.SetLabel(fmt::format("{} {}", AdapterName(state.range(0)),
                             batched ? "one Write of 16" : "16 Writes of 1"));
  Timestamp ts = 0;
  std::vector<CommitRecord> batch;
  for (auto _ : state) {
    batch.clear();
    for (int i = 0; i < 16; ++i) {
      ++ts;
      batch.push_back(OneDocCommit(ts, ts * 7919));
    }
    if (batched) {
      if (!storage.get()->Write(batch).ok()) state.SkipWithError("Write failed");
    } else {
      for (const CommitRecord& c : batch) {
        if (!storage.get()->Write({&c, 1}).ok()) state.SkipWithError("Write failed");
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * 16);
  state.counters["commits_per_txn"] = batched ? 16 : 1;
}
BENCHMARK(BM_SixteenCommits)
    ->ArgNames({"adapter", "batched"})
    ->ArgsProduct({{kInMemory, kSqliteNormal, kSqliteFull}, {0, 1}})
    ->UseRealTime();

constexpr uint64_t kDocs = 50000;

// kDocs documents written twice (two versions each), in batches of 1000.
bool Preload(Storage* storage) {
  Timestamp ts = 0;
  for (int version = 0; version < 2; ++version) {
    for (uint64_t first = 0; first < kDocs; first += 1000) {
      CommitRecord c{.tenant = "tenant", .ts = ++ts};
      for (uint64_t d = first; d < first + 1000; ++d) {
        c.writes.push_back({1, DocKey(d), std::string(200, static_cast<char>('a' + version))});
      }
      if (!storage->Write({&c, 1}).ok()) return false;
    }
  }
  return true;
}

void BM_Get(benchmark::State& state) {
  BenchStorage storage(state.range(0));
  if (storage.get() == nullptr || !Preload(storage.get())) {
    return state.SkipWithError("open or preload failed");
  }
  state.SetLabel(AdapterName(state.range(0)));
  const Timestamp max = storage.get()->MaxCommittedTimestamp("tenant").value();
  std::mt19937_64 rng(42);
  int64_t found = 0;
  for (auto _ : state) {
    uint64_t d = rng() % kDocs;
    // Half the reads at the newest ts, half at one where the first version is visible.
    Timestamp ts = (d & 1) != 0 ? max : max / 2;
    auto entry = storage.get()->Get("tenant", 1, DocKey(d), ts);
    if (!entry.ok()) state.SkipWithError("Get failed");
    found += entry->has_value() ? 1 : 0;
  }
  if (found != state.iterations()) state.SkipWithError("a document is missing");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Get)->ArgName("adapter")->Arg(kInMemory)->Arg(kSqliteFull);

void BM_Scan100(benchmark::State& state) {
  BenchStorage storage(state.range(0));
  if (storage.get() == nullptr || !Preload(storage.get())) {
    return state.SkipWithError("open or preload failed");
  }
  const bool descending = state.range(1) != 0;
  state.SetLabel(
      fmt::format("{} {}", AdapterName(state.range(0)), descending ? "descending" : "ascending"));
  const Timestamp max = storage.get()->MaxCommittedTimestamp("tenant").value();
  std::mt19937_64 rng(42);
  for (auto _ : state) {
    uint64_t d = rng() % (kDocs - 200);
    KeyRange range = KeyRange::HalfOpen(DocKey(d), DocKey(d + 150));
    auto rows = storage.get()->Scan(
        "tenant", 1, range, max, descending ? ScanOrder::kDescending : ScanOrder::kAscending, 100);
    if (!rows.ok() || rows->size() != 100) state.SkipWithError("Scan failed");
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_Scan100)
    ->ArgNames({"adapter", "desc"})
    ->ArgsProduct({{kInMemory, kSqliteFull}, {0, 1}});

// 100 keys, one of them hot with 10,000 versions: a Scan of all 100 at the
// newest ts. The SQLite scan leaves the hot key by a seek instead of walking
// its versions.
void BM_ScanOverHotKey(benchmark::State& state) {
  BenchStorage storage(state.range(0));
  if (storage.get() == nullptr) return state.SkipWithError("open failed");
  state.SetLabel(AdapterName(state.range(0)));
  Timestamp ts = 0;
  CommitRecord first{.tenant = "tenant", .ts = ++ts};
  for (uint64_t d = 0; d < 100; ++d) first.writes.push_back({1, DocKey(d), "cold"});
  std::vector<CommitRecord> batch;
  for (int i = 0; i < 10000; ++i) {
    ++ts;
    batch.push_back({"tenant", ts, {{1, DocKey(50), std::to_string(i)}}});
  }
  if (!storage.get()->Write({&first, 1}).ok() || !storage.get()->Write(batch).ok()) {
    return state.SkipWithError("preload failed");
  }
  for (auto _ : state) {
    auto rows = storage.get()->Scan("tenant", 1, KeyRange::All(), ts, ScanOrder::kAscending, 0);
    if (!rows.ok() || rows->size() != 100) state.SkipWithError("Scan failed");
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_ScanOverHotKey)->ArgName("adapter")->Arg(kInMemory)->Arg(kSqliteOff);

// 100 documents written 1,001 times (one commit per round, 100 writes each):
// 100,000 old versions and 100 live ones; then one retention to the newest
// commit, as the engine's background pass does it (steps of 1,000 commits).
void BM_SqliteRetention(benchmark::State& state) {
  constexpr uint64_t kRetentionDocs = 100;
  constexpr Timestamp kRounds = 1001;
  constexpr size_t kStepCommits = 1000;
  using Clock = std::chrono::steady_clock;
  double write_ms = 0, trim_ms = 0, kib_before = 0, kib_after = 0;
  uint64_t dropped = 0;
  for (auto _ : state) {
    BenchStorage storage(kSqliteNormal);
    if (storage.get() == nullptr) return state.SkipWithError("open failed");
    const std::string path = storage.dir() + "/bench.db";
    const Clock::time_point write_start = Clock::now();
    for (Timestamp ts = 1; ts <= kRounds; ++ts) {
      CommitRecord c{.tenant = "tenant", .ts = ts};
      for (uint64_t d = 0; d < kRetentionDocs; ++d) {
        c.writes.push_back({1, DocKey(d), std::string(200, static_cast<char>('a' + ts % 26))});
      }
      if (!storage.get()->Write({&c, 1}).ok()) return state.SkipWithError("Write failed");
    }
    write_ms += std::chrono::duration<double, std::milli>(Clock::now() - write_start).count();
    // The file as it is after a clean close (the WAL checkpointed into it).
    {
      SqliteOptions options{.synchronous = SqliteOptions::Synchronous::kNormal};
      storage.Close();
      kib_before += static_cast<double>(std::filesystem::file_size(path)) / 1024;
      auto reopened = SqliteStorage::Open(path, options);
      if (!reopened.ok()) return state.SkipWithError("reopen failed");
      const Clock::time_point trim_start = Clock::now();
      while (true) {
        auto result = (*reopened)->ApplyRetention("tenant", kRounds, kStepCommits);
        if (!result.ok()) return state.SkipWithError(result.status().ToString().c_str());
        dropped += result->versions_dropped;
        if (result->done) break;
      }
      const double ms =
          std::chrono::duration<double, std::milli>(Clock::now() - trim_start).count();
      trim_ms += ms;
      state.SetIterationTime(ms / 1000);
      reopened->reset();
      kib_after += static_cast<double>(std::filesystem::file_size(path)) / 1024;
    }
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["write_ms"] = write_ms / n;
  state.counters["trim_ms"] = trim_ms / n;
  state.counters["trim_vs_write"] = trim_ms / write_ms;
  state.counters["versions_dropped"] = static_cast<double>(dropped) / n;
  state.counters["file_kib_before"] = kib_before / n;
  state.counters["file_kib_after"] = kib_after / n;
  state.counters["versions_per_s"] = static_cast<double>(dropped) / (trim_ms / 1000);
}
BENCHMARK(BM_SqliteRetention)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace txfn

BENCHMARK_MAIN();
