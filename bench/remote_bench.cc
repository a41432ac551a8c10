// txfn_bench_remote — running functions on runner servers over gRPC (loopback) against
// running them in the engine's process, in the same run.
//
// BM_LocalQuery: a trivial query (one ctx.db.get) through an engine with its own runner.
//   Counters p50_us, p99_us. Registered first: it is the baseline.
// BM_RemoteQuery: the same call through an engine whose executor is a RemoteRunner with one
//   RunnerServer (in this process, real gRPC on 127.0.0.1). Counters p50_us, p99_us,
//   added_p50_us = its p50 - BM_LocalQuery's (goal <= 500), vs_local_p50.
// BM_RemoteRunnerThroughput/runners:N: 8 client threads calling the query on 12 tenants through
//   N runner servers of 1 worker each (items/s = calls/s), cpu_us_per_call = the process's CPU
//   time per call (client, engine and runners alike: they share this process and its 2 cores,
//   so N runners do not add cores here; bench/fleet.sh runs them as processes). Counters
//   modules_compiled, metadata_loads, module_cache_hit_rate over every runner.
// BM_RemoteRunnerRoundRobin/runners:3: the same with runs rotating over the runners whatever
//   their tenant (RemoteRunnerOptions::Routing::kRoundRobin): what rendezvous routing saves.
#include <time.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "txfn/engine.h"
#include "txfn/in_memory_storage.h"
#include "txfn/remote_runner.h"
#include "txfn/runner_server.h"

namespace txfn {
namespace {

using bench::Percentile;
using bench::ReportLatency;

constexpr const char* kSchema = R"({"tables": {"items": {"fields": {"n": "int64"}}}})";
constexpr const char* kItems = R"JS(
import { query, mutation } from "txfn/server";
export const make = mutation(async (ctx) => ctx.db.insert("items", { n: 1n }));
export const get = query(async (ctx, { id }) => ctx.db.get(id));
)JS";

// An engine (local or with remote runners) on one in-memory storage, tenants deployed, one
// item each.
struct Fleet {
  std::shared_ptr<Storage> storage = std::make_shared<InMemoryStorage>();
  std::vector<std::unique_ptr<RunnerServer>> servers;
  std::unique_ptr<Engine> engine;
  std::vector<std::string> tenants;
  std::vector<Value> args;  // per tenant: {id}
};

std::unique_ptr<Fleet> MakeFleet(
    benchmark::State& state, int runners, int tenants,
    RemoteRunnerOptions::Routing routing = RemoteRunnerOptions::Routing::kRendezvous) {
  auto fleet = std::make_unique<Fleet>();
  EngineOptions options;
  options.scheduler.workers = 1;
  if (runners > 0) {
    RemoteRunnerOptions remote;
    remote.routing = routing;
    for (int i = 0; i < runners; ++i) {
      RunnerServerOptions server_options;
      server_options.storage = fleet->storage;
      server_options.scheduler.workers = 1;
      auto server = RunnerServer::Start(std::move(server_options));
      if (!server.ok()) {
        state.SkipWithError(server.status().ToString().c_str());
        return nullptr;
      }
      remote.runners.push_back({"127.0.0.1:" + std::to_string((*server)->port())});
      fleet->servers.push_back(*std::move(server));
    }
    auto executor = RemoteRunner::Create(std::move(remote));
    if (!executor.ok()) {
      state.SkipWithError(executor.status().ToString().c_str());
      return nullptr;
    }
    options.executor = *executor;
  }
  auto engine = Engine::Open(fleet->storage, std::move(options));
  if (!engine.ok()) {
    state.SkipWithError(engine.status().ToString().c_str());
    return nullptr;
  }
  fleet->engine = *std::move(engine);
  for (int t = 0; t < tenants; ++t) {
    std::string tenant = "t" + std::to_string(t);
    absl::Status s = fleet->engine->CreateTenant(tenant);
    if (s.ok()) s = fleet->engine->DeployJson(tenant, {{"items.js", kItems}}, kSchema);
    absl::StatusOr<CallResult> made =
        s.ok() ? fleet->engine->Mutation(tenant, "items:make", Value::FromObject({}))
               : absl::StatusOr<CallResult>(s);
    if (!made.ok()) {
      state.SkipWithError(made.status().ToString().c_str());
      return nullptr;
    }
    fleet->tenants.push_back(tenant);
    fleet->args.push_back(Value::FromObject({{"id", made->value}}));
  }
  return fleet;
}

double local_p50_us = 0;  // set by BM_LocalQuery, registered first

// One query at a time; p50/p99 of its latency.
void QueryLatency(benchmark::State& state, int runners) {
  std::unique_ptr<Fleet> f = MakeFleet(state, runners, 1);
  if (f == nullptr) return;
  std::vector<double> us;
  for (auto _ : state) {
    const absl::Time start = absl::Now();
    absl::StatusOr<CallResult> r = f->engine->Query("t0", "items:get", f->args[0]);
    us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
  ReportLatency(state, us);
  const double p50 = Percentile(us, 0.5);
  if (runners == 0) {
    local_p50_us = p50;
  } else if (local_p50_us > 0) {
    state.counters["added_p50_us"] = p50 - local_p50_us;
    state.counters["vs_local_p50"] = p50 / local_p50_us;
  }
}

void BM_LocalQuery(benchmark::State& state) { QueryLatency(state, 0); }
void BM_RemoteQuery(benchmark::State& state) { QueryLatency(state, 1); }

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void Throughput(benchmark::State& state, RemoteRunnerOptions::Routing routing) {
  constexpr int kClients = 8;
  constexpr int kCallsPerClient = 50;
  std::unique_ptr<Fleet> f = MakeFleet(state, static_cast<int>(state.range(0)), 12, routing);
  if (f == nullptr) return;
  int64_t calls = 0;
  double cpu = 0;
  for (auto _ : state) {
    std::atomic<int> failed{0};
    const double cpu_start = ProcessCpuSeconds();
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        for (int i = 0; i < kCallsPerClient; ++i) {
          const size_t t = static_cast<size_t>(c + i) % f->tenants.size();
          if (!f->engine->Query(f->tenants[t], "items:get", f->args[t]).ok()) ++failed;
        }
      });
    }
    for (std::thread& c : clients) c.join();
    cpu += ProcessCpuSeconds() - cpu_start;
    calls += kClients * kCallsPerClient;
    if (failed > 0) {
      state.SkipWithError("a call failed");
      return;
    }
  }
  state.SetItemsProcessed(calls);
  state.counters["cpu_us_per_call"] = cpu * 1e6 / static_cast<double>(calls);
  // What routing saved: modules compiled from source and tenant metadata decoded, over every
  // runner (with rendezvous, each tenant's once; round robin, once per runner it lands on).
  uint64_t compiled = 0, loads = 0, hits = 0;
  for (const std::unique_ptr<RunnerServer>& server : f->servers) {
    const RunnerServerStats s = server->stats();
    compiled += s.modules.misses;
    hits += s.modules.hits;
    loads += s.metadata_loads;
  }
  state.counters["modules_compiled"] = static_cast<double>(compiled);
  state.counters["metadata_loads"] = static_cast<double>(loads);
  state.counters["module_cache_hit_rate"] =
      hits + compiled == 0 ? 0 : static_cast<double>(hits) / static_cast<double>(hits + compiled);
}

void BM_RemoteRunnerThroughput(benchmark::State& state) {
  Throughput(state, RemoteRunnerOptions::Routing::kRendezvous);
}
// The same with runs rotating over the runners: what rendezvous routing saves.
void BM_RemoteRunnerRoundRobin(benchmark::State& state) {
  Throughput(state, RemoteRunnerOptions::Routing::kRoundRobin);
}

BENCHMARK(BM_LocalQuery)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RemoteQuery)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RemoteRunnerThroughput)
    ->ArgName("runners")
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_RemoteRunnerRoundRobin)
    ->ArgName("runners")
    ->Arg(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace txfn

BENCHMARK_MAIN();
