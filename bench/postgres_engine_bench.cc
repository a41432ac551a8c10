// BM_EngineQuery/storage:postgres (txfn_bench_storage_postgres): the engine end to end on
// PostgresStorage — the same one-document indexed query on a 1,000-document table as
// txfn_bench_engine's BM_EngineQuery/storage:{memory,sqlite}, with the same counters: p50_us,
// p99_us, and the baseline direct_p50_us (the read done directly on a Transaction at the
// engine's latest snapshot: storage round trips, no scheduler, no V8), js_overhead_us.
// Skipped with a message without TXFN_TEST_PG.
#include <memory>

#include "bench/engine_query_bench.h"
#include "bench/pg_bench_util.h"
#include "benchmark/benchmark.h"
#include "txfn/postgres_engine.h"

namespace txfn {
namespace {

void BM_EngineQuery(benchmark::State& state) {
  auto schema = bench::PgBenchSchema::Create();
  if (!schema.ok()) {
    state.SkipWithError(schema.status().ToString().c_str());
    return;
  }
  EngineOptions options;
  options.scheduler.workers = 2;
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      OpenPostgresEngine((*schema)->url(), std::move(options));
  absl::StatusOr<std::string> seeded =
      engine.ok() ? bench::SeedEngineBench(**engine) : absl::StatusOr<std::string>(engine.status());
  if (!seeded.ok()) {
    state.SkipWithError(seeded.status().ToString().c_str());
    return;
  }
  bench::RunEngineQuery(state, **engine);
}

BENCHMARK(BM_EngineQuery)->Name("BM_EngineQuery/storage:postgres")->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace txfn
