// The main() of every txfn benchmark binary: the benchmark .cc files register
// benchmarks only, so several can share one binary.
#include "benchmark/benchmark.h"

BENCHMARK_MAIN();
