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
// BM_WireValueDecode/<shape>: DecodeWireValue, reading the bytes straight into a Value (items/s
//   = whole values decoded per second, bytes/s of wire input).
//   BM_WireValueDecodeViaProtobuf/<shape>, its baseline: the way it decoded before, protobuf's
//   parse into its message tree and then a walk of the tree (vs_protobuf on the first = its
//   values/s over the baseline's, run first). Shapes: 0 = an argument of 12 fields, 1 = 1,000 rows
//   of 6 fields, 2 = 100,000 numbers.
// BM_WireValueEncode/<shape> against BM_WireValueEncodeViaProtobuf/<shape>, the same way:
//   EncodeWireValue (two walks of the Value, no message tree) against ToProto then
//   SerializeAsString, the encoder before (items/s = whole values encoded per second).
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "lib/wire/wire_proto.h"
#include "txfn/engine.h"
#include "txfn/in_memory_storage.h"
#include "txfn/remote_runner.h"
#include "txfn/runner_server.h"
#include "txfn/v1/wire.pb.h"
#include "txfn/wire.h"

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

Value WireShape(int64_t shape) {
  auto row = [](int i) {
    return Value::FromObject({{"id", Value::String("k57a2b" + std::to_string(i))},
                              {"n", Value::Int64(i)},
                              {"score", Value::Float64(i * 0.5)},
                              {"ok", Value::Bool(i % 2 == 0)},
                              {"tags", Value::FromArray({Value::String("a"), Value::String("b")})},
                              {"when", Value::Float64(1.7e12 + i)}});
  };
  Value::Array rows;
  switch (shape) {
    case 0: {
      Value::Object fields;
      for (int i = 0; i < 12; ++i) fields.emplace("field" + std::to_string(i), row(i));
      return Value::FromObject(std::move(fields));
    }
    case 1:
      for (int i = 0; i < 1000; ++i) rows.push_back(row(i));
      return Value::FromArray(std::move(rows));
    default:
      for (int i = 0; i < 100000; ++i) rows.push_back(Value::Float64(i * 0.25));
      return Value::FromArray(std::move(rows));
  }
}

// The decoder before the direct one: protobuf's tree, then a walk of it.
Value FromTree(const v1::Value& in) {
  switch (in.kind_case()) {
    case v1::Value::kInt64Value:
      return Value::Int64(in.int64_value());
    case v1::Value::kFloat64Value:
      return Value::Float64(in.float64_value());
    case v1::Value::kBoolValue:
      return Value::Bool(in.bool_value());
    case v1::Value::kStringValue:
      return Value::String(in.string_value());
    case v1::Value::kBytesValue:
      return Value::Bytes(in.bytes_value());
    case v1::Value::kArrayValue: {
      Value::Array array;
      array.reserve(in.array_value().values_size());
      for (const v1::Value& element : in.array_value().values()) array.push_back(FromTree(element));
      return Value::FromArray(std::move(array));
    }
    case v1::Value::kObjectValue: {
      Value::Object object;
      for (const v1::Field& field : in.object_value().fields()) {
        object.emplace_hint(object.end(), field.name(), FromTree(field.value()));
      }
      return Value::FromObject(std::move(object));
    }
    default:
      return Value::Null();
  }
}

// Values decoded per second, by shape: set by BM_WireValueDecodeViaProtobuf, registered first.
std::map<int64_t, double> wire_baseline_per_second;

// Decodes `bytes` with `decode` for the state's iterations; values per second.
template <typename Decode>
double DecodeLoop(benchmark::State& state, const std::string& bytes, Decode decode) {
  const absl::Time start = absl::Now();
  for (auto _ : state) benchmark::DoNotOptimize(decode());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
  return static_cast<double>(state.iterations()) / std::max(seconds, 1e-9);
}

void BM_WireValueDecodeViaProtobuf(benchmark::State& state) {
  const std::string bytes = EncodeWireValue(WireShape(state.range(0)));
  wire_baseline_per_second[state.range(0)] = DecodeLoop(state, bytes, [&] {
    v1::Value tree;
    if (!tree.ParseFromString(bytes)) std::abort();
    return FromTree(tree);
  });
}

void BM_WireValueDecode(benchmark::State& state) {
  const std::string bytes = EncodeWireValue(WireShape(state.range(0)));
  const double per_second = DecodeLoop(state, bytes, [&] {
    absl::StatusOr<Value> v = DecodeWireValue(bytes);
    if (!v.ok()) std::abort();
    return *std::move(v);
  });
  if (const double baseline = wire_baseline_per_second[state.range(0)]; baseline > 0) {
    state.counters["vs_protobuf"] = per_second / baseline;
  }
}

std::map<int64_t, double> wire_encode_baseline_per_second;  // by shape

void BM_WireValueEncodeViaProtobuf(benchmark::State& state) {
  const Value value = WireShape(state.range(0));
  const std::string bytes = EncodeWireValue(value);
  wire_encode_baseline_per_second[state.range(0)] = DecodeLoop(state, bytes, [&] {
    v1::Value tree;
    wire_internal::ToProto(value, &tree);
    return tree.SerializeAsString();
  });
}

void BM_WireValueEncode(benchmark::State& state) {
  const Value value = WireShape(state.range(0));
  const std::string bytes = EncodeWireValue(value);
  const double per_second = DecodeLoop(state, bytes, [&] { return EncodeWireValue(value); });
  if (const double baseline = wire_encode_baseline_per_second[state.range(0)]; baseline > 0) {
    state.counters["vs_protobuf"] = per_second / baseline;
  }
}

BENCHMARK(BM_WireValueDecodeViaProtobuf)->ArgName("shape")->DenseRange(0, 2);
BENCHMARK(BM_WireValueDecode)->ArgName("shape")->DenseRange(0, 2);
BENCHMARK(BM_WireValueEncodeViaProtobuf)->ArgName("shape")->DenseRange(0, 2);
BENCHMARK(BM_WireValueEncode)->ArgName("shape")->DenseRange(0, 2);
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
