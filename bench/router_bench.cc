// Benchmarks for RendezvousRouter against a consistent-hash ring baseline.
//
//   BM_RendezvousPick/nodes:N           first choice for a key (snapshot + N mixes)
//   BM_ConsistentHashRingPick/nodes:N   baseline: sorted ring, 100 virtual nodes per
//                                       node, binary search (no snapshot, no lock)
//   BM_RendezvousPickWeighted/nodes:N   unequal weights: -w/ln(h) per node
//   BM_RendezvousAcquireRelease         Acquire + Lease release, 100 nodes, 2 threads
//   BM_ConsistentHashRingAcquireRelease baseline: ring pick + capped atomic counter
//
// After the runs it prints the rendezvous/ring time ratios.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "txfn/rendezvous_router.h"

namespace txfn {
namespace {

constexpr size_t kKeys = 4096;  // power of two
constexpr int kVirtualNodes = 100;
constexpr int kMaxInFlight = 32;

std::vector<std::string> MakeKeys() {
  std::vector<std::string> keys;
  keys.reserve(kKeys);
  for (size_t i = 0; i < kKeys; ++i) keys.push_back(absl::StrCat("tenant-", i));
  return keys;
}

std::unique_ptr<RendezvousRouter<int>> MakeRouter(int nodes, bool weighted) {
  auto router = std::make_unique<RendezvousRouter<int>>();
  for (int i = 0; i < nodes; ++i) {
    const double weight = weighted ? 1.0 + i % 4 : 1.0;
    if (!router->AddNode(absl::StrCat("runner-", i), i, weight, kMaxInFlight).ok()) std::abort();
  }
  return router;
}

// The baseline: a classic consistent-hash ring with virtual nodes, hashed with
// the same stable hash so only the lookup structure differs.
class ConsistentHashRing {
 public:
  explicit ConsistentHashRing(int nodes) : in_flight_(nodes) {
    std::vector<std::pair<uint64_t, int>> points;
    points.reserve(static_cast<size_t>(nodes) * kVirtualNodes);
    for (int i = 0; i < nodes; ++i) {
      for (int v = 0; v < kVirtualNodes; ++v) {
        points.emplace_back(RendezvousHash::Of(absl::StrCat("runner-", i, "#", v)), i);
      }
    }
    std::sort(points.begin(), points.end());
    for (const auto& [h, node] : points) {
      points_.push_back(h);
      owners_.push_back(node);
    }
  }

  size_t PickPoint(std::string_view key) const {
    const uint64_t h = RendezvousHash::Of(key);
    auto it = std::lower_bound(points_.begin(), points_.end(), h);
    return it == points_.end() ? 0 : static_cast<size_t>(it - points_.begin());
  }
  int Pick(std::string_view key) const { return owners_[PickPoint(key)]; }

  // Walks the ring from the key's point to the first node under the cap.
  int Acquire(std::string_view key) {
    const size_t start = PickPoint(key);
    for (size_t j = 0; j < points_.size(); ++j) {
      const int node = owners_[(start + j) % points_.size()];
      std::atomic<int>& c = in_flight_[node];
      int cur = c.load(std::memory_order_relaxed);
      while (cur < kMaxInFlight) {
        if (c.compare_exchange_weak(cur, cur + 1, std::memory_order_acquire)) return node;
      }
    }
    return -1;
  }
  void Release(int node) { in_flight_[node].fetch_sub(1, std::memory_order_release); }

 private:
  std::vector<uint64_t> points_;
  std::vector<int> owners_;
  std::vector<std::atomic<int>> in_flight_;
};

void RendezvousPick(benchmark::State& state, bool weighted) {
  const std::vector<std::string> keys = MakeKeys();
  auto router = MakeRouter(static_cast<int>(state.range(0)), weighted);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(router->Pick(keys[i++ & (kKeys - 1)]));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["nodes"] = static_cast<double>(state.range(0));
}

void BM_ConsistentHashRingPick(benchmark::State& state) {
  const std::vector<std::string> keys = MakeKeys();
  ConsistentHashRing ring(static_cast<int>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ring.Pick(keys[i++ & (kKeys - 1)]));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["nodes"] = static_cast<double>(state.range(0));
}

void BM_RendezvousAcquireRelease(benchmark::State& state, RendezvousRouter<int>* router) {
  const std::vector<std::string> keys = MakeKeys();
  size_t i = static_cast<size_t>(state.thread_index()) * 997;
  int64_t exhausted = 0;
  for (auto _ : state) {
    absl::StatusOr<RendezvousRouter<int>::Lease> lease = router->Acquire(keys[i++ & (kKeys - 1)]);
    if (!lease.ok()) ++exhausted;
    benchmark::DoNotOptimize(lease);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["exhausted"] = static_cast<double>(exhausted);
}

void BM_ConsistentHashRingAcquireRelease(benchmark::State& state, ConsistentHashRing* ring) {
  const std::vector<std::string> keys = MakeKeys();
  size_t i = static_cast<size_t>(state.thread_index()) * 997;
  for (auto _ : state) {
    const int node = ring->Acquire(keys[i++ & (kKeys - 1)]);
    benchmark::DoNotOptimize(node);
    if (node >= 0) ring->Release(node);
  }
  state.SetItemsProcessed(state.iterations());
}

// Prints as usual, and remembers each run's time per iteration for the ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal (a custom display reporter does not see
  // --benchmark_color).
  RatioReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_Defaults : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    // With --benchmark_repetitions the median wins over single repetitions.
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const std::pair<double, double> t = {run.GetAdjustedRealTime(), run.GetAdjustedCPUTime()};
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
        times_[run.run_name.str()] = t;
        from_median_.insert(run.run_name.str());
      } else if (run.run_type == Run::RT_Iteration &&
                 !from_median_.contains(run.benchmark_name())) {
        times_[run.benchmark_name()] = t;
      }
    }
  }

  void PrintRatio(const std::string& subject, const std::string& baseline) const {
    auto s = times_.find(subject);
    auto b = times_.find(baseline);
    if (s == times_.end() || b == times_.end()) return;
    std::printf("ratio %s / %s = %.2f (real), %.2f (cpu)\n", subject.c_str(), baseline.c_str(),
                s->second.first / b->second.first, s->second.second / b->second.second);
  }

 private:
  std::map<std::string, std::pair<double, double>> times_;  // real, cpu per iteration
  std::set<std::string> from_median_;
};

int Main(int argc, char** argv) {
  const int node_counts[] = {10, 100, 1000};
  for (int n : node_counts) {
    benchmark::RegisterBenchmark("BM_RendezvousPick", RendezvousPick, false)
        ->ArgName("nodes")
        ->Arg(n);
  }
  for (int n : node_counts) {
    benchmark::RegisterBenchmark("BM_ConsistentHashRingPick", BM_ConsistentHashRingPick)
        ->ArgName("nodes")
        ->Arg(n);
  }
  benchmark::RegisterBenchmark("BM_RendezvousPickWeighted", RendezvousPick, true)
      ->ArgName("nodes")
      ->Arg(100);

  // Shared by the threads of one benchmark, owned here (outlives the runs).
  auto router = MakeRouter(100, /*weighted=*/false);
  ConsistentHashRing ring(100);
  benchmark::RegisterBenchmark("BM_RendezvousAcquireRelease", BM_RendezvousAcquireRelease,
                               router.get())
      ->Threads(1)
      ->Threads(2);
  benchmark::RegisterBenchmark("BM_ConsistentHashRingAcquireRelease",
                               BM_ConsistentHashRingAcquireRelease, &ring)
      ->Threads(1)
      ->Threads(2);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  for (int n : node_counts) {
    reporter.PrintRatio(absl::StrCat("BM_RendezvousPick/nodes:", n),
                        absl::StrCat("BM_ConsistentHashRingPick/nodes:", n));
  }
  reporter.PrintRatio("BM_RendezvousPickWeighted/nodes:100", "BM_RendezvousPick/nodes:100");
  for (const char* t : {"threads:1", "threads:2"}) {
    reporter.PrintRatio(absl::StrCat("BM_RendezvousAcquireRelease/", t),
                        absl::StrCat("BM_ConsistentHashRingAcquireRelease/", t));
  }
  reporter.PrintRatio("BM_RendezvousAcquireRelease/threads:1", "BM_RendezvousPick/nodes:100");
  benchmark::Shutdown();
  return 0;
}

}  // namespace
}  // namespace txfn

int main(int argc, char** argv) { return txfn::Main(argc, argv); }
