// bench/bench_util.h — latency percentiles for txfn's benchmarks.
#ifndef TXFN_BENCH_BENCH_UTIL_H_
#define TXFN_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <cstddef>
#include <vector>

#include "benchmark/benchmark.h"

namespace txfn::bench {

// The p-quantile (0..1) of `v` (reordered in place); 0 when empty.
inline double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

// Counters p50_us and p99_us of `us` (microseconds). Per thread; a multi-threaded run reports
// the mean of its threads'.
inline void ReportLatency(benchmark::State& state, std::vector<double>& us) {
  state.counters["p50_us"] =
      benchmark::Counter(Percentile(us, 0.50), benchmark::Counter::kAvgThreads);
  state.counters["p99_us"] =
      benchmark::Counter(Percentile(us, 0.99), benchmark::Counter::kAvgThreads);
}

}  // namespace txfn::bench

#endif  // TXFN_BENCH_BENCH_UTIL_H_
