// AsyncLruCache against a baseline LRU (one mutex, std::list + std::unordered_map).
//
// Workload: 1M keys, Zipfian ranks (s = 0.99) scrambled by hashing the rank, capacity
// 100k, cache prefilled with the 100k hottest keys. The key sequence is computed once,
// outside timing; each thread walks it from its own offset.
//   *Get:   Get(key, loader) — a hit returns the cached value, a miss loads (allocates
//           the value) and installs it, as a loading cache is used.
//   *Mixed: 75% Get as above, 25% Put of a fresh value.
//   *Stampede: 64 threads miss on one key at once on a fresh cache; counter `loads`
//           (per iteration) is 1 for AsyncLruCache and up to 64 for the baseline.
//
// Counters: items_per_second is Google Benchmark's rate, computed over measured CPU time
// (so it undercounts when threads are descheduled on a busy machine); wall_ops_per_s is
// the aggregate wall-clock throughput of all threads, the figure to compare at threads:2.
// hits / gets = hit ratio (about 0.77 for both caches). Each read-only "Get" that misses
// loads and installs (both caches do the same work), so the "read-only" runs still evict.
// After the table the binary prints, for each AsyncLruCache row, the ratio of its
// wall_ops_per_s (median over repetitions) to the matching MutexLru row, and `loads`
// for the stampede rows.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <latch>
#include <list>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"
#include "txfn/async_lru_cache.h"
#include "txfn/internal/mutex.h"

namespace txfn {
namespace {

constexpr uint64_t kKeySpace = 1'000'000;
constexpr size_t kCapacity = 100'000;
constexpr size_t kSequence = size_t{1} << 20;  // precomputed operations
constexpr size_t kBatch = 64;                  // operations per benchmark iteration

using Payload = uint64_t;
using ValuePtr = std::shared_ptr<const Payload>;

uint64_t Scramble(uint64_t rank) {  // splitmix64 finalizer
  uint64_t z = rank + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct Workload {
  std::vector<uint64_t> keys;   // kSequence Zipfian keys
  std::vector<uint8_t> is_put;  // for the mixed workload: 1 in 4
  std::vector<uint64_t> hot;    // the kCapacity hottest keys, coldest first
};

const Workload& GetWorkload() {
  static const Workload* const workload = [] {
    auto* w = new Workload;
    std::vector<double> cdf(kKeySpace);
    double sum = 0;
    for (uint64_t i = 0; i < kKeySpace; ++i) {
      sum += std::pow(static_cast<double>(i + 1), -0.99);
      cdf[i] = sum;
    }
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> unit(0, sum);
    w->keys.reserve(kSequence);
    w->is_put.reserve(kSequence);
    for (size_t i = 0; i < kSequence; ++i) {
      uint64_t rank = std::lower_bound(cdf.begin(), cdf.end(), unit(rng)) - cdf.begin();
      w->keys.push_back(Scramble(rank));
      w->is_put.push_back((rng() & 3) == 0 ? 1 : 0);
    }
    for (uint64_t rank = kCapacity; rank-- > 0;) w->hot.push_back(Scramble(rank));
    return w;
  }();
  return *workload;
}

ValuePtr MakeValue(uint64_t key) { return std::make_shared<const Payload>(key); }

// The baseline: a straightforward LRU behind one mutex.
class MutexLru {
 public:
  explicit MutexLru(size_t capacity) : capacity_(capacity) {}

  template <typename Loader>
  ValuePtr Get(uint64_t key, Loader&& loader) {
    {
      internal::MutexLock lock(&mu_);
      auto it = map_.find(key);
      if (it != map_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);
        ++hits_;
        return it->second->second;
      }
    }
    ValuePtr value = loader();
    Put(key, value);
    return value;
  }

  void Put(uint64_t key, ValuePtr value) {
    internal::MutexLock lock(&mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      it->second->second = std::move(value);
      lru_.splice(lru_.begin(), lru_, it->second);
      return;
    }
    lru_.emplace_front(key, std::move(value));
    map_.emplace(key, lru_.begin());
    if (map_.size() > capacity_) {
      map_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }

  uint64_t hits() {
    internal::MutexLock lock(&mu_);
    return hits_;
  }

 private:
  using List = std::list<std::pair<uint64_t, ValuePtr>>;
  const size_t capacity_;
  internal::Mutex mu_;
  List lru_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, List::iterator> map_ ABSL_GUARDED_BY(mu_);
  uint64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
};

using Cache = AsyncLruCache<uint64_t, Payload>;

// Uniform access to both caches.
struct AsyncAdapter {
  using Type = Cache;
  static std::unique_ptr<Cache> Make() {
    Cache::Options options;
    options.capacity = kCapacity;
    return std::make_unique<Cache>(std::move(options));
  }
  static ValuePtr Get(Cache& c, uint64_t key) {
    absl::StatusOr<ValuePtr> v =
        c.Get(key, [key]() -> absl::StatusOr<ValuePtr> { return MakeValue(key); });
    return v.ok() ? *std::move(v) : nullptr;
  }
  static void Put(Cache& c, uint64_t key) { c.Put(key, MakeValue(key)); }
  static uint64_t Hits(Cache& c) { return c.stats().hits; }
};

struct MutexAdapter {
  using Type = MutexLru;
  static std::unique_ptr<MutexLru> Make() { return std::make_unique<MutexLru>(kCapacity); }
  static ValuePtr Get(MutexLru& c, uint64_t key) {
    return c.Get(key, [key] { return MakeValue(key); });
  }
  static void Put(MutexLru& c, uint64_t key) { c.Put(key, MakeValue(key)); }
  static uint64_t Hits(MutexLru& c) { return c.hits(); }
};

// The cache shared by the threads of one benchmark run: thread 0 builds and prefills it
// before the start barrier of the timing loop and drops it after the end barrier.
template <typename Adapter>
typename Adapter::Type*& SharedCache() {
  static typename Adapter::Type* cache = nullptr;
  return cache;
}

template <typename Adapter, bool kMixed>
void RunCacheBenchmark(benchmark::State& state) {
  const Workload& w = GetWorkload();
  auto*& shared = SharedCache<Adapter>();
  if (state.thread_index() == 0) {
    shared = Adapter::Make().release();
    for (uint64_t key : w.hot) Adapter::Put(*shared, key);
  }
  size_t pos = (static_cast<size_t>(state.thread_index()) * kSequence / 2 + 12345) % kSequence;
  uint64_t gets = 0;
  bool first = true;
  std::chrono::steady_clock::time_point start;
  for (auto _ : state) {
    if (first) {
      start = std::chrono::steady_clock::now();
      first = false;
    }
    auto& cache = *shared;
    for (size_t i = 0; i < kBatch; ++i) {
      const uint64_t key = w.keys[pos];
      if (kMixed && w.is_put[pos]) {
        Adapter::Put(cache, key);
      } else {
        benchmark::DoNotOptimize(Adapter::Get(cache, key));
        ++gets;
      }
      pos = (pos + 1) & (kSequence - 1);
    }
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double ops = static_cast<double>(state.iterations()) * kBatch;
  state.SetItemsProcessed(static_cast<int64_t>(ops));
  state.counters["wall_ops_per_s"] = benchmark::Counter(wall > 0 ? ops / wall : 0);
  // Gets of this thread; thread 0 adds the hit ratio of all threads after the end barrier.
  state.counters["gets"] = benchmark::Counter(static_cast<double>(gets));
  if (state.thread_index() == 0) {
    state.counters["hits"] = benchmark::Counter(static_cast<double>(Adapter::Hits(*shared)));
    delete shared;
    shared = nullptr;
  }
}

void BM_AsyncLruCacheGet(benchmark::State& state) { RunCacheBenchmark<AsyncAdapter, false>(state); }
void BM_MutexLruGet(benchmark::State& state) { RunCacheBenchmark<MutexAdapter, false>(state); }
void BM_AsyncLruCacheMixed(benchmark::State& state) {
  RunCacheBenchmark<AsyncAdapter, true>(state);
}
void BM_MutexLruMixed(benchmark::State& state) { RunCacheBenchmark<MutexAdapter, true>(state); }

BENCHMARK(BM_AsyncLruCacheGet)->Threads(1)->Threads(2);
BENCHMARK(BM_MutexLruGet)->Threads(1)->Threads(2);
BENCHMARK(BM_AsyncLruCacheMixed)->Threads(1)->Threads(2);
BENCHMARK(BM_MutexLruMixed)->Threads(1)->Threads(2);

// 64 threads released together miss on one key of a fresh cache.
constexpr int kStampede = 64;

template <typename Adapter, typename GetFn>
void RunStampede(benchmark::State& state, GetFn get) {
  double loads = 0;
  for (auto _ : state) {
    auto cache = Adapter::Make();
    std::latch go(kStampede);
    std::atomic<int> arrived = 0;
    std::atomic<int> calls = 0;
    auto loader = [&] {
      calls.fetch_add(1);
      // Keep the load open until every thread is at its lookup.
      while (arrived.load() < kStampede) std::this_thread::yield();
      return MakeValue(7);
    };
    std::vector<std::thread> threads;
    threads.reserve(kStampede);
    for (int t = 0; t < kStampede; ++t) {
      threads.emplace_back([&] {
        go.arrive_and_wait();
        arrived.fetch_add(1);
        benchmark::DoNotOptimize(get(*cache, loader));
      });
    }
    for (auto& t : threads) t.join();
    loads += calls.load();
  }
  state.counters["loads"] = benchmark::Counter(loads, benchmark::Counter::kAvgIterations);
}

void BM_AsyncLruCacheStampede(benchmark::State& state) {
  RunStampede<AsyncAdapter>(state, [](Cache& c, auto& loader) {
    return c.Get(42, [&]() -> absl::StatusOr<ValuePtr> { return loader(); });
  });
}
void BM_MutexLruStampede(benchmark::State& state) {
  RunStampede<MutexAdapter>(state, [](MutexLru& c, auto& loader) { return c.Get(42, loader); });
}

BENCHMARK(BM_AsyncLruCacheStampede);
BENCHMARK(BM_MutexLruStampede);

// The console table, then AsyncLruCache / MutexLru ratios of wall_ops_per_s.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  RatioReporter() : ConsoleReporter(OO_None) {}  // plain text, counters inline

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;
      for (const char* counter : {"wall_ops_per_s", "loads"}) {
        auto it = run.counters.find(counter);
        if (it != run.counters.end()) values_[run.benchmark_name()].push_back(it->second.value);
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::ostream& out = GetOutputStream();
    for (const auto& [name, values] : values_) {
      const std::string prefix = "BM_AsyncLruCache";
      if (name.rfind(prefix, 0) != 0) continue;
      const std::string baseline = "BM_MutexLru" + name.substr(prefix.size());
      auto it = values_.find(baseline);
      if (it == values_.end()) continue;
      if (name.find("Stampede") != std::string::npos) {
        out << name << ": loads " << Median(values) << " vs " << baseline << ": loads "
            << Median(it->second) << "\n";
      } else {
        out << name << " / " << baseline
            << " (wall_ops_per_s): " << Median(values) / Median(it->second) << "x\n";
      }
    }
  }

 private:
  static double Median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  std::map<std::string, std::vector<double>> values_;
};

}  // namespace
}  // namespace txfn

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  txfn::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
