// bench/engine_query_bench.h — BM_EngineQuery's tenant and loop, shared by txfn_bench_engine
// (storage:memory, storage:sqlite) and txfn_bench_storage_postgres (storage:postgres).
#ifndef TXFN_BENCH_ENGINE_QUERY_BENCH_H_
#define TXFN_BENCH_ENGINE_QUERY_BENCH_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "txfn/engine.h"
#include "txfn/transaction.h"

namespace txfn::bench {

inline constexpr const char* kSchema = R"({"tables": {
  "items": {"fields": {"key": "string", "v": "int64"}, "indexes": {"by_key": ["key"]}},
  "counters": {"fields": {"n": "int64"}}
}})";

inline constexpr const char* kModule = R"JS(
import { query, mutation } from "txfn/server";
export const get = query(async (ctx, { key }) =>
  ctx.db.query("items").withIndex("by_key", (q) => q.eq("key", key)).unique());
export const put = mutation(async (ctx, { key, v }) => ctx.db.insert("items", { key, v }));
export const putMany = mutation(async (ctx, { prefix, n }) => {
  for (let i = 0; i < n; i++) await ctx.db.insert("items", { key: prefix + i, v: BigInt(i) });
});
export const makeCounter = mutation(async (ctx) => ctx.db.insert("counters", { n: 0n }));
export const bump = mutation(async (ctx, { id }) => {
  const c = await ctx.db.get(id);
  await ctx.db.patch(id, { n: c.n + 1n });
});
export const slowBump = mutation(async (ctx, { id, spins }) => {
  const c = await ctx.db.get(id);
  let x = 0;
  for (let i = 0; i < spins; i++) x = (x + i) % 7;  // a function that computes a while
  await ctx.db.patch(id, { n: c.n + 1n + BigInt(x - x) });
});
)JS";

// Tenant "bench": the module above, 1,000 items (keys k0_0 .. k9_99) and a counter document,
// whose id it returns.
inline absl::StatusOr<std::string> SeedEngineBench(Engine& engine) {
  absl::Status s = engine.CreateTenant("bench");
  if (s.ok()) s = engine.DeployJson("bench", {{"m.js", kModule}}, kSchema);
  for (int chunk = 0; s.ok() && chunk < 10; ++chunk) {
    s = engine
            .Mutation(
                "bench", "m:putMany",
                Value::FromObject({{"prefix", Value::String("k" + std::to_string(chunk) + "_")},
                                   {"n", Value::Float64(100)}}))
            .status();
  }
  if (!s.ok()) return s;
  absl::StatusOr<CallResult> counter = engine.Mutation("bench", "m:makeCounter", Value::Null());
  if (!counter.ok()) return counter.status();
  return counter->value.string();
}

// BM_EngineQuery on a seeded engine: a one-document indexed query; p50_us, p99_us, and the
// same read done directly on a Transaction (direct_p50_us, js_overhead_us).
inline void RunEngineQuery(benchmark::State& state, Engine& engine) {
  Value args = Value::FromObject({{"key", Value::String("k3_42")}});
  std::vector<double> us;
  us.reserve(1 << 16);
  for (auto _ : state) {
    absl::Time start = absl::Now();
    absl::StatusOr<CallResult> r = engine.Query("bench", "m:get", args);
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!r.ok() || !r->value.is_object()) {
      state.SkipWithError(r.ok() ? "no document" : r.status().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
  ReportLatency(state, us);

  // Baseline: the same indexed read on a Transaction, no scheduler or V8.
  std::vector<double> direct;
  for (int i = 0; i < 2000; ++i) {
    absl::Time start = absl::Now();
    auto latest = engine.Latest("bench");
    Transaction txn(*latest, TransactionOptions{.read_only = true});
    auto page = txn.Query(
        {.table = "items", .index = "by_key", .eq = {Value::String("k3_42")}, .limit = 2});
    direct.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!page.ok() || page->documents.size() != 1) {
      state.SkipWithError("direct read failed");
      return;
    }
  }
  const double direct_p50 = Percentile(direct, 0.5);
  state.counters["direct_p50_us"] = direct_p50;
  state.counters["js_overhead_us"] = Percentile(us, 0.50) - direct_p50;
}

}  // namespace txfn::bench

#endif  // TXFN_BENCH_ENGINE_QUERY_BENCH_H_
