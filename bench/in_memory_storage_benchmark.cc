// InMemoryStorage throughput. Baseline: the same work done on a bare
// std::map + std::vector under one std::mutex (no versions, no validation, no
// tenants) — the ratio is what the adapter's contract costs on top.
// The committer's target: >= 200,000 one-document commits/s through Write.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "txfn/in_memory_storage.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

constexpr int kPreloaded = 100000;

std::string DocKey(uint64_t i) {
  std::string key = "doc/";
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(i >> shift));
  return key;
}
const std::string& DocValue() {
  static const auto* v = new std::string(200, 'd');
  return *v;
}

// A one-document commit: the document in by_id plus one secondary index entry.
CommitRecord OneDocCommit(Timestamp ts, uint64_t doc) {
  return CommitRecord{
      "tenant", ts, {{1, DocKey(doc), DocValue()}, {2, "idx/" + DocKey(doc), DocKey(doc)}}};
}

void BM_Baseline_MapCommit(benchmark::State& state) {
  std::mutex mu;
  std::map<std::string, std::string> by_id, by_index;
  std::vector<CommitRecord> log;
  Timestamp ts = 0;
  for (auto _ : state) {
    ++ts;
    CommitRecord c = OneDocCommit(ts, ts * 7919);
    std::lock_guard<std::mutex> lock(mu);
    by_id[c.writes[0].key] = *c.writes[0].value;
    by_index[c.writes[1].key] = *c.writes[1].value;
    log.push_back(std::move(c));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Baseline_MapCommit);

void BM_InMemory_WriteOneDocCommit(benchmark::State& state) {
  InMemoryStorage storage;
  Timestamp ts = 0;
  for (auto _ : state) {
    ++ts;
    CommitRecord c = OneDocCommit(ts, ts * 7919);
    if (!storage.Write({&c, 1}).ok()) state.SkipWithError("Write failed");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InMemory_WriteOneDocCommit);

// Group commit: 64 one-document commits per Write.
void BM_InMemory_WriteBatch64(benchmark::State& state) {
  InMemoryStorage storage;
  Timestamp ts = 0;
  std::vector<CommitRecord> batch;
  for (auto _ : state) {
    state.PauseTiming();
    batch.clear();
    for (int i = 0; i < 64; ++i) {
      ++ts;
      batch.push_back(OneDocCommit(ts, ts * 7919));
    }
    state.ResumeTiming();
    if (!storage.Write(batch).ok()) state.SkipWithError("Write failed");
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_InMemory_WriteBatch64);

void BM_Baseline_MapGet(benchmark::State& state) {
  static std::mutex mu;
  static const auto* map = [] {
    auto* m = new std::map<std::string, std::string>;
    for (int i = 0; i < kPreloaded; ++i) (*m)[DocKey(static_cast<uint64_t>(i))] = DocValue();
    return m;
  }();
  uint64_t i = static_cast<uint64_t>(state.thread_index()) * 7;
  for (auto _ : state) {
    std::string key = DocKey((i += 7919) % kPreloaded);
    std::lock_guard<std::mutex> lock(mu);
    auto it = map->find(key);
    benchmark::DoNotOptimize(it);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Baseline_MapGet)->Threads(1)->Threads(2);

InMemoryStorage* Preloaded() {
  static InMemoryStorage* storage = [] {
    auto* s = new InMemoryStorage;
    std::vector<CommitRecord> batch;
    for (int i = 0; i < kPreloaded; ++i) {
      batch.push_back(OneDocCommit(static_cast<Timestamp>(i + 1), static_cast<uint64_t>(i)));
      if (batch.size() == 1000) {
        if (!s->Write(batch).ok()) std::abort();
        batch.clear();
      }
    }
    return s;
  }();
  return storage;
}

void BM_InMemory_Get(benchmark::State& state) {
  InMemoryStorage* storage = Preloaded();
  uint64_t i = static_cast<uint64_t>(state.thread_index()) * 7;
  for (auto _ : state) {
    auto entry = storage->Get("tenant", 1, DocKey((i += 7919) % kPreloaded), kPreloaded);
    benchmark::DoNotOptimize(entry);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InMemory_Get)->Threads(1)->Threads(2);

void BM_InMemory_Scan100(benchmark::State& state) {
  InMemoryStorage* storage = Preloaded();
  uint64_t i = static_cast<uint64_t>(state.thread_index()) * 7;
  for (auto _ : state) {
    auto rows = storage->Scan("tenant", 1, KeyRange::After(DocKey((i += 7919) % kPreloaded)),
                              kPreloaded, ScanOrder::kAscending, 100);
    benchmark::DoNotOptimize(rows);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_InMemory_Scan100)->Threads(1)->Threads(2);

}  // namespace
}  // namespace txfn

BENCHMARK_MAIN();
