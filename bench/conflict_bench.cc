// ConflictSet validation cost as the history grows, against a linear scan of
// the write log (the baseline).
//
// History: N commits at ts 1..N, each writing two random 16-byte keys — a
// by-id key in index 1 and a secondary-index key in index 2. Read set: 10
// ranges over random keys never written (5 point reads on index 1, 5 short
// prefix ranges on index 2), checked with after = 0, so every write is newer
// than the reader's begin ts: nothing can be skipped, each range must be
// searched to the bottom, and the answer is "no conflict".
//
//   BM_ConflictCheck/history:N           ConflictSet::Conflicts, one fixed read set
//   BM_ConflictCheckColdReads/history:N  same, cycling through 4096 read sets (cache-cold paths)
//   BM_ConflictCheckNaive/history:N      scan every write of every commit against every range
//   BM_ConflictCheckTreap/history:N, BM_ConflictCheckColdReadsTreap/history:N
//                                        the same on the old treap (TreapConflictSet)
//
// Goal: BM_ConflictCheck at 1,000,000 commits costs at most 2x its cost at
// 1,000 commits; the naive scan grows linearly.
//
// Add throughput in steady state: the set holds N random 16-byte keys; each
// iteration Adds one more at the next ts and prunes the oldest, so the size
// stays N (the committer's pattern with a full window).
//
//   BM_ConflictSetAdd/history:N          ConflictSet::Add + PruneThrough, ns per Add
//   BM_ConflictSetAddTreap/history:N     the same on the old treap (the baseline)
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "lib/conflict_set.h"
#include "treap_conflict_set.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

constexpr IndexId kByIdIndex = 1;
constexpr IndexId kSecondaryIndex = 2;
constexpr int kRangesPerCheck = 10;
constexpr int kColdReadSets = 4096;

std::string RandomKey(std::mt19937_64& rng, size_t size) {
  std::string key(size, '\0');
  for (char& c : key) c = static_cast<char>(rng());
  return key;
}

struct Commit {
  Timestamp ts;
  std::vector<std::pair<IndexId, std::string>> writes;
};

// The same commits for a given size, whether built as a log or a ConflictSet.
template <typename Fn>
void GenerateHistory(int64_t commits, Fn&& on_write) {
  std::mt19937_64 rng(1234);
  for (int64_t i = 0; i < commits; ++i) {
    const auto ts = static_cast<Timestamp>(i + 1);
    on_write(ts, kByIdIndex, RandomKey(rng, 16));
    on_write(ts, kSecondaryIndex, RandomKey(rng, 16));
  }
}

std::vector<ReadRange> RandomReadSet(std::mt19937_64& rng) {
  std::vector<ReadRange> reads;
  for (int i = 0; i < kRangesPerCheck / 2; ++i) {
    reads.push_back({.index = kByIdIndex, .range = KeyRange::Point(RandomKey(rng, 16))});
    reads.push_back({.index = kSecondaryIndex, .range = KeyRange::Prefix(RandomKey(rng, 12))});
  }
  return reads;
}

std::vector<std::vector<ReadRange>> ReadSets(int count) {
  std::mt19937_64 rng(99);  // a different stream from the history's keys
  std::vector<std::vector<ReadRange>> sets;
  for (int i = 0; i < count; ++i) sets.push_back(RandomReadSet(rng));
  return sets;
}

// Built once per size and kept for the whole run: a 1M-commit history takes
// seconds to build, and every benchmark of that size shares it.
template <typename Set = ConflictSet>
const Set& TreeHistory(int64_t commits) {
  static auto* cache = new std::map<int64_t, std::unique_ptr<Set>>();
  auto& slot = (*cache)[commits];
  if (slot == nullptr) {
    slot = std::make_unique<Set>();
    GenerateHistory(commits, [&](Timestamp ts, IndexId index, const std::string& key) {
      slot->Add(index, key, ts);
    });
  }
  return *slot;
}

const std::vector<Commit>& LogHistory(int64_t commits) {
  static auto* cache = new std::map<int64_t, std::unique_ptr<std::vector<Commit>>>();
  auto& slot = (*cache)[commits];
  if (slot == nullptr) {
    slot = std::make_unique<std::vector<Commit>>();
    GenerateHistory(commits, [&](Timestamp ts, IndexId index, std::string key) {
      if (slot->empty() || slot->back().ts != ts) slot->push_back({ts, {}});
      slot->back().writes.emplace_back(index, std::move(key));
    });
  }
  return *slot;
}

bool NaiveConflicts(const std::vector<Commit>& log, absl::Span<const ReadRange> reads,
                    Timestamp after) {
  for (const Commit& commit : log) {
    if (commit.ts <= after) continue;
    for (const auto& [index, key] : commit.writes) {
      for (const ReadRange& read : reads) {
        if (read.index == index && read.range.Contains(key)) return true;
      }
    }
  }
  return false;
}

void SetCounters(benchmark::State& state) {
  state.counters["history_writes"] = static_cast<double>(2 * state.range(0));
  state.counters["ranges_per_check"] = kRangesPerCheck;
  state.counters["checks_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

template <typename Set>
void ConflictCheck(benchmark::State& state) {
  const Set& set = TreeHistory<Set>(state.range(0));
  const std::vector<ReadRange> reads = ReadSets(1).front();
  // Sanity: the read set finds nothing, but a written key would conflict.
  std::vector<ReadRange> hit = reads;
  std::mt19937_64 rng(1234);
  hit.push_back({.index = kByIdIndex, .range = KeyRange::Point(RandomKey(rng, 16))});
  if (set.Conflicts(reads, 0) || !set.Conflicts(hit, 0)) {
    state.SkipWithError("read set does not exercise a full no-conflict check");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(set.Conflicts(reads, /*after=*/0));
  }
  SetCounters(state);
}
void BM_ConflictCheck(benchmark::State& state) { ConflictCheck<ConflictSet>(state); }
BENCHMARK(BM_ConflictCheck)->ArgName("history")->Arg(1000)->Arg(1000000);
void BM_ConflictCheckTreap(benchmark::State& state) { ConflictCheck<TreapConflictSet>(state); }
BENCHMARK(BM_ConflictCheckTreap)->ArgName("history")->Arg(1000)->Arg(1000000);

template <typename Set>
void ConflictCheckColdReads(benchmark::State& state) {
  const Set& set = TreeHistory<Set>(state.range(0));
  const std::vector<std::vector<ReadRange>> read_sets = ReadSets(kColdReadSets);
  size_t next = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(set.Conflicts(read_sets[next], /*after=*/0));
    next = (next + 1) % read_sets.size();
  }
  SetCounters(state);
}
void BM_ConflictCheckColdReads(benchmark::State& state) {
  ConflictCheckColdReads<ConflictSet>(state);
}
BENCHMARK(BM_ConflictCheckColdReads)->ArgName("history")->Arg(1000)->Arg(1000000);
void BM_ConflictCheckColdReadsTreap(benchmark::State& state) {
  ConflictCheckColdReads<TreapConflictSet>(state);
}
BENCHMARK(BM_ConflictCheckColdReadsTreap)->ArgName("history")->Arg(1000)->Arg(1000000);

void BM_ConflictCheckNaive(benchmark::State& state) {
  const std::vector<Commit>& log = LogHistory(state.range(0));
  const std::vector<ReadRange> reads = ReadSets(1).front();
  if (NaiveConflicts(log, reads, 0)) {
    state.SkipWithError("read set hits the history");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(NaiveConflicts(log, reads, /*after=*/0));
  }
  SetCounters(state);
}
BENCHMARK(BM_ConflictCheckNaive)->ArgName("history")->Arg(1000)->Arg(100000);

// A set in steady state: N keys, one Add at each ts, pruned to the last N.
// Kept across the benchmark's repeated runs (filling 1M keys takes seconds).
template <typename Set>
struct SteadyState {
  Set set;
  std::mt19937_64 rng{4321};
  Timestamp ts = 0;
};

template <typename Set>
void ConflictSetAdd(benchmark::State& state) {
  const int64_t window = state.range(0);
  static auto* cache = new std::map<int64_t, std::unique_ptr<SteadyState<Set>>>();
  auto& slot = (*cache)[window];
  if (slot == nullptr) {
    slot = std::make_unique<SteadyState<Set>>();
    for (int64_t i = 0; i < window; ++i) {
      slot->set.Add(kByIdIndex, RandomKey(slot->rng, 16), ++slot->ts);
    }
  }
  SteadyState<Set>& s = *slot;
  std::string key(16, '\0');
  for (auto _ : state) {
    const uint64_t a = s.rng();
    const uint64_t b = s.rng();
    std::memcpy(key.data(), &a, 8);
    std::memcpy(key.data() + 8, &b, 8);
    s.set.Add(kByIdIndex, key, ++s.ts);
    s.set.PruneThrough(s.ts - static_cast<Timestamp>(window));
  }
  if (s.set.size() != static_cast<size_t>(window)) {
    state.SkipWithError("the set did not stay at its window size");
  }
  state.counters["set_size"] = static_cast<double>(s.set.size());
  state.counters["adds_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
void BM_ConflictSetAdd(benchmark::State& state) { ConflictSetAdd<ConflictSet>(state); }
BENCHMARK(BM_ConflictSetAdd)->ArgName("history")->Arg(1000)->Arg(1000000);
void BM_ConflictSetAddTreap(benchmark::State& state) { ConflictSetAdd<TreapConflictSet>(state); }
BENCHMARK(BM_ConflictSetAddTreap)->ArgName("history")->Arg(1000)->Arg(1000000);

}  // namespace
}  // namespace txfn
